"""Detector-like keypoint targets from known SMPL bodies, for calibrating the lifting.

Noise that BlazePose really has, not the lifting's own assumptions: heavy-tailed (Student-t)
pixel noise growing as visibility drops, occluded limbs with low visibility and worse positions,
a per-frame systematic offset between each BlazePose landmark and its SMPL joint, a wrong metric
size of the 3D landmarks (log-normal), joints leaving the image. Camera: optical frame, looking
horizontally from `camera_height`, person facing any direction.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from glopro_ros.perception.lifting import KeypointLifter
from glopro_ros.perception.rotations import exp_rotvec, ray_rotation
from glopro_ros.perception.smpl_correspondence import BIAS_M, SMPL_JOINTS, BodyTargets

# camera optical axes (x right, y down, z forward) expressed in a Z-up world looking along +x
WORLD_R_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
LIMBS = ([18, 20, 22], [19, 21, 23], [4, 7, 10], [5, 8, 11])  # SMPL joints occluded together


@dataclass
class SimulatedView:
    betas: np.ndarray
    local: np.ndarray  # (23, 3, 3)
    root_r: np.ndarray  # camera frame
    root_p: np.ndarray
    joints: np.ndarray  # (24, 3) camera frame
    targets: BodyTargets


@dataclass
class KeypointNoise:
    pixel_rel: float = 0.02  # of the person's pixel height, at full visibility
    student_dof: float = 4.0
    world_sigma: float = 0.05
    scale_log_sigma: float = 0.08
    occlusion_prob: float = 0.15  # per limb


def simulate_view(lifter: KeypointLifter, body_pose: np.ndarray, world_root_r: np.ndarray,
                  k: np.ndarray, size: tuple[int, int], rng: np.random.Generator,
                  noise: KeypointNoise = KeypointNoise(), camera_height: float = 1.2
                  ) -> SimulatedView:
    """One view of a mocap pose (axis-angle (23,3), Z-up world root rotation) at a random place."""
    betas = rng.normal(0.0, 1.0, 10)
    local = exp_rotvec(body_pose)
    yaw = exp_rotvec(np.array([0.0, 0.0, rng.uniform(-np.pi, np.pi)]))
    root_r = WORLD_R_OPTICAL.T @ yaw @ world_root_r
    rest = lifter._forward(betas, local, root_r, np.zeros(3))[0]
    depth = rng.uniform(1.5, 6.0)
    lateral = rng.uniform(-0.25, 0.25) * depth
    # feet on the floor: lowest joint 0.08 m above ground, camera at camera_height
    root_p = np.array([lateral, camera_height - 0.08 - rest[:, 1].max(), depth])
    joints = rest + root_p
    targets = _observe(joints, k, size, rng, noise)
    return SimulatedView(betas, local, root_r, root_p, joints, targets)


def _observe(joints: np.ndarray, k: np.ndarray, size: tuple[int, int],
             rng: np.random.Generator, noise: KeypointNoise) -> BodyTargets:
    n = len(SMPL_JOINTS)
    offset = rng.normal(0.0, 1.0, (n, 3)) * BIAS_M[:, None]
    pts = joints[SMPL_JOINTS] + offset
    conf = rng.beta(8.0, 1.2, n)
    for limb in LIMBS:
        if rng.random() < noise.occlusion_prob:
            hidden = np.isin(SMPL_JOINTS, limb)
            conf[hidden] = rng.uniform(0.0, 0.3, hidden.sum())
    proj = pts @ k.T
    uv_true = proj[:, :2] / proj[:, 2:]
    height = np.ptp(uv_true[:, 1])
    t = rng.standard_t(noise.student_dof, (n, 2)) * np.sqrt(
        (noise.student_dof - 2) / noise.student_dof)
    uv = uv_true + t * noise.pixel_rel * height / np.sqrt(np.maximum(conf, 0.05))[:, None]
    w, h = size
    off = (uv[:, 0] < 0) | (uv[:, 0] >= w) | (uv[:, 1] < 0) | (uv[:, 1] >= h)
    conf[off] = 0.0
    hip = pts[:2].mean(0)
    r_ray = ray_rotation(hip)  # BlazePose's 3D axes face the person's crop, not the optical axis
    scale = np.exp(rng.normal(0.0, noise.scale_log_sigma))
    world = scale * (pts - hip) @ r_ray + rng.normal(0.0, 1.0, (n, 3)) * (
        noise.world_sigma / np.sqrt(np.maximum(conf, 0.05)))[:, None]
    return BodyTargets(uv=uv, confidence=conf, world=world)
