"""Motion capture import: CMU BVH files to SMPL parameters over time (world Z-up, SI units).

The motion model learns from real human motion; CMU's BVH skeleton (31 joints, Y up) is retargeted
to SMPL's 24-joint tree by global bone orientations: each SMPL joint takes the world rotation of its
CMU counterpart times a constant rest-pose correction that turns SMPL's T-pose bone onto CMU's rest
bone, so bone directions follow the capture while bone lengths stay SMPL's.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "cmu_mocap"
# Bundled sequences and their length unit in metres (see data/cmu_mocap/README.md).
CMU_FILES: dict[str, float] = {
    "scaled_131_01.bvh": 1.0,
    "scaled_131_02.bvh": 1.0,
    "scaled_131_03.bvh": 1.0,
    "01_01_unscaled.bvh": 0.056444,
}
# BVH world (Y up, actor faces +Z, left is +X) to REP-103 world (Z up): x -> x, y -> z, z -> -y.
Y_UP_TO_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])

SMPL_PARENTS = np.array([-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21])
# SMPL joint -> CMU joint (depth-first index in CMU's 31-joint BVH: names differ between CMU exports,
# e.g. LeftUpLeg/LeftHip, LeftShoulder is the collar in one and the upper arm in the other).
SMPL_FROM_CMU = np.array([0, 2, 7, 11, 3, 8, 12, 4, 9, 13, 5, 10, 15, 17, 24, 16, 18, 25, 19, 26, 20, 27, 21, 28])
# The child whose bone orients each SMPL joint (-1: leaf, local rotation stays identity).
SMPL_BONE_CHILD = np.array([-1, 4, 5, 6, 7, 8, 9, 10, 11, 12, -1, -1, 15, 16, 17, -1, 18, 19, 20, 21, 22, 23, -1, -1])
# CMU joint that marks the far end of that bone (the wrist's "hand" joint has zero length in CMU's
# 131 export, so the wrist points at the finger base instead).
CMU_BONE_END = {20: 22, 27: 29}
CMU_NUM_JOINTS = 31


@dataclass(frozen=True)
class BvhMotion:
    """A parsed BVH file: skeleton and per-frame channel values (degrees, file length unit)."""

    names: list[str]
    parents: np.ndarray  # (J,) parent index, -1 for the root
    offsets: np.ndarray  # (J, 3) rest offsets from the parent
    channels: list[list[str]]  # per joint, e.g. ["Zrotation", "Yrotation", "Xrotation"]
    frame_time: float
    values: np.ndarray  # (T, C) channel values in file order


@dataclass(frozen=True)
class SmplMotion:
    """SMPL parameters over time in the world (Z up): root = pelvis pose, body pose axis-angle."""

    fps: float
    root_pos: np.ndarray  # (T, 3) pelvis position, m
    root_rot: np.ndarray  # (T, 3, 3) pelvis orientation in the world
    body_pose: np.ndarray  # (T, 23, 3) local joint rotations, axis-angle
    betas: np.ndarray  # (10,)
    name: str = ""

    @property
    def num_frames(self) -> int:
        return self.root_pos.shape[0]


def parse_bvh(path: str | Path) -> BvhMotion:
    """Read a BVH file (hierarchy and motion sections)."""
    tokens = Path(path).read_text().split()
    names: list[str] = []
    parents: list[int] = []
    offsets: list[list[float]] = []
    channels: list[list[str]] = []
    stack: list[int] = []
    i = 0
    in_end_site = False
    while tokens[i] != "MOTION":
        tok = tokens[i]
        if tok in ("ROOT", "JOINT"):
            names.append(tokens[i + 1])
            parents.append(stack[-1] if stack else -1)
            channels.append([])
            offsets.append([0.0, 0.0, 0.0])
            i += 2
        elif tok == "End":
            in_end_site = True
            i += 2
        elif tok == "{":
            stack.append(-2 if in_end_site else len(names) - 1)
            i += 1
        elif tok == "}":
            stack.pop()
            in_end_site = False
            i += 1
        elif tok == "OFFSET":
            if not in_end_site:
                offsets[-1] = [float(v) for v in tokens[i + 1 : i + 4]]
            i += 4
        elif tok == "CHANNELS":
            n = int(tokens[i + 1])
            channels[-1] = tokens[i + 2 : i + 2 + n]
            i += 2 + n
        else:
            i += 1
    num_frames = int(tokens[tokens.index("Frames:", i) + 1])
    j = tokens.index("Time:", i)
    frame_time = float(tokens[j + 1])
    num_ch = sum(len(c) for c in channels)
    values = np.asarray(tokens[j + 2 : j + 2 + num_frames * num_ch], dtype=float)
    if values.size != num_frames * num_ch:
        raise ValueError(f"{path}: expected {num_frames} frames of {num_ch} channels, got {values.size} values")
    return BvhMotion(names, np.array(parents), np.array(offsets), channels, frame_time,
                     values.reshape(num_frames, num_ch))


def bvh_forward_kinematics(bvh: BvhMotion, unit: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """World rotations (T, J, 3, 3) and positions (T, J, 3), in metres, in the BVH's Y-up world."""
    T, J = bvh.values.shape[0], len(bvh.names)
    rots = np.empty((T, J, 3, 3))
    pos = np.empty((T, J, 3))
    col = 0
    for j in range(J):
        chans = bvh.channels[j]
        vals = bvh.values[:, col : col + len(chans)]
        col += len(chans)
        rot_axes = "".join(c[0] for c in chans if c.endswith("rotation"))
        rot_vals = np.stack([vals[:, k] for k, c in enumerate(chans) if c.endswith("rotation")], -1)
        # Intrinsic rotations in the listed order (upper-case axes in scipy): R = R_1 R_2 R_3.
        local = Rotation.from_euler(rot_axes.upper(), rot_vals, degrees=True).as_matrix() if rot_axes else np.eye(3)
        p = bvh.parents[j]
        if p < 0:
            trans = np.stack([vals[:, k] for k, c in enumerate(chans) if c.endswith("position")], -1)
            rots[:, j] = local
            pos[:, j] = (bvh.offsets[j] + trans) * unit
        else:
            rots[:, j] = rots[:, p] @ local
            pos[:, j] = pos[:, p] + rots[:, p] @ (bvh.offsets[j] * unit)
    return rots, pos


def _bvh_rest_positions(bvh: BvhMotion, unit: float) -> np.ndarray:
    pos = np.zeros((len(bvh.names), 3))
    for j, p in enumerate(bvh.parents):
        pos[j] = bvh.offsets[j] * unit + (pos[p] if p >= 0 else 0.0)
    return pos


def retarget_to_smpl(bvh: BvhMotion, rest_joints: np.ndarray, unit: float = 1.0, name: str = "") -> SmplMotion:
    """Retarget a CMU BVH to SMPL (betas 0) whose rest (zero-pose) joints, Y up, are `rest_joints` (24, 3).

    The root trajectory is scaled by SMPL's pelvis-to-ankle height over the actor's so that the feet
    stay on the ground and step lengths match SMPL's legs.
    """
    if len(bvh.names) != CMU_NUM_JOINTS:
        raise ValueError(f"expected CMU's {CMU_NUM_JOINTS}-joint BVH skeleton, got {len(bvh.names)} joints")
    rest_joints = np.asarray(rest_joints, dtype=float)
    g_bvh, p_bvh = bvh_forward_kinematics(bvh, unit)
    rest_bvh = _bvh_rest_positions(bvh, unit)
    T = g_bvh.shape[0]
    g_smpl = np.empty((T, 24, 3, 3))
    g_smpl[:, 0] = g_bvh[:, 0]  # both rest frames: Y up, facing +Z, left +X
    for j in range(1, 24):
        child = SMPL_BONE_CHILD[j]
        if child < 0:
            g_smpl[:, j] = g_smpl[:, SMPL_PARENTS[j]]
            continue
        b = SMPL_FROM_CMU[j]
        d_bvh = rest_bvh[CMU_BONE_END.get(b, SMPL_FROM_CMU[child])] - rest_bvh[b]
        d_smpl = rest_joints[child] - rest_joints[j]
        corr = Rotation.align_vectors(d_bvh[None], d_smpl[None])[0].as_matrix()  # d_bvh ~ corr @ d_smpl
        g_smpl[:, j] = g_bvh[:, b] @ corr
    local = np.swapaxes(g_smpl[:, SMPL_PARENTS[1:]], -1, -2) @ g_smpl[:, 1:]
    body_pose = Rotation.from_matrix(local.reshape(-1, 3, 3)).as_rotvec().reshape(T, 23, 3)
    leg_smpl = rest_joints[0, 1] - 0.5 * (rest_joints[7, 1] + rest_joints[8, 1])
    leg_bvh = rest_bvh[0, 1] - 0.5 * (rest_bvh[SMPL_FROM_CMU[7], 1] + rest_bvh[SMPL_FROM_CMU[8], 1])
    scale = leg_smpl / leg_bvh
    root_pos = scale * p_bvh[:, 0] @ Y_UP_TO_Z_UP.T
    root_rot = Y_UP_TO_Z_UP @ g_smpl[:, 0]
    return SmplMotion(1.0 / bvh.frame_time, root_pos, root_rot, body_pose, np.zeros(10), name)


def resample(motion: SmplMotion, fps: float) -> SmplMotion:
    """Resample to `fps`: linear for positions, slerp for rotations."""
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    t_src = np.arange(motion.num_frames) / motion.fps
    t_new = np.arange(0.0, t_src[-1] + 1e-9, 1.0 / fps)
    idx = np.clip(np.searchsorted(t_src, t_new, side="right") - 1, 0, motion.num_frames - 2)
    alpha = np.clip((t_new - t_src[idx]) * motion.fps, 0.0, 1.0)
    root_pos = motion.root_pos[idx] * (1 - alpha[:, None]) + motion.root_pos[idx + 1] * alpha[:, None]
    rots = np.concatenate([Rotation.from_matrix(motion.root_rot).as_rotvec()[:, None], motion.body_pose], 1)
    r0 = Rotation.from_rotvec(rots[idx].reshape(-1, 3))
    r1 = Rotation.from_rotvec(rots[idx + 1].reshape(-1, 3))
    a = np.repeat(alpha, 24)[:, None]
    r = (r0 * Rotation.from_rotvec((r0.inv() * r1).as_rotvec() * a)).as_rotvec().reshape(-1, 24, 3)
    return replace(motion, fps=fps, root_pos=root_pos, root_rot=Rotation.from_rotvec(r[:, 0]).as_matrix(),
                   body_pose=r[:, 1:])


def load_cmu(name: str, fps: float, rest_joints: np.ndarray) -> SmplMotion:
    """Load one bundled CMU sequence (a key of CMU_FILES) retargeted to SMPL at `fps`."""
    if name not in CMU_FILES:
        raise KeyError(f"unknown CMU sequence {name!r}; bundled: {sorted(CMU_FILES)}")
    motion = retarget_to_smpl(parse_bvh(DATA_DIR / name), rest_joints, CMU_FILES[name], name)
    return resample(motion, fps)


# Held-out motion: training never sees scaled_131_02 (slow walk) nor the last 30 % of 01_01.
TRAIN_SPLIT: list[tuple[str, float, float]] = [
    ("scaled_131_01.bvh", 0.0, 1.0), ("scaled_131_03.bvh", 0.0, 1.0), ("01_01_unscaled.bvh", 0.0, 0.7)]
TEST_SPLIT: list[tuple[str, float, float]] = [("scaled_131_02.bvh", 0.0, 1.0), ("01_01_unscaled.bvh", 0.7, 1.0)]


def crop(motion: SmplMotion, start: float, end: float) -> SmplMotion:
    """The part of a motion between fractions `start` and `end` of its length."""
    a, b = int(round(start * motion.num_frames)), int(round(end * motion.num_frames))
    return replace(motion, root_pos=motion.root_pos[a:b], root_rot=motion.root_rot[a:b],
                   body_pose=motion.body_pose[a:b], name=f"{motion.name}[{start:.2f}:{end:.2f}]")


def load_split(split: list[tuple[str, float, float]], fps: float, rest_joints: np.ndarray) -> list[SmplMotion]:
    """Bundled CMU clips of a split (TRAIN_SPLIT or TEST_SPLIT), retargeted and resampled to `fps`."""
    clips = []
    for name, start, end in split:
        full = retarget_to_smpl(parse_bvh(DATA_DIR / name), rest_joints, CMU_FILES[name], name)
        clips.append(resample(crop(full, start, end), fps))
    return clips


_MIRROR_PAIRS = [(1, 2), (4, 5), (7, 8), (10, 11), (13, 14), (16, 17), (18, 19), (20, 21), (22, 23)]


def mirror(motion: SmplMotion) -> SmplMotion:
    """Left-right mirrored motion (world reflected in its x-z plane): training augmentation."""
    m_world = np.diag([1.0, -1.0, 1.0])
    m_body = np.diag([-1.0, 1.0, 1.0])  # SMPL's canonical left is +x
    perm = np.arange(24)
    for a, b in _MIRROR_PAIRS:
        perm[a], perm[b] = b, a
    pose = motion.body_pose[:, perm[1:] - 1] * [1.0, -1.0, -1.0]  # axis-angle of M A M, M = m_body
    return replace(motion, root_pos=motion.root_pos @ m_world, root_rot=m_world @ motion.root_rot @ m_body,
                   body_pose=pose, name=motion.name + "[mirrored]")
