"""BVH parsing and the retarget of CMU mocap to SMPL: bone directions follow the capture, feet stay on the ground."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from glopro_ros.core.body_model import BodyModel
from glopro_ros.core.mocap import (
    CMU_FILES, DATA_DIR, SMPL_FROM_CMU, SMPL_PARENTS, Y_UP_TO_Z_UP, bvh_forward_kinematics, load_cmu, mirror,
    parse_bvh, resample, retarget_to_smpl,
)


@pytest.fixture(scope="module")
def body() -> BodyModel:
    return BodyModel(device="cpu")


@pytest.fixture(scope="module")
def rest(body) -> np.ndarray:
    return body.rest_joints(torch.zeros(1, 10))[0].numpy()


def smpl_joints(body: BodyModel, m) -> np.ndarray:
    rot = torch.tensor(Rotation.from_rotvec(m.body_pose.reshape(-1, 3)).as_matrix().reshape(-1, 23, 3, 3))
    joints, _ = body.forward_joints(torch.zeros(m.num_frames, 10), rot, torch.tensor(m.root_rot),
                                    torch.tensor(m.root_pos))
    return joints.numpy()


def test_parse_bvh_header_and_frames():
    bvh = parse_bvh(DATA_DIR / "scaled_131_01.bvh")
    assert len(bvh.names) == 31 and bvh.names[0] == "Hips"
    assert bvh.values.shape == (995, 6 + 30 * 3)
    assert bvh.frame_time == pytest.approx(1 / 120, rel=1e-3)


@pytest.mark.parametrize("name", sorted(CMU_FILES))
def test_retarget_follows_capture_and_stays_on_ground(name, body, rest):
    bvh = parse_bvh(DATA_DIR / name)
    m = resample(retarget_to_smpl(bvh, rest, CMU_FILES[name], name), 30.0)
    j = smpl_joints(body, m)
    # Bone lengths are SMPL's (constant over time) and human-sized.
    rest_len = np.linalg.norm(rest[1:] - rest[SMPL_PARENTS[1:]], axis=-1)
    lengths = np.linalg.norm(j[:, 1:] - j[:, SMPL_PARENTS[1:]], axis=-1)
    np.testing.assert_allclose(lengths, np.broadcast_to(rest_len, lengths.shape), atol=1e-6)
    assert 0.3 < rest_len[3] < 0.55  # thigh: left hip (1) -> left knee (4)
    # Feet near the ground, head at standing height.
    lowest_foot = j[:, [7, 8, 10, 11], 2].min(1)
    assert -0.05 < lowest_foot.min() and np.median(lowest_foot) < 0.2
    assert 1.4 < np.median(j[:, 15, 2]) < 1.9
    # Bone directions follow the capture (the legs and arms, where both skeletons have bones).
    _, p = bvh_forward_kinematics(bvh, CMU_FILES[name])
    p = resample_positions(p @ Y_UP_TO_Z_UP.T, m.num_frames)[:, SMPL_FROM_CMU]
    for child in (4, 5, 7, 8, 18, 19, 20, 21):
        a = j[:, child] - j[:, SMPL_PARENTS[child]]
        b = p[:, child] - p[:, SMPL_PARENTS[child]]
        cos = (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
        assert cos.mean() > 0.97, (child, cos.mean())


def resample_positions(p: np.ndarray, n: int) -> np.ndarray:
    """120 Hz positions at the 30 Hz frames (every 4th)."""
    return p[::4][:n]


def test_resample_any_rate_and_mirror_involution(rest):
    m = load_cmu("scaled_131_02.bvh", 120.0, rest)
    for fps in (25.0, 30.0, 60.0):
        r = resample(m, fps)
        assert r.num_frames == pytest.approx(m.num_frames * fps / 120.0, abs=2)
        np.testing.assert_allclose(r.root_pos[0], m.root_pos[0])
    mm = mirror(mirror(m))
    np.testing.assert_allclose(mm.root_pos, m.root_pos)
    np.testing.assert_allclose(mm.body_pose, m.body_pose)
    np.testing.assert_allclose(mm.root_rot, m.root_rot, atol=1e-12)


def test_retarget_rejects_other_skeletons(rest):
    bvh = parse_bvh(DATA_DIR / "scaled_131_01.bvh")
    short = type(bvh)(bvh.names[:10], bvh.parents[:10], bvh.offsets[:10], bvh.channels[:10], bvh.frame_time,
                      bvh.values[:, :36])
    with pytest.raises(ValueError, match="31-joint"):
        retarget_to_smpl(short, rest)
