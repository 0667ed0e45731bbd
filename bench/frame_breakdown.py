"""Where one frame's time goes in the node's worker, stage by stage, in one process (no DDS).

Runs the node's own objects (HumanPipeline, OutputMessages with the default mesh markers) on the
bench_node scenes: the 5-person (or 1-person) simulated keypoint run of keypoint_player --steady,
or the bench image played as a video (ROI tracking as in the node). Serialisation stands in for
rclpy ``publish`` (what it spends in Python). Markers for every frame (as marker_rate:=0.0). Prints
the median and mean ms per stage and per frame (and the frame's 95th percentile) over --frames frames
(after 10 warm-up frames).

    python -m bench.frame_breakdown --input keypoints --people 5
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "test" / "players"))


class Clock:
    """Accumulates perf_counter laps per stage name."""

    def __init__(self) -> None:
        self.laps: dict[str, list[float]] = defaultdict(list)
        self._t = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name].append((now - self._t) * 1e3)
        self._t = now


def keypoint_frames(people: int, frames: int):
    from keypoint_player import build_scene, steady_order

    from glopro_ros.ros.keypoint_input import people_from_keypoints_msg

    scene = build_scene(people, 10.0, 30.0, {1: 0, 5: 2}[people], with_truth=False, clean=True)
    order = steady_order(scene, people, frames / 30.0 + 1)
    world_t_cam = scene.world_t_base[order] @ scene.base_t_camera
    for i, t in enumerate(order[:frames]):
        yield i / 30.0, scene.keypoints[t], scene.k, world_t_cam[i], people_from_keypoints_msg


def main(argv: list[str] | None = None) -> None:
    from rclpy.serialization import serialize_message
    from std_msgs.msg import Header

    from glopro_ros.pipeline import HumanPipeline, PipelineConfig
    from glopro_ros.ros.outputs import OutputMessages, display_mesh

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", choices=("keypoints", "image"), default="keypoints")
    parser.add_argument("--people", type=int, choices=(1, 5), default=5)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--max-landmarks", type=int, default=0, help="the node's max_landmarks (image input)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    pipeline = HumanPipeline(PipelineConfig(max_people=args.people, max_landmarks=args.max_landmarks), with_images=args.input == "image")
    outputs = OutputMessages(pipeline.body.name, display_mesh(pipeline), serialized_markers=True)
    clock = Clock()
    timed = _timed_pipeline(pipeline, clock)
    if args.input == "keypoints":
        source = keypoint_frames(args.people, args.frames)
    else:
        from bench.bench_perception import scenes

        rgb, k = scenes()[args.people]
        pose = np.eye(4)
        source = ((i / 15.0, rgb, k, pose, None) for i in range(args.frames))
    totals = []
    for stamp, data, k, world_t_cam, convert in source:
        start = clock._t = time.perf_counter()
        if convert is not None:
            people, _ = convert(data)
            clock.lap("keypoints message -> people")
            out = timed.process_keypoints(stamp, people, k, data.image_width, data.image_height, world_t_cam, "cam")
        else:
            out = timed.process_image(stamp, data, k, world_t_cam, "cam")
        header = Header(frame_id="map")
        header.stamp.sec = int(stamp)
        published = outputs.humans(header, out)
        clock.lap("HumanStateArray build")
        serialize_message(published.humans)
        clock.lap("HumanStateArray serialise")
        out.vertices  # noqa: B018 - posed on first use (cached): timed on its own
        clock.lap("mesh vertices")
        outputs.markers(header, out, published.valid)
        clock.lap("markers (build + serialise)")
        totals.append((time.perf_counter() - start) * 1e3)
    skip = 10  # warm-up: first detections, lazy imports
    print(f"{args.input}, {args.people} people, {len(totals) - skip} frames, ms per frame: median, mean (the mean sets "
          "the throughput)")
    for name, laps in clock.laps.items():
        print(f"  {name:32s} {np.median(laps[skip:]):7.2f} {np.mean(laps[skip:]):7.2f}")
    t = totals[skip:]
    print(f"  {'total':32s} {np.median(t):7.2f}  (mean {np.mean(t):.2f}, p95 {np.percentile(t, 95):.2f})")


def _timed_pipeline(pipeline, clock: Clock):
    """Wraps the pipeline's stages so each lap is recorded under its own name."""
    lifter, tracker = pipeline.lifter, pipeline.tracker
    stages = [(lifter, "fit_many", "lifting"), (tracker, "step", "tracker step")]
    if pipeline.perception is not None:
        stages += [(pipeline.perception.keypoints, "__call__", "BlazePose keypoints"),
                   (pipeline.perception.lifter, "fit_many", "lifting")]
    for obj, name, label in stages:
        original = getattr(obj, name)

        def wrapped(*a, _original=original, _label=label, **kw):
            clock.lap("other (conversions, to_state, ...)")
            result = _original(*a, **kw)
            clock.lap(_label)
            return result
        if name == "__call__":
            obj.__class__ = type("Timed", (obj.__class__,), {"__call__": lambda self, *a, _w=wrapped: _w(*a)})
        else:
            setattr(obj, name, wrapped)
    import glopro_ros.pipeline as module

    propagate = module.propagate_joints

    def timed_propagate(*a, **kw):
        clock.lap("other (conversions, to_state, ...)")
        result = propagate(*a, **kw)
        clock.lap("joint propagation")
        return result
    module.propagate_joints = timed_propagate
    return pipeline


if __name__ == "__main__":
    main()
