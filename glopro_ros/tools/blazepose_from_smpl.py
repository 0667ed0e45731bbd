"""Detector-like BlazePose-33 detections synthesised from known SMPL bodies (simulator, converters).

Bags made from ground truth (the simulator, 3DPW or EMDB without images) still need what a real
detector gives the node: 2D landmarks, visibilities and BlazePose's metric 3D landmarks. Landmarks
that have an SMPL counterpart in the lifting's correspondence table sit on that joint (their
averages reproduce it); face, heel, thumb and finger landmarks are placed at fixed offsets in the
head, ankle and hand frames. Noise follows perception/simulated_keypoints.py (heavy-tailed pixel
noise that grows as visibility drops, occluded limbs, per-landmark bias, wrong metric scale, 3D axes
facing the crop), so the lifting sees the same kind of input as from real BlazePose.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from glopro_ros.perception.rotations import ray_rotation
from glopro_ros.perception.simulated_keypoints import KeypointNoise
from glopro_ros.perception.smpl_correspondence import PAIRS

NUM_LANDMARKS = 33
# landmark -> (SMPL joint whose frame it hangs from, offset in that joint's frame, m; SMPL axes: x left, y up, z forward)
_OFFSETS: dict[int, tuple[int, tuple[float, float, float]]] = {
    0: (15, (0.0, 0.03, 0.11)),  # nose
    1: (15, (0.02, 0.06, 0.09)), 2: (15, (0.035, 0.06, 0.085)), 3: (15, (0.05, 0.06, 0.075)),  # left eye
    4: (15, (-0.02, 0.06, 0.09)), 5: (15, (-0.035, 0.06, 0.085)), 6: (15, (-0.05, 0.06, 0.075)),  # right eye
    7: (15, (0.075, 0.04, 0.0)), 8: (15, (-0.075, 0.04, 0.0)),  # ears (their midpoint is near the head joint)
    9: (15, (0.025, -0.01, 0.10)), 10: (15, (-0.025, -0.01, 0.10)),  # mouth
    17: (22, (0.0, 0.0, -0.03)), 19: (22, (0.0, 0.0, 0.03)),  # left pinky / index about the hand joint
    18: (23, (0.0, 0.0, -0.03)), 20: (23, (0.0, 0.0, 0.03)),
    21: (20, (0.0, 0.0, 0.05)), 22: (21, (0.0, 0.0, 0.05)),  # thumbs, from the wrists
    29: (7, (0.0, -0.05, -0.06)), 30: (8, (0.0, -0.05, -0.06)),  # heels
}
# landmark -> SMPL joint it coincides with (single-landmark pairs of the correspondence table)
_DIRECT = {ids[0]: joint for joint, ids, _ in PAIRS if len(ids) == 1}
_BIAS = np.full(NUM_LANDMARKS, 0.03)
for _joint, _ids, _bias in PAIRS:
    _BIAS[list(_ids)] = _bias
_LIMBS = ((11, 13, 15, 17, 19, 21), (12, 14, 16, 18, 20, 22), (25, 27, 29, 31), (26, 28, 30, 32))


@dataclass
class Detection:
    """One synthetic detection in Keypoints2D's terms."""

    uv: np.ndarray  # (33, 2) px
    confidence: np.ndarray  # (33,)
    world: np.ndarray  # (33, 3) m, hip-centred, BlazePose crop axes
    box: np.ndarray  # (4,) u_min, v_min, u_max, v_max
    score: float


def landmarks_from_smpl(joints: np.ndarray, rotations: np.ndarray) -> np.ndarray:
    """Noise-free 33 landmarks (33, 3) from SMPL joints (24, 3) and joint frames (24, 3, 3)."""
    out = np.zeros((NUM_LANDMARKS, 3))
    for landmark, joint in _DIRECT.items():
        out[landmark] = joints[joint]
    for landmark, (joint, offset) in _OFFSETS.items():
        out[landmark] = joints[joint] + rotations[joint] @ np.asarray(offset)
    return out


def detect(landmarks_cam: np.ndarray, k: np.ndarray, size: tuple[int, int], rng: np.random.Generator,
           noise: KeypointNoise = KeypointNoise(), error_scale: float = 1.0) -> Detection:
    """A noisy detection of camera-frame landmarks (33, 3); error_scale > 1 makes an outlier."""
    pts = landmarks_cam + rng.normal(0.0, 1.0, (NUM_LANDMARKS, 3)) * _BIAS[:, None]
    conf = rng.beta(8.0, 1.2, NUM_LANDMARKS)
    for limb in _LIMBS:
        if rng.random() < noise.occlusion_prob:
            conf[list(limb)] = rng.uniform(0.0, 0.3, len(limb))
    z = np.maximum(pts[:, 2:], 1e-3)
    uv_true = (pts @ k.T)[:, :2] / z
    height = max(float(np.ptp(uv_true[:, 1])), 10.0)
    t = rng.standard_t(noise.student_dof, (NUM_LANDMARKS, 2)) * np.sqrt((noise.student_dof - 2) / noise.student_dof)
    uv = uv_true + error_scale * t * noise.pixel_rel * height / np.sqrt(np.maximum(conf, 0.05))[:, None]
    width, image_height = size
    off = (uv[:, 0] < 0) | (uv[:, 0] >= width) | (uv[:, 1] < 0) | (uv[:, 1] >= image_height) | (pts[:, 2] <= 0)
    conf[off] = 0.0
    hip = pts[[23, 24]].mean(0)
    scale = np.exp(rng.normal(0.0, noise.scale_log_sigma))
    world = scale * (pts - hip) @ ray_rotation(hip) + error_scale * rng.normal(0.0, 1.0, (NUM_LANDMARKS, 3)) * (
        noise.world_sigma / np.sqrt(np.maximum(conf, 0.05)))[:, None]
    box = np.array([uv[:, 0].min(), uv[:, 1].min(), uv[:, 0].max(), uv[:, 1].max()])
    return Detection(uv, conf, world, box, float(rng.uniform(0.6, 1.0)))
