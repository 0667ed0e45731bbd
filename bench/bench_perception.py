#!/usr/bin/env python3
"""Per-frame time of BlazePose keypoints and of the lifting, 1 and 5 people at 640x480.

1 person: a real HSR frame (640x480). 5 people: the group photo scaled into 640x480 (capped at 5
people). Keypoints are timed in detection mode (detector every frame) and tracking mode (ROIs
from the previous frame's landmarks, detector every 10th frame, as on a video stream); lifting
alone and all people together (the batched fit the node uses). Medians over repeats. Writes the
"bench_perception" section of docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench.markdown_section import write_section  # noqa: E402
from glopro_ros.perception.keypoints import BlazePoseKeypoints  # noqa: E402
from glopro_ros.perception.lifting import KeypointLifter  # noqa: E402
from glopro_ros.perception.rgbd_frames import read_rgbd_frames  # noqa: E402
from glopro_ros.perception.smpl_correspondence import targets_from_blazepose  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
TARGETS = {"keypoints_tracking_ms": 30.0, "lifting_per_person_ms": 5.0}


def scenes() -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """people -> (640x480 RGB, K)."""
    frame = read_rgbd_frames(SHARED / "hsr_people_rgbd", "/hero/head_rgbd_sensor/rgb/image_raw",
                             "/hero/head_rgbd_sensor/rgb/camera_info",
                             max_gap_ns=500_000_000)[1]
    group = cv2.cvtColor(cv2.imread(str(SHARED / "images" / "group_photo.jpg")),
                         cv2.COLOR_BGR2RGB)
    small = cv2.resize(group, (640, round(group.shape[0] * 640 / group.shape[1])),
                       interpolation=cv2.INTER_AREA)
    canvas = np.zeros((480, 640, 3), np.uint8)
    top = (480 - small.shape[0]) // 2
    canvas[top:top + small.shape[0]] = small
    k5 = np.array([[640.0, 0, 320], [0, 640.0, 240], [0, 0, 1]])
    return {1: (frame.rgb, frame.k), 5: (canvas, k5)}


def time_keypoints(rgb: np.ndarray, people: int, tracking: bool, threads: int,
                   frames: int) -> tuple[float, int]:
    det = BlazePoseKeypoints(max_people=people, tracking=tracking, num_threads=threads)
    det(rgb)  # warm-up (and the first detection when tracking)
    times, found = [], 0
    for _ in range(frames):
        t0 = time.perf_counter()
        found = len(det(rgb))
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3 if not tracking else np.mean(times) * 1e3), found


def time_lifting(rgb: np.ndarray, k: np.ndarray, people: int, repeats: int) -> tuple[float, float]:
    """Median ms of one person's fit alone, and of all found people fitted together (fit_many, as the node)."""
    det = BlazePoseKeypoints(max_people=people)
    lifter = KeypointLifter()
    h, w = rgb.shape[:2]
    targets = [targets_from_blazepose(p, w, h) for p in det(rgb)]
    alone, together = [], []
    for _ in range(repeats):
        for t in targets:
            t0 = time.perf_counter()
            lifter.fit(t, k)
            alone.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        lifter.fit_many(targets, k)
        together.append(time.perf_counter() - t0)
    return float(np.median(alone) * 1e3), float(np.median(together) * 1e3)


def machine() -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text()
                .splitlines() if ln.startswith("model name")), platform.processor())
    import torch
    from importlib.metadata import version
    return (f"`nproc` {os.cpu_count()}, {cpu}; Python {platform.python_version()}, numpy "
            f"{np.__version__}, ai-edge-litert {version('ai-edge-litert')}, opencv "
            f"{cv2.__version__}, torch {torch.__version__} (lifting is numpy, one BLAS "
            f"thread); 1-min load average at run time {os.getloadavg()[0]:.1f} (other jobs "
            f"share this CPU).")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--doc", type=Path, default=REPO / "docs" / "benchmarks.md")
    args = parser.parse_args()
    rows = []
    for people, (rgb, k) in scenes().items():
        for threads in (1, 2):
            det_ms, found = time_keypoints(rgb, people, False, threads, args.frames)
            trk_ms, _ = time_keypoints(rgb, people, True, threads, args.frames)
            rows.append((people, found, threads, det_ms, trk_ms))
        lift = time_lifting(rgb, k, people, max(3, args.frames // 5))
        rows = [r + ((lift,) if r[0] == people and len(r) == 5 else ()) for r in rows]
    lines = ["## Perception: keypoints and lifting (640x480)", "",
             "BlazePose full (detector 224x224 + landmarks 256x256 per person) on ai-edge-litert "
             "(XNNPACK), lifting = damped Gauss-Newton on the joints-only body model with the "
             "Laplace covariance. Keypoints per frame: median in detection mode, mean in "
             "tracking mode (includes the detector run every 10th frame). Lifting per person: one "
             "fit alone; all people together: one batched fit of the image's people (what the "
             "node does).", "",
             "| people in image | people found | tflite threads | keypoints, detection mode "
             "(ms/frame) | keypoints, tracking mode (ms/frame) | lifting (ms/person) | "
             "lifting, all people together (ms/frame) |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for people, found, threads, det_ms, trk_ms, (lift, together) in rows:
        lines.append(f"| {people} | {found} | {threads} | {det_ms:.1f} | {trk_ms:.1f} | "
                     f"{lift:.2f} | {together:.1f} |")
    best_trk = min(r[4] for r in rows if r[0] == 1)
    lift1 = max(r[5][1] / r[1] for r in rows)  # per person as the node pays it: all people together
    lines += ["", f"Targets: keypoints at most {TARGETS['keypoints_tracking_ms']:.0f} ms per "
              f"frame in tracking mode (1 person, best thread count: {best_trk:.1f} ms, "
              f"{'met' if best_trk <= 30 else 'NOT met'}); lifting at most "
              f"{TARGETS['lifting_per_person_ms']:.0f} ms per person (all people together / people, "
              f"worst case: {lift1:.2f} ms, "
              f"{'met' if lift1 <= 5 else 'NOT met'}).", "", f"Machine: {machine()}", "",
              f"Rerun: `.venv/bin/python bench/bench_perception.py --frames {args.frames}`"]
    text = "\n".join(lines)
    write_section(args.doc, "bench_perception", text, title="Benchmarks")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
