"""`glopro demo`: people around a moving robot, tracked by the glopro node over real DDS, evaluated.

The whole workflow in one command, with the tools a user would run by hand:
  1. glopro simulate: several people moving with real CMU motion, seen by a driving, panning robot
     camera (SLAM pose with drift in TF), as BlazePose keypoint detections with ground truth;
  2. glopro replay --via-dds: that bag played lock-step to the glopro node (a child process on a
     private, localhost-only ROS graph) and its /humans and /markers recorded;
  3. glopro evaluate: the recorded tracks against the ground truth, metrics.json and report.html.
`glopro demo --hsr` instead replays the real HSR robot frames shipped in glopro_ros/data (images,
no TF, no ground truth) with a fixed camera pose and prints where each person's pelvis is. It runs
offline, in-process; `glopro replay --via-dds` plays the same frames to the node (reliable images).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from rosbags.highlevel import AnyReader

from glopro_ros.tools import evaluate, replay, simulate_bag
from glopro_ros.tools.bag_typestore import glopro_typestore

HSR_BAG = Path(__file__).resolve().parents[1] / "data" / "hsr_people_rgbd" / "hsr_people_rgbd.mcap"
HSR_IMAGE_TOPIC = "/hero/head_rgbd_sensor/rgb/image_raw"
# Camera 1.0 m above the map origin looking along map x, level: optical z -> x, x -> -y, y -> -z.
HSR_CAMERA_POSE = "0 0 1.0 -0.5 0.5 -0.5 0.5"
OUTPUTS = ("scene", "replayed", "evaluation", "hsr_replayed")  # what the demo writes (and replaces) in --out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="glopro demo", description=__doc__.split("\n\n")[0],
                                     epilog="Reruns replace the demo's own folders in --out: " + ", ".join(OUTPUTS))
    parser.add_argument("--out", type=Path, default=Path("glopro_demo_out"), help="output folder")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of simulated scene")
    parser.add_argument("--people", type=int, default=3)
    parser.add_argument("--fps", type=float, default=10.0, help="camera frame rate of the scene")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hsr", action="store_true", help="the real HSR frames instead of the simulated scene")
    return parser.parse_args(argv)


def _step(number: int, text: str) -> None:
    print(f"[{number}/3] {text}", flush=True)


def _fresh(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    return path


def simulated_demo(args: argparse.Namespace) -> int:
    scene, replayed, evaluation = (_fresh(args.out / name) for name in OUTPUTS[:3])
    _step(1, f"simulating {args.duration:g} s of {args.people} people and a moving robot camera at {args.fps:g} Hz")
    code = simulate_bag.main([str(scene), "--duration", str(args.duration), "--people", str(args.people),
                              "--fps", str(args.fps), "--seed", str(args.seed)])
    if code:
        return code
    _step(2, "replaying it through the glopro node over DDS (lock-step, one frame at a time)")
    code = replay.main([str(scene), "--out", str(replayed), "--via-dds"])
    if code:
        return code
    _step(3, "evaluating the tracks against the ground truth")
    code = evaluate.main([str(replayed), "--out", str(evaluation)])
    if code:
        return code
    print(f"\noutput bag: {replayed.resolve()}  (ros2 bag play it and open config/glopro.rviz, or Foxglove)")
    print(f"report:     {(evaluation / 'report.html').resolve()}")
    print(f"metrics:    {(evaluation / 'metrics.json').resolve()}")
    return 0


def hsr_demo(args: argparse.Namespace) -> int:
    replayed = _fresh(args.out / OUTPUTS[3])
    print(f"replaying {HSR_BAG.name} (real HSR frames, camera pose fixed at '{HSR_CAMERA_POSE}' in map)", flush=True)
    code = replay.main([str(HSR_BAG), "--out", str(replayed), "--image-topic", HSR_IMAGE_TOPIC,
                        "--static-camera-pose", HSR_CAMERA_POSE, "--quiet"])
    if code:
        return code
    with AnyReader([replayed], default_typestore=glopro_typestore()) as reader:
        humans = [c for c in reader.connections if c.topic == "/humans"]
        for connection, _, raw in reader.messages(connections=humans):
            msg = reader.deserialize(raw, connection.msgtype)
            people = [f"id {h.track_id}: ({p.x:.2f}, {p.y:.2f}, {p.z:.2f}) m"
                      for h in msg.humans for p in [h.root_pose.pose.position] if h.status != h.STATUS_LOST]
            stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
            print(f"t={stamp:.3f}  pelvis in map: {'; '.join(people) or 'nobody'}")
    print(f"\noutput bag: {replayed.resolve()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    code = hsr_demo(args) if args.hsr else simulated_demo(args)
    print(f"glopro demo: {'done' if code == 0 else f'failed (exit code {code})'} in {time.monotonic() - start:.0f} s")
    return code


if __name__ == "__main__":
    sys.exit(main())
