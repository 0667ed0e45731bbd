"""`glopro simulate OUT_BAG`: a rosbag2 (MCAP) of simulated people seen by a moving robot, with ground truth.

People move with real CMU motion (glopro_ros/data/cmu_mocap) retargeted to SMPL; the robot drives
and pans its camera; TF carries the SLAM pose (with drift), never the true one, exactly as a robot
would record it. Detections are synthetic BlazePose-33 keypoints made from the true bodies through
the true camera, with detector-like noise, missed detections and occlusions as the simulator
decides. Deterministic from --seed. Topics:

  /tf, /tf_static              map -> base_link (SLAM), base_link -> camera_optical_frame (static)
  /camera/camera_info          sensor_msgs/CameraInfo
  /camera/keypoints            glopro_ros/Keypoints2DArray (blazepose33, with keypoints_3d)
  /ground_truth                glopro_ros/HumanStateArray in map, track_id = true person id
  /camera/image_raw            sensor_msgs/Image rgb8 skeleton previews (--images only)

Exit codes: 0 written, 2 bad arguments, 3 output exists.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from tqdm import tqdm

from glopro_ros.core.body_model import SMPL_PARENTS, BodyModel
from glopro_ros.core.mocap import TEST_SPLIT, TRAIN_SPLIT, load_split
from glopro_ros.core.simulate import BASE_R_OPTICAL, SimConfig, SimSequence, simulate
from glopro_ros.core.so3 import exp_so3
from glopro_ros.msg import Keypoints2D, Keypoints2DArray
from glopro_ros.ros.conversions import time_msg
from glopro_ros.tools.bag_output import (McapBagWriter, camera_info_msg, ground_truth_msg, stamp_ns, tf_message,
                                         transform_msg)
from glopro_ros.tools.blazepose_from_smpl import Detection, detect, landmarks_from_smpl

WORLD_FRAME, BASE_FRAME, CAMERA_FRAME = "map", "base_link", "camera_optical_frame"
TOPICS = {"camera_info": "/camera/camera_info", "keypoints": "/camera/keypoints", "image": "/camera/image_raw",
          "ground_truth": "/ground_truth"}
CLIP_SETS = {"test": TEST_SPLIT, "train": TRAIN_SPLIT, "all": TRAIN_SPLIT + TEST_SPLIT}
EXIT_OK, EXIT_USAGE, EXIT_EXISTS = 0, 2, 3


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="glopro simulate", description=__doc__.split("\n\n")[0],
                                     epilog="Exit codes: 0 written, 2 bad arguments, 3 output exists.")
    parser.add_argument("out_bag", type=Path, help="output bag folder (must not exist)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (the bag is a function of it)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of simulated time")
    parser.add_argument("--people", type=int, default=3, help="number of people")
    parser.add_argument("--fps", type=float, default=30.0, help="camera frame rate")
    parser.add_argument("--clips", choices=sorted(CLIP_SETS), default="test",
                        help="CMU clips the people move with: 'test' (held out from training), 'train' or 'all'")
    parser.add_argument("--images", action="store_true", help="also write rgb8 skeleton preview images")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="camera resolution scale (1.0: 640x480, focal 525 px); smaller makes lighter images")
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.people < 1 or args.fps <= 0 or not 0.1 <= args.scale <= 4.0:
        parser.error("need --duration > 0, --people >= 1, --fps > 0 and 0.1 <= --scale <= 4")
    return args


def base_t_camera(height: float) -> np.ndarray:
    """Static mount: optical frame at `height` above base_link, looking along base_link's x."""
    mount = np.eye(4)
    mount[:3, :3], mount[2, 3] = BASE_R_OPTICAL, height
    return mount


def world_joints(body: BodyModel, sim: SimSequence) -> tuple[np.ndarray, np.ndarray]:
    """True joints (T, P, 24, 3) and joint frames (T, P, 24, 3, 3) in the world; NaN where absent."""
    t_idx, p_idx = np.nonzero(sim.present)
    joints = np.full(sim.present.shape + (24, 3), np.nan)
    frames = np.full(sim.present.shape + (24, 3, 3), np.nan)
    f64 = dict(dtype=torch.float64)
    with torch.no_grad():
        j, r = body.forward_joints(torch.as_tensor(sim.gt_betas[p_idx], **f64),
                                   exp_so3(torch.as_tensor(sim.gt_body_pose[t_idx, p_idx], **f64)),
                                   torch.as_tensor(sim.gt_root_rot[t_idx, p_idx], **f64),
                                   torch.as_tensor(sim.gt_root_pos[t_idx, p_idx], **f64))
    joints[t_idx, p_idx], frames[t_idx, p_idx] = j.numpy(), r.numpy()
    return joints, frames


def keypoints_msg(stamp: float, width: int, height: int, detections: list[Detection]) -> Keypoints2DArray:
    msg = Keypoints2DArray(header=Header(stamp=time_msg(stamp), frame_id=CAMERA_FRAME),
                           skeleton=Keypoints2DArray.SKELETON_BLAZEPOSE33, image_width=width, image_height=height)
    for d in detections:
        msg.people.append(Keypoints2D(score=d.score, box=d.box.astype(np.float32),
                                      keypoints=d.uv.astype(np.float32).ravel(),
                                      confidences=d.confidence.astype(np.float32),
                                      keypoints_3d=d.world.astype(np.float32).ravel()))
    return msg


def render_preview(joints_cam: list[np.ndarray], ids: list[int], k: np.ndarray, width: int, height: int) -> np.ndarray:
    """Grey image with each person's projected skeleton (what the camera truly sees, occluders left out)."""
    image = np.full((height, width, 3), 90, np.uint8)
    image[height // 2:] = 70  # floor below the horizon (the camera looks level)
    for joints, person in zip(joints_cam, ids):
        if np.any(joints[:, 2] <= 0.1):
            continue
        uv = (joints @ k.T)[:, :2] / joints[:, 2:]
        colour = tuple(int(c) for c in cv2.cvtColor(np.uint8([[[int(person * 0.618034 * 180) % 180, 200, 240]]]),
                                                    cv2.COLOR_HSV2RGB)[0, 0])
        thickness = max(1, int(round(width / 320)))
        for child, parent in enumerate(SMPL_PARENTS):
            if parent >= 0:
                cv2.line(image, tuple(int(v) for v in uv[parent]), tuple(int(v) for v in uv[child]), colour,
                         thickness, cv2.LINE_AA)
        cv2.circle(image, tuple(int(v) for v in uv[15]), 3 * thickness, colour, -1, cv2.LINE_AA)
    return image


def write_bag(path: Path, sim: SimSequence, body: BodyModel, seed: int, images: bool) -> dict[str, int]:
    """Write the whole sequence; returns message counts per topic."""
    cfg = sim.config
    k = sim.intrinsics
    mount = base_t_camera(cfg.camera_height)
    camera_t_base = np.linalg.inv(mount)
    joints, frames = world_joints(body, sim)
    rng = np.random.default_rng([seed, 7])  # detections: independent of the simulator's own stream
    with McapBagWriter(path) as bag:
        bag.write("/tf_static", stamp_ns(sim.stamps[0]),
                  tf_message(transform_msg(BASE_FRAME, CAMERA_FRAME, float(sim.stamps[0]), mount)))
        for t in tqdm(range(sim.num_frames), desc="simulate", unit="frame", leave=False):
            stamp = float(sim.stamps[t])
            ns = stamp_ns(stamp)
            bag.write("/tf", ns, tf_message(transform_msg(WORLD_FRAME, BASE_FRAME, stamp, sim.cam_slam[t] @ camera_t_base)))
            bag.write(TOPICS["camera_info"], ns, camera_info_msg(stamp, CAMERA_FRAME, k, cfg.width, cfg.height))
            cam_t_world = np.linalg.inv(sim.cam_true[t])
            rot, trans = cam_t_world[:3, :3], cam_t_world[:3, 3]
            detections = []
            for p in np.flatnonzero(sim.observed[t]):
                landmarks = landmarks_from_smpl(joints[t, p], frames[t, p]) @ rot.T + trans
                detections.append(detect(landmarks, k, (cfg.width, cfg.height), rng,
                                         error_scale=cfg.outlier_scale if sim.outlier[t, p] else 1.0))
            bag.write(TOPICS["keypoints"], ns, keypoints_msg(stamp, cfg.width, cfg.height, detections))
            present = np.flatnonzero(sim.present[t])
            bag.write(TOPICS["ground_truth"], ns, ground_truth_msg(
                stamp, WORLD_FRAME, body.name, sim.person_ids[present], sim.gt_betas[present],
                sim.gt_body_pose[t, present], sim.gt_root_rot[t, present], sim.gt_root_pos[t, present], joints[t, present]))
            if images:
                rgb = render_preview([joints[t, p] @ rot.T + trans for p in present], present.tolist(), k,
                                     cfg.width, cfg.height)
                bag.write(TOPICS["image"], ns, Image(header=Header(stamp=time_msg(stamp), frame_id=CAMERA_FRAME),
                                                     height=cfg.height, width=cfg.width, encoding="rgb8",
                                                     is_bigendian=0, step=3 * cfg.width, data=rgb.tobytes()))
        return dict(bag.counts)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.out_bag.exists():
        print(f"glopro simulate: {args.out_bag} exists; remove it or choose another name", file=sys.stderr)
        return EXIT_EXISTS
    torch.set_num_threads(1)
    body = BodyModel(device="cpu")
    rest = body.rest_joints(torch.zeros(1, 10))[0].numpy()
    clips = load_split(CLIP_SETS[args.clips], args.fps, rest)
    width, height = int(round(640 * args.scale)), int(round(480 * args.scale))
    cfg = SimConfig(fps=args.fps, duration=args.duration, num_people=args.people, width=width, height=height,
                    focal=525.0 * args.scale)
    sim = simulate(clips, cfg, args.seed)
    counts = write_bag(args.out_bag, sim, body, args.seed, args.images)
    summary = ", ".join(f"{topic} {n}" for topic, n in sorted(counts.items()))
    print(f"wrote {args.out_bag}: {sim.num_frames} frames, {args.people} people ({', '.join(sim.clip_names)}); {summary}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
