"""Gaussian body state: validation errors, flat view, manifold ops, frame transforms vs sampling."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from glopro_ros.core.gaussian_state import (
    FLAT_DIM, ROOT_POSITION, ROOT_THETA, GaussianBodyState, RigidTransform, sanitize_covariance,
)
from glopro_ros.core.so3 import exp_so3, log_so3, quat_to_matrix

F64 = torch.float64


def make_state(b: int = 3, seed: int = 0, frame_id: str = "camera") -> GaussianBodyState:
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=F64)  # noqa: E731
    a = r(b, 6, 6)
    return GaussianBodyState.from_blocks(
        betas=r(b, 10), betas_cov=torch.full((b, 10), 0.2, dtype=F64),
        body_pose=0.3 * r(b, 23, 3), body_pose_cov=torch.full((b, 23, 3), 0.05**2, dtype=F64),
        root_orientation=exp_so3(r(b, 3)), root_position=r(b, 3) + torch.tensor([0, 0, 4.0]),
        root_cov=1e-3 * (a @ a.mT + torch.eye(6)), frame_id=frame_id)


def test_blocks_views_and_flat_round_trip():
    s = make_state()
    assert s.batch_size == 3 and s.cov.shape == (3, FLAT_DIM, FLAT_DIM)
    assert s.body_pose_cov.shape == (3, 23, 3, 3) and s.root_cov.shape == (3, 6, 6)
    np.testing.assert_allclose(s.body_pose_cov[:, 4].numpy(),
                               np.broadcast_to(np.eye(3) * 0.05**2, (3, 3, 3)))
    # root_cov order [position, theta]; flat order [..., theta, position]
    np.testing.assert_allclose(s.root_cov[:, :3, :3].numpy(),
                               s.cov[:, ROOT_POSITION, ROOT_POSITION].numpy())
    np.testing.assert_allclose(s.root_cov[:, 3:, :3].numpy(),
                               s.cov[:, ROOT_THETA, ROOT_POSITION].numpy())
    back = GaussianBodyState.from_flat(s.flat_mean(), s.cov, s.frame_id)
    for f in ("betas", "body_pose", "root_orientation", "root_position", "cov"):
        np.testing.assert_allclose(getattr(back, f).numpy(), getattr(s, f).numpy(), atol=1e-10)
    d = 0.1 * torch.randn(3, FLAT_DIM, dtype=F64)
    moved = s.boxplus(d)
    np.testing.assert_allclose(moved.boxminus(s).numpy(), d.numpy(), atol=1e-9)
    assert GaussianBodyState.cat([s, s.select(1)]).batch_size == 4
    empty = s.select(slice(0, 0))
    assert empty.batch_size == 0 and empty.transform(
        RigidTransform(torch.eye(3), torch.zeros(3)), "world").batch_size == 0


def test_angles_wrap_and_covariances_are_clamped():
    s = make_state(1)
    pose = s.body_pose.clone()
    pose[0, 0] = torch.tensor([0, 0, 2 * math.pi - 0.3])
    cov = s.cov.clone()
    cov[0, 0, :] = 0.0
    cov[0, :, 0] = 0.0  # a zero-variance direction
    t = GaussianBodyState(s.betas, pose, s.root_orientation, s.root_position, cov, "camera")
    assert t.body_pose.norm(dim=-1).max() <= math.pi
    np.testing.assert_allclose(exp_so3(t.body_pose[0, 0]).numpy(),
                               exp_so3(pose[0, 0]).numpy(), atol=1e-12)
    assert torch.linalg.eigvalsh(t.cov).min() > 0
    assert torch.allclose(t.cov, t.cov.mT)
    c = sanitize_covariance(torch.tensor([[1.0, 0.0], [0.0, -1e-14]], dtype=F64))
    assert torch.linalg.eigvalsh(c).min() > 0


@pytest.mark.parametrize("field,value,match", [
    ("betas", torch.zeros(3, 9), "betas"),
    ("body_pose", torch.zeros(3, 24, 3), "body_pose"),
    ("root_orientation", torch.zeros(3, 3, 3), "root_orientation"),
    ("root_position", torch.full((3, 3), float("nan")), "root_position"),
    ("cov", torch.zeros(3, 85, 84), "cov"),
])
def test_bad_inputs_name_the_field(field, value, match):
    s = make_state()
    kwargs = {f: getattr(s, f) for f in ("betas", "body_pose", "root_orientation",
                                         "root_position", "cov", "frame_id")}
    kwargs[field] = value
    with pytest.raises(ValueError, match=match):
        GaussianBodyState(**kwargs)


def test_negative_variances_and_bad_blocks_name_the_field():
    s = make_state()
    cov = s.cov.clone()
    cov[1, 30, 30] = -0.1
    with pytest.raises(ValueError, match=r"body_pose\[6\]\[2\]"):
        GaussianBodyState(s.betas, s.body_pose, s.root_orientation, s.root_position, cov, "c")
    good = dict(betas=s.betas, betas_cov=torch.ones(3, 10), body_pose=s.body_pose,
                body_pose_cov=torch.ones(3, 23, 3), root_orientation=s.root_orientation,
                root_position=s.root_position, root_cov=torch.ones(3, 6), frame_id="c")
    for field, value in (("betas_cov", -torch.ones(3, 10)), ("root_cov", torch.ones(3, 5)),
                         ("body_pose_cov", torch.full((3, 23, 3), float("nan")))):
        with pytest.raises(ValueError, match=field):
            GaussianBodyState.from_blocks(**dict(good, **{field: value}))
    indefinite = torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=F64)
    with pytest.raises(ValueError, match="root_cov"):
        sanitize_covariance(indefinite, "root_cov")
    with pytest.raises(ValueError, match="frame_id"):
        GaussianBodyState(s.betas, s.body_pose, s.root_orientation, s.root_position, s.cov, 3)
    with pytest.raises(ValueError, match="rotation"):
        RigidTransform(2 * torch.eye(3), torch.zeros(3))


def _camera_in_world() -> RigidTransform:
    q = torch.tensor([0.5, -0.5, 0.5, -0.5], dtype=F64)  # optical frame -> REP-103 body
    return RigidTransform(quat_to_matrix(q), torch.tensor([2.0, -1.0, 1.2], dtype=F64))


def test_camera_world_camera_round_trip_is_identity():
    s = make_state()
    t_wc = _camera_in_world()
    w = s.transform(t_wc, "world")
    assert w.frame_id == "world"
    back = w.transform(t_wc.inverse(), "camera")
    for f in ("betas", "body_pose", "root_orientation", "root_position", "cov"):
        np.testing.assert_allclose(getattr(back, f).numpy(), getattr(s, f).numpy(), atol=1e-10)
    # joints-free checks: the root goes where the transform sends it, body parts do not change
    np.testing.assert_allclose(w.root_position.numpy(), t_wc.apply(s.root_position).numpy())
    np.testing.assert_allclose(w.body_pose.numpy(), s.body_pose.numpy())
    # body-centric frame round trip
    h = s.root_transform()
    rel = s.to_body_frame(RigidTransform(h.rotation, h.translation), "body")
    np.testing.assert_allclose(rel.root_position.numpy(), np.zeros((3, 3)), atol=1e-12)
    np.testing.assert_allclose(rel.root_orientation.numpy(), np.broadcast_to(np.eye(3), (3, 3, 3)),
                               atol=1e-12)
    again = rel.from_body_frame(RigidTransform(h.rotation, h.translation), "camera")
    np.testing.assert_allclose(again.cov.numpy(), s.cov.numpy(), atol=1e-12)


def _sample_root_errors(s, t, n, g):
    """Push samples of state and transform through the exact transform; return root errors in
    the [d_position, d_theta] convention w.r.t. the transformed mean."""
    b = s.batch_size
    z = torch.randn(b, n, 6, generator=g, dtype=F64)
    ds = z @ torch.linalg.cholesky(s.root_cov).mT  # [dp, dtheta]
    zt = torch.randn(b, n, 6, generator=g, dtype=F64)
    dt = zt @ torch.linalg.cholesky(t.cov).mT if t.cov is not None else torch.zeros_like(zt)
    r_t = t.rotation @ exp_so3(dt[..., 3:])  # (b, n, 3, 3)
    p = s.root_position[:, None] + ds[..., :3]
    r = s.root_orientation[:, None] @ exp_so3(ds[..., 3:])
    p2 = (r_t @ p[..., None])[..., 0] + t.translation + dt[..., :3]
    r2 = r_t @ r
    mean = s.transform(t, "world")
    e_p = p2 - mean.root_position[:, None]
    e_r = log_so3(mean.root_orientation[:, None].mT @ r2)
    e = torch.cat([e_p, e_r], -1)
    return e, mean


def test_transform_covariance_matches_sampling_with_uncertain_camera():
    s = make_state(4, seed=2)
    base = _camera_in_world()
    t_cov = torch.diag(torch.tensor([0.03, 0.02, 0.01, 0.02, 0.01, 0.015], dtype=F64) ** 2)
    t = RigidTransform(base.rotation, base.translation, t_cov)
    g = torch.Generator().manual_seed(5)
    e, mean = _sample_root_errors(s, t, 40000, g)
    sample_cov = torch.einsum("bni,bnj->bij", e - e.mean(1, keepdim=True),
                              e - e.mean(1, keepdim=True)) / e.shape[1]
    rel = (sample_cov - mean.root_cov).norm(dim=(1, 2)) / mean.root_cov.norm(dim=(1, 2))
    assert rel.max() < 0.05, rel
    # inverse transform covariance: T^-1 sampled the same way
    inv = t.inverse()
    zt = torch.randn(40000, 6, generator=g, dtype=F64) @ torch.linalg.cholesky(t.cov).mT
    r_s = t.rotation @ exp_so3(zt[:, 3:])
    t_s = t.translation + zt[:, :3]
    r_inv = r_s.mT
    t_inv = -(r_inv @ t_s[..., None])[..., 0]
    err = torch.cat([t_inv - inv.translation, log_so3(inv.rotation.mT @ r_inv)], -1)
    c = err.mT @ err / err.shape[0]
    assert (c - inv.cov).norm() / inv.cov.norm() < 0.05


def test_axis_angle_covariance_converts_to_right_perturbation():
    from glopro_ros.core.gaussian_state import right_cov_from_axis_angle_cov
    mean = torch.tensor([0.4, -1.2, 0.9], dtype=F64)
    cov_add = torch.diag(torch.tensor([0.02, 0.01, 0.03], dtype=F64) ** 2)
    g = torch.Generator().manual_seed(11)
    e = torch.randn(50000, 3, generator=g, dtype=F64) @ torch.linalg.cholesky(cov_add).mT
    delta = log_so3(exp_so3(mean).mT @ exp_so3(mean + e))
    sample = delta.mT @ delta / delta.shape[0]
    right = right_cov_from_axis_angle_cov(mean, cov_add)
    assert (sample - right).norm() / right.norm() < 0.03
    assert (sample - cov_add).norm() / cov_add.norm() > 0.1  # the conversion matters here
