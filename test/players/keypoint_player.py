"""Test player: a simulated scene (people on CMU motion, a driving robot with a panning camera) played
in real time as a detector and a robot would publish it.

The scene is ``glopro_ros.core.simulate`` (deterministic from --seed, frame rate = --rate), so
ground truth exists for every frame. Per frame, stamped with the wall clock at publish:

  /tf              map -> base_link from the SLAM pose (with the simulator's drift), as a robot would
  /tf_static       base_link -> camera_optical_frame (once, transient local)
  camera_info      CameraInfo (640x480, f = 525 px)
  keypoints        glopro_ros/Keypoints2DArray, blazepose33 with keypoints_3d, built from the true
                   SMPL joints through the lifting's correspondence table with detector-like noise
                   (glopro_ros/tools/blazepose_from_smpl.py); people not observed are left out
  /ground_truth    glopro_ros/HumanStateArray in map, track_id = true person id, same stamp

The camera pose in TF is the SLAM one but detections are made through the true camera, so the
truth is comparable with what a real robot's tracker can reach. The TF for a frame is published
before its keypoints; the node looks the pose up at the keypoints' stamp (exact match).
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
import rclpy
import torch
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile
from sensor_msgs.msg import CameraInfo
from tf2_msgs.msg import TFMessage

from glopro_ros.core.body_model import BodyModel
from glopro_ros.core.mocap import TEST_SPLIT, load_split
from glopro_ros.core.simulate import SimConfig, simulate
from glopro_ros.msg import HumanStateArray, Keypoints2DArray
from glopro_ros.tools.bag_output import camera_info_msg, ground_truth_msg, tf_message, transform_msg
from glopro_ros.tools.blazepose_from_smpl import detect, landmarks_from_smpl
from glopro_ros.tools.simulate_bag import (BASE_FRAME, CAMERA_FRAME, WORLD_FRAME, base_t_camera, keypoints_msg,
                                           world_joints)

KEYPOINTS_TOPIC, INFO_TOPIC, TRUTH_TOPIC = "keypoints", "camera_info", "/ground_truth"


@dataclass
class Scene:
    """Everything the player publishes, precomputed (stamps are filled in at publish time)."""

    world_t_base: np.ndarray  # (T, 4, 4) SLAM base pose
    base_t_camera: np.ndarray  # (4, 4) static mount
    keypoints: list[Keypoints2DArray]
    truth: list[HumanStateArray | None]  # None where built without truth
    k: np.ndarray
    size: tuple[int, int]
    fps: float


def build_scene(people: int, duration: float, fps: float, seed: int, with_truth: bool = True,
                clean: bool = False) -> Scene:
    """The deterministic scene of (people, duration, fps, seed); the detections' noise uses its own stream.

    with_truth=False leaves the ground-truth messages out (they take most of the build time, which
    benchmarks at high rates do not need); clean=True turns off occlusions and missed detections
    (benchmarks want every person in view detected)."""
    body = BodyModel(device="cpu")
    rest = body.rest_joints(torch.zeros(1, 10))[0].numpy()
    quiet = dict(occlusions_per_person=0.0, miss_prob=0.0, outlier_prob=0.0) if clean else {}
    cfg = SimConfig(fps=fps, duration=duration, num_people=people, **quiet)
    sim = simulate(load_split(TEST_SPLIT, fps, rest), cfg, seed)
    mount = base_t_camera(cfg.camera_height)
    joints, frames = world_joints(body, sim)
    rng = np.random.default_rng([seed, 7])
    keypoints: list[Keypoints2DArray] = []
    truth: list[HumanStateArray | None] = []
    for t in range(sim.num_frames):
        cam_t_world = np.linalg.inv(sim.cam_true[t])
        rot, trans = cam_t_world[:3, :3], cam_t_world[:3, 3]
        detections = [detect(landmarks_from_smpl(joints[t, p], frames[t, p]) @ rot.T + trans, sim.intrinsics,
                             (cfg.width, cfg.height), rng, error_scale=cfg.outlier_scale if sim.outlier[t, p] else 1.0)
                      for p in np.flatnonzero(sim.observed[t])]
        keypoints.append(keypoints_msg(0.0, cfg.width, cfg.height, detections))
        present = np.flatnonzero(sim.present[t])
        if with_truth:
            truth.append(ground_truth_msg(0.0, WORLD_FRAME, body.name, sim.person_ids[present], sim.gt_betas[present],
                                          sim.gt_body_pose[t, present], sim.gt_root_rot[t, present],
                                          sim.gt_root_pos[t, present], joints[t, present]))
        else:
            truth.append(None)
    world_t_base = sim.cam_slam @ np.linalg.inv(mount)
    return Scene(world_t_base, mount, keypoints, truth, sim.intrinsics, (cfg.width, cfg.height), fps)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=2)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of scene")
    parser.add_argument("--rate", type=float, default=15.0, help="Hz: the scene's frame rate and the publish rate")
    parser.add_argument("--seed", type=int, default=39)
    parser.add_argument("--no-truth", action="store_true", help="do not build or publish /ground_truth")
    parser.add_argument("--clean", action="store_true", help="no occlusions, missed or outlier detections")
    parser.add_argument("--steady", type=int, default=0,
                        help="benchmarks: play only the longest run of frames with at least this many people "
                             "detected, forwards and backwards (motion stays continuous) for --play seconds")
    parser.add_argument("--play", type=float, default=20.0, help="seconds to play with --steady")
    parser.add_argument("--wait-subscribers", type=int, default=1,
                        help="start once the keypoints and ground truth topics each have this many subscribers (0: at once)")
    parser.add_argument("--wait-timeout", type=float, default=120.0, help="seconds to wait for subscribers")
    return parser.parse_args(argv)


def steady_order(scene: Scene, people: int, seconds: float) -> list[int]:
    """Frame indices: the longest run with >= people detections, back and forth, `seconds` long."""
    enough = np.array([len(m.people) >= people for m in scene.keypoints] + [False])
    best, start = (0, 0), None
    for t, ok in enumerate(enough):
        if ok and start is None:
            start = t
        elif not ok and start is not None:
            best, start = max(best, (t - start, start)), None
    length, first = best
    if length < 2:
        raise SystemExit(f"no run of frames with {people} people detected; try another --seed or more --people")
    run = list(range(first, first + length))
    cycle = run + run[-2:0:-1]
    return (cycle * (int(seconds * scene.fps) // len(cycle) + 1))[:int(seconds * scene.fps)]


def play(node: Node, scene: Scene, args: argparse.Namespace, order: list[int]) -> int:
    """Publish scene frames `order` at the scene's frame rate (absolute schedule, no drift); returns
    frames published."""
    keypoints_pub = node.create_publisher(Keypoints2DArray, KEYPOINTS_TOPIC, 10)
    info_pub = node.create_publisher(CameraInfo, INFO_TOPIC, 10)
    truth_pub = node.create_publisher(HumanStateArray, TRUTH_TOPIC, 10)
    tf_pub = node.create_publisher(TFMessage, "/tf", 100)
    static_pub = node.create_publisher(TFMessage, "/tf_static",
                                       QoSProfile(depth=10, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    static_pub.publish(tf_message(transform_msg(BASE_FRAME, CAMERA_FRAME, 0.0, scene.base_t_camera)))
    deadline = time.monotonic() + args.wait_timeout
    waited = [keypoints_pub] if args.no_truth else [keypoints_pub, truth_pub]
    while args.wait_subscribers and min(p.get_subscription_count() for p in waited) < args.wait_subscribers:
        if time.monotonic() > deadline:
            node.get_logger().error("no subscribers on the keypoints and ground truth topics; giving up")
            return 0
        time.sleep(0.1)
    time.sleep(0.5)  # the node activates just after creating its subscription
    node.get_logger().info(f"playing {len(order)} frames at {scene.fps:.1f} Hz, "
                           f"{np.mean([len(scene.keypoints[t].people) for t in order]):.2f} people per frame")
    start = time.monotonic()
    for i, t in enumerate(order):
        keypoints, truth = scene.keypoints[t], scene.truth[t]
        delay = start + i / scene.fps - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        stamp = node.get_clock().now().to_msg()  # one stamp object for all: exact matches downstream
        tf = transform_msg(WORLD_FRAME, BASE_FRAME, 0.0, scene.world_t_base[t])
        info = camera_info_msg(0.0, CAMERA_FRAME, scene.k, *scene.size)
        tf.header.stamp = info.header.stamp = keypoints.header.stamp = stamp
        tf_pub.publish(tf_message(tf))
        info_pub.publish(info)
        if truth is not None:
            truth.header.stamp = stamp
            truth_pub.publish(truth)
        keypoints_pub.publish(keypoints)
    elapsed = time.monotonic() - start
    node.get_logger().info(f"played {len(order)} frames in {elapsed:.2f} s")
    return len(order)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(1)
    scene = build_scene(args.people, args.duration, args.rate, args.seed, not args.no_truth, args.clean)
    rclpy.init()
    node = Node("keypoint_player")
    try:
        order = (steady_order(scene, args.steady, args.play) if args.steady
                 else list(range(len(scene.keypoints))))
        play(node, scene, args, order)
        time.sleep(1.0)  # let the last messages leave before the publishers go
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
