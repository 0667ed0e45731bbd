"""BlazePose-33 landmarks to SMPL-24 joint targets, with how far each pair may differ.

BlazePose marks surface-ish anatomical points (ears, shoulder tips, toe tips) while SMPL's joints
are regressed rotation centres, so each pair has a systematic offset. `bias_m` is that offset's
standard deviation in metres; the lifting adds it to the detector noise so that the covariance
does not claim more than the correspondence can give. Pelvis, spine and collars have no
counterpart: their pose comes from the kinematic chain and the priors.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from glopro_ros.perception.keypoints import PersonKeypoints

# (SMPL joint index, BlazePose landmark indices averaged, bias std in metres)
PAIRS: tuple[tuple[int, tuple[int, ...], float], ...] = (
    (1, (23,), 0.04), (2, (24,), 0.04),              # hips (BlazePose's sit wider)
    (4, (25,), 0.025), (5, (26,), 0.025),            # knees
    (7, (27,), 0.025), (8, (28,), 0.025),            # ankles
    (10, (31,), 0.04), (11, (32,), 0.04),            # foot joint <- toe tip
    (12, (11, 12), 0.05),                            # neck <- shoulder midpoint
    (15, (7, 8), 0.05),                              # head <- ear midpoint
    (16, (11,), 0.035), (17, (12,), 0.035),          # shoulders
    (18, (13,), 0.025), (19, (14,), 0.025),          # elbows
    (20, (15,), 0.02), (21, (16,), 0.02),            # wrists
    (22, (17, 19), 0.03), (23, (18, 20), 0.03),      # hand <- pinky/index knuckles
)
SMPL_JOINTS = np.array([p[0] for p in PAIRS])
BIAS_M = np.array([p[2] for p in PAIRS])
_MAP = np.zeros((len(PAIRS), 33))
for _row, (_, _ids, _) in enumerate(PAIRS):
    _MAP[_row, list(_ids)] = 1.0 / len(_ids)
_MIN_OF = [list(ids) for _, ids, _ in PAIRS]


@dataclass
class BodyTargets:
    """Per-target observations for the SMPL joints in SMPL_JOINTS order.

    uv: pixels; confidence: 0..1 (0 = unusable); world: metres relative to the BlazePose hip
    centre, axes as in PersonKeypoints.world.
    """

    uv: np.ndarray  # (K, 2)
    confidence: np.ndarray  # (K,)
    world: np.ndarray  # (K, 3)


def targets_from_blazepose(person: PersonKeypoints, width: int, height: int) -> BodyTargets:
    """Map one person's landmarks; landmarks off the image get confidence 0 (they are guessed)."""
    lm = person.landmarks
    inside = (lm[:, 0] >= 0) & (lm[:, 0] < width) & (lm[:, 1] >= 0) & (lm[:, 1] < height)
    vis = np.where(inside, person.visibility, 0.0)
    conf = np.array([vis[ids].min() for ids in _MIN_OF])
    return BodyTargets(uv=_MAP @ lm, confidence=conf, world=_MAP @ person.world)
