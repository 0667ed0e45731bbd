"""Public-dataset sequences (ground-truth SMPL people, camera per frame) to bags the replay tool takes.

The converters (convert_3dpw, convert_emdb) only parse their formats into a ``DatasetSequence``;
this module writes the bag: TF map -> camera optical frame from the dataset's camera poses,
CameraInfo, synthetic BlazePose-33 detections made from the ground truth (the datasets' own 2D
keypoints lack the metric 3D landmarks the lifting needs), optional images from the user's copy
of the dataset, and /ground_truth. The datasets' world frames are not Z-up, so the world is turned
so that the people's mean spine direction (pelvis -> neck) points up, or by --up.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from tqdm import tqdm

from glopro_ros.core.body_model import SMPL_PARENTS
from glopro_ros.perception.rotations import exp_rotvec
from glopro_ros.ros.conversions import time_msg
from glopro_ros.tools.bag_output import (McapBagWriter, camera_info_msg, ground_truth_msg, stamp_ns, tf_message,
                                         transform_msg)
from glopro_ros.tools.blazepose_from_smpl import detect, landmarks_from_smpl
from glopro_ros.tools.simulate_bag import CAMERA_FRAME, TOPICS, WORLD_FRAME, keypoints_msg

AXES = {"x": [1, 0, 0], "-x": [-1, 0, 0], "y": [0, 1, 0], "-y": [0, -1, 0], "z": [0, 0, 1], "-z": [0, 0, -1]}
EXIT_OK, EXIT_USAGE, EXIT_BAD_INPUT, EXIT_EXISTS = 0, 2, 3, 4
EXIT_CODES = "Exit codes: 0 written; 2 bad arguments; 3 input file unreadable or not in the format; 4 output exists."


class FormatError(ValueError):
    """The input is not a sequence of the expected format (the message says what is missing)."""


@dataclass
class DatasetSequence:
    """Ground truth of one sequence, dataset world frame; frame axis T, person axis P."""

    name: str
    fps: float
    k: np.ndarray  # (3, 3)
    width: int
    height: int
    cam_t_world: np.ndarray  # (T, 4, 4) extrinsics (world -> camera optical frame)
    valid: np.ndarray  # (T, P) bool: ground truth usable
    betas: np.ndarray  # (P, 10)
    root_rot: np.ndarray  # (T, P, 3, 3) pelvis orientation in the world
    body_pose: np.ndarray  # (T, P, 23, 3) axis-angle
    joints: np.ndarray  # (T, P, 24, 3) world
    image_files: list[Path] | None = None


def joint_frames(root_rot: np.ndarray, body_pose: np.ndarray) -> np.ndarray:
    """World rotations (..., 24, 3, 3) of the SMPL joint frames from the root and local rotations."""
    local = exp_rotvec(body_pose.reshape(-1, 3)).reshape(body_pose.shape[:-1] + (3, 3))
    frames = [root_rot]
    for j in range(1, 24):
        frames.append(frames[SMPL_PARENTS[j]] @ local[..., j - 1, :, :])
    return np.stack(frames, -3)


def up_rotation(seq: DatasetSequence, up: str) -> np.ndarray:
    """map_R_world turning the dataset's up direction (an axis, or 'auto': mean spine direction) onto +z."""
    if up == "auto":
        spine = (seq.joints[..., 12, :] - seq.joints[..., 0, :])[seq.valid]
        if not len(spine):
            raise FormatError("no valid frame to find the up direction from; give --up")
        direction = spine.mean(0)
    else:
        direction = np.asarray(AXES[up], float)
    direction = direction / np.linalg.norm(direction)
    axis = np.cross(direction, [0.0, 0.0, 1.0])
    s, c = np.linalg.norm(axis), float(direction[2])
    if s < 1e-9:
        return np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])
    return exp_rotvec(axis / s * np.arctan2(s, c))


def write_dataset_bag(path: Path, seq: DatasetSequence, body_model: str, up: str = "auto", seed: int = 0,
                      image_scale: float = 1.0) -> dict[str, int]:
    """The bag for one sequence; returns message counts per topic."""
    map_r = up_rotation(seq, up)
    map_t_world = np.eye(4)
    map_t_world[:3, :3] = map_r
    rng = np.random.default_rng(seed)
    frames = joint_frames(np.nan_to_num(seq.root_rot), np.nan_to_num(seq.body_pose))
    scaled_k = np.diag([image_scale, image_scale, 1.0]) @ seq.k
    size = (int(round(seq.width * image_scale)), int(round(seq.height * image_scale)))
    with McapBagWriter(path) as bag:
        for t in tqdm(range(len(seq.cam_t_world)), desc=seq.name, unit="frame", leave=False):
            stamp = 1.0 + t / seq.fps
            ns = stamp_ns(stamp)
            cam_t_world = seq.cam_t_world[t]
            bag.write("/tf", ns, tf_message(transform_msg(WORLD_FRAME, CAMERA_FRAME, stamp,
                                                          map_t_world @ np.linalg.inv(cam_t_world))))
            bag.write(TOPICS["camera_info"], ns, camera_info_msg(stamp, CAMERA_FRAME, scaled_k, *size))
            rot, trans = cam_t_world[:3, :3], cam_t_world[:3, 3]
            detections = []
            people = np.flatnonzero(seq.valid[t])
            for p in people:
                landmarks = landmarks_from_smpl(seq.joints[t, p], frames[t, p]) @ rot.T + trans
                pelvis = landmarks[[23, 24]].mean(0)
                uv = scaled_k @ pelvis
                if pelvis[2] > 0.3 and 0 <= uv[0] / uv[2] < size[0] and 0 <= uv[1] / uv[2] < size[1]:
                    detections.append(detect(landmarks, scaled_k, size, rng))
            bag.write(TOPICS["keypoints"], ns, keypoints_msg(stamp, size[0], size[1], detections))
            joints_map = seq.joints[t, people] @ map_r.T
            bag.write(TOPICS["ground_truth"], ns, ground_truth_msg(
                stamp, WORLD_FRAME, body_model, people, seq.betas[people], seq.body_pose[t, people],
                map_r @ seq.root_rot[t, people], joints_map[:, 0], joints_map))
            if seq.image_files is not None:
                bgr = cv2.imread(str(seq.image_files[t]), cv2.IMREAD_COLOR)
                if bgr is None:
                    raise FormatError(f"cannot read image {seq.image_files[t]}")
                rgb = cv2.cvtColor(cv2.resize(bgr, size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
                bag.write(TOPICS["image"], ns, Image(header=Header(stamp=time_msg(stamp), frame_id=CAMERA_FRAME),
                                                     height=size[1], width=size[0], encoding="rgb8", is_bigendian=0,
                                                     step=3 * size[0], data=rgb.tobytes()))
        return dict(bag.counts)


def image_files(folder: Path | None, pattern: str, count: int) -> list[Path] | None:
    """The sequence's images in frame order, or None without --images; FormatError if some are missing."""
    if folder is None:
        return None
    files = [folder / pattern.format(i) for i in range(count)]
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise FormatError(f"{len(missing)} of {count} images missing in {folder} (first: {missing[0].name})")
    return files


def common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_bag", type=Path, help="output bag folder (must not exist)")
    parser.add_argument("--images", type=Path, default=None, help="the sequence's image folder, to add /camera/image_raw")
    parser.add_argument("--image-scale", type=float, default=0.5, help="scale of images and intrinsics (0.5 halves)")
    parser.add_argument("--up", choices=["auto", *AXES], default="auto",
                        help="dataset world axis that points up (auto: from the people's spines)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic detections")
