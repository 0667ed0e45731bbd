#!/usr/bin/env python3
"""Derive the lifting's body-pose prior mean and spread from CMU training sequences.

The keypoint fit needs a prior for what keypoints cannot see (spine, collars, twists about
limbs); a relaxed human pose is a far better centre than SMPL's T-pose. Uses only CMU 131_01 and
131_02 (131_03 and 01_01 stay held out for the calibration benchmark), retargeted onto the
built-in body model. Writes glopro_ros/data/pose_prior/cmu_pose_prior.npz (a few kB).
Data: mocap.cs.cmu.edu (NSF EIA-0196217).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from scipy.spatial.transform import Rotation

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from glopro_ros.core.body_model import BodyModel  # noqa: E402
from glopro_ros.core.mocap import load_cmu  # noqa: E402
from glopro_ros.perception.lifting import POSE_PRIOR_FILE  # noqa: E402

TRAINING = ("scaled_131_01.bvh", "scaled_131_02.bvh")


def main() -> int:
    body = BodyModel(device="cpu")
    rest = body.rest_joints(torch.zeros(1, 10))[0].numpy()
    poses = np.concatenate([load_cmu(n, 10.0, rest).body_pose for n in TRAINING])
    mean, std = np.zeros((23, 3)), np.zeros((23, 3))
    for j in range(23):
        rots = Rotation.from_rotvec(poses[:, j])
        m = rots.mean()
        mean[j] = m.as_rotvec()
        std[j] = (m.inv() * rots).as_rotvec().std(0)
    POSE_PRIOR_FILE.parent.mkdir(parents=True, exist_ok=True)
    np.savez(POSE_PRIOR_FILE, mean=mean, std=std, frames=len(poses),
             source=f"CMU {', '.join(TRAINING)} at 10 Hz retargeted to {body.name}; "
                    "mocap.cs.cmu.edu, NSF EIA-0196217")
    print(f"wrote {POSE_PRIOR_FILE} from {len(poses)} frames")
    return 0


if __name__ == "__main__":
    sys.exit(main())
