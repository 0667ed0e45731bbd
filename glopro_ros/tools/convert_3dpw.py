"""`glopro convert-3dpw SEQ.pkl OUT_BAG`: a 3DPW sequence file to a bag with ground truth and detections.

Reads the public sequenceFiles format (pickle written by Python 2: keys sequence, betas, poses
(N, 72), trans, jointPositions (N, 72), cam_poses (N, 4, 4) world -> camera, cam_intrinsics,
campose_valid, one list entry per actor). Ground-truth joints are 3DPW's own jointPositions, so no
SMPL model file is needed. Images (imageFiles/<sequence>/image_%05d.jpg, 1080x1920) are optional.
"""
from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path

import numpy as np

from glopro_ros.perception.rotations import exp_rotvec
from glopro_ros.tools.dataset_bag import (EXIT_BAD_INPUT, EXIT_CODES, EXIT_EXISTS, EXIT_OK, DatasetSequence,
                                          FormatError, common_arguments, image_files, write_dataset_bag)

FPS = 30.0
SIZE = (1080, 1920)  # width, height of 3DPW's portrait phone videos
KEYS = ("sequence", "betas", "poses", "jointPositions", "cam_poses", "cam_intrinsics", "campose_valid")


def load_3dpw(path: Path, images: Path | None = None) -> DatasetSequence:
    """Parse one sequence file; FormatError names what is missing or inconsistent."""
    try:
        with open(path, "rb") as f:
            data = pickle.load(f, encoding="latin1")
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ValueError) as error:
        raise FormatError(f"cannot read {path} as a pickle: {error}") from error
    if not isinstance(data, dict) or any(k not in data for k in KEYS):
        have = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise FormatError(f"{path} is not a 3DPW sequence file: needs keys {', '.join(KEYS)}; has {have}")
    cams = np.asarray(data["cam_poses"], float)
    poses = [np.asarray(p, float) for p in data["poses"]]
    joints = [np.asarray(j, float) for j in data["jointPositions"]]
    valid = [np.asarray(v, bool) for v in data["campose_valid"]]
    T, P = len(cams), len(poses)
    if cams.shape[1:] != (4, 4) or any(p.shape != (T, 72) for p in poses) or any(j.shape != (T, 72) for j in joints) \
            or any(v.shape != (T,) for v in valid) or len(joints) != P or len(valid) != P:
        raise FormatError(f"{path}: expected cam_poses (N, 4, 4), per actor poses and jointPositions (N, 72) and "
                          f"campose_valid (N,), N = {T}")
    pose = np.stack(poses, 1)  # (T, P, 72)
    return DatasetSequence(
        name=str(data["sequence"]), fps=FPS, k=np.asarray(data["cam_intrinsics"], float).reshape(3, 3),
        width=SIZE[0], height=SIZE[1], cam_t_world=cams, valid=np.stack(valid, 1),
        betas=np.stack([np.asarray(b, float).reshape(-1)[:10] for b in data["betas"]]),
        root_rot=exp_rotvec(pose[..., :3].reshape(-1, 3)).reshape(T, P, 3, 3),
        body_pose=pose[..., 3:].reshape(T, P, 23, 3), joints=np.stack(joints, 1).reshape(T, P, 24, 3),
        image_files=image_files(images, "image_{:05d}.jpg", T))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="glopro convert-3dpw", description=__doc__.split("\n\n")[0], epilog=EXIT_CODES)
    parser.add_argument("sequence", type=Path, help="3DPW sequenceFiles/<split>/<name>.pkl")
    common_arguments(parser)
    args = parser.parse_args(argv)
    if args.out_bag.exists():
        print(f"glopro convert-3dpw: {args.out_bag} exists", file=sys.stderr)
        return EXIT_EXISTS
    try:
        seq = load_3dpw(args.sequence, args.images)
        counts = write_dataset_bag(args.out_bag, seq, "smpl (3DPW)", args.up, args.seed, args.image_scale)
    except FormatError as error:
        print(f"glopro convert-3dpw: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"wrote {args.out_bag}: {seq.name}, {len(seq.cam_t_world)} frames, {seq.valid.shape[1]} people; "
          + ", ".join(f"{t} {n}" for t, n in sorted(counts.items())))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
