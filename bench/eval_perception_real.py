#!/usr/bin/env python3
"""Perception on real data: photos (people found, reprojection) and the HSR RGB-D bag (depth).

Photos have no calibration: a pinhole with f = the longer image side (about 53 deg horizontal
field of view) is assumed; reprojection hardly depends on it, metric depth does. The HSR frames
have their CameraInfo. Writes the "real" section of docs/perception.md and two overlay PNGs.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import skimage.data

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench.markdown_section import write_section  # noqa: E402
from glopro_ros.perception.depth_check import PELVIS_BEHIND_SURFACE, pelvis_depth_errors  # noqa: E402
from glopro_ros.perception.overlay import draw_overlay  # noqa: E402
from glopro_ros.perception.pipeline import PerceptionStage  # noqa: E402
from glopro_ros.perception.rgbd_frames import read_rgbd_frames  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
HSR_TOPICS = ("/hero/head_rgbd_sensor/rgb/image_raw", "/hero/head_rgbd_sensor/rgb/camera_info",
              "/hero/head_rgbd_sensor/depth_registered/image")


def photo_k(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    f = float(max(w, h))
    return np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]])


def photos() -> dict[str, np.ndarray]:
    out = {"astronaut (skimage)": skimage.data.astronaut(),
           "camera (skimage)": cv2.cvtColor(skimage.data.camera(), cv2.COLOR_GRAY2RGB)}
    group = SHARED / "images" / "group_photo.jpg"
    if group.is_file():
        out["group_photo.jpg"] = cv2.cvtColor(cv2.imread(str(group)), cv2.COLOR_BGR2RGB)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--doc", type=Path, default=REPO / "docs" / "perception.md")
    parser.add_argument("--figures", type=Path, default=REPO / "docs")
    args = parser.parse_args()
    stage = PerceptionStage.from_params(tracking=False)
    lines = ["## Real images", "",
             "Reprojection: RMS distance between the fitted SMPL joints projected into the image "
             "and their BlazePose keypoints (confident ones), per person; it includes the "
             "systematic BlazePose-to-SMPL joint offsets.", "",
             "| image | size | people found | mean reprojection RMS | as % of body height | "
             "refused (reason) |", "|---|---|---|---|---|---|"]
    for name, rgb in photos().items():
        k = photo_k(rgb)
        out = stage.process(rgb, k, "camera")
        rms = np.array([f.reprojection_px for f in out.fits])
        rel = np.array([f.reprojection_px / max(np.ptp(p.landmarks[:, 1]), 1.0)
                        for f, p in zip(out.fits, out.people)])
        refused = "; ".join(m for m in out.messages) or "-"
        lines.append(f"| {name} | {rgb.shape[1]}x{rgb.shape[0]} | {len(out.people)} | "
                     f"{rms.mean():.1f} px | {100 * rel.mean():.1f}% | {refused} |")
        if name == "group_photo.jpg":
            overlay = draw_overlay(rgb, out, k, stage.lifter.body_model)
            cv2.imwrite(str(args.figures / "perception_group_overlay.jpg"),
                        cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    bag = SHARED / "hsr_people_rgbd"
    if bag.is_dir():
        frames = read_rgbd_frames(bag, *HSR_TOPICS, max_gap_ns=500_000_000)
        rows = pelvis_depth_errors(stage, frames)
        lines += ["", "### HSR RGB-D frames: pelvis depth against the registered depth image", "",
                  f"Truth = median registered depth in an 11x11 window at the projected pelvis "
                  f"+ {PELVIS_BEHIND_SURFACE:.2f} m (the pelvis joint lies inside the body, "
                  "behind the surface the sensor sees). RGB and depth of a frame are up to 0.3 s "
                  "apart (person standing). Closest person per frame.", "",
                  "| frame | people | pelvis z (fit) | stated std | surface depth | truth | "
                  "error | error % | abs(error)/std | reprojection RMS |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r.frame} | {r.people} | {r.estimate_m:.3f} m | {r.std_m:.3f} m | "
                         f"{r.surface_m:.3f} m | {r.true_m:.3f} m | {r.error_m:+.3f} m | "
                         f"{100 * r.error_m / r.true_m:+.1f}% | {abs(r.error_m) / r.std_m:.2f} | "
                         f"{r.reprojection_px:.1f} px |")
        errs = np.array([abs(r.error_m) / r.true_m for r in rows])
        cover = np.mean([abs(r.error_m) <= 2 * r.std_m for r in rows])
        lines += ["", f"{len(rows)}/{len(frames)} frames: mean abs error "
                  f"{100 * errs.mean():.1f}%, max {100 * errs.max():.1f}% (target 15%); "
                  f"error within 2 stated std in {100 * cover:.0f}% of frames."]
        if frames:
            f0 = frames[1] if len(frames) > 1 else frames[0]
            out = stage.process(f0.rgb, f0.k, f0.frame_id)
            overlay = draw_overlay(f0.rgb, out, f0.k, stage.lifter.body_model)
            cv2.imwrite(str(args.figures / "perception_hsr_overlay.jpg"),
                        cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    lines += ["", "Overlays (dots: BlazePose keypoints, green seen / orange low visibility; lines "
              "and shaded points: the fitted body projected with the intrinsics):", "",
              "![group photo](perception_group_overlay.jpg)",
              "![HSR frame 1](perception_hsr_overlay.jpg)", "",
              "Rerun: `.venv/bin/python bench/eval_perception_real.py`"]
    text = "\n".join(lines)
    write_section(args.doc, "real", text, title="Perception")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
