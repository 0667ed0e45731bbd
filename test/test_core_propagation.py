"""Joint (and vertex) propagation: Jacobian vs finite differences and autodiff, first order vs
Monte Carlo (Frobenius and NEES), unscented, frames."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from glopro_ros.core.body_model import BodyModel
from glopro_ros.core.gaussian_state import FLAT_DIM, GaussianBodyState, RigidTransform
from glopro_ros.core.propagation import (
    joint_jacobian, joints_at, propagate_joints, propagate_joints_sampling,
    propagate_joints_unscented, propagate_vertices, sample_deltas,
)
from glopro_ros.core.so3 import exp_so3, quat_to_matrix

F64 = torch.float64


@pytest.fixture(scope="module")
def model() -> BodyModel:
    return BodyModel(device="cpu")


def moderate_state(b: int = 4, seed: int = 0) -> GaussianBodyState:
    """Typical image-model uncertainty: betas 0.3, joints 3 deg, root 3 deg and 5 cm."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=F64)  # noqa: E731
    pose = 0.4 * r(b, 23, 3)
    pose[0] = 0.0  # exact zero pose must work too
    return GaussianBodyState.from_blocks(
        betas=r(b, 10), betas_cov=torch.full((b, 10), 0.3**2, dtype=F64),
        body_pose=pose, body_pose_cov=torch.full((b, 23, 3), 0.05**2, dtype=F64),
        root_orientation=exp_so3(r(b, 3)), root_position=r(b, 3) + torch.tensor([0, 0, 4.0]),
        root_cov=torch.tensor([0.05**2] * 3 + [0.05**2] * 3, dtype=F64).repeat(b, 1),
        frame_id="camera")


def test_jacobian_matches_finite_differences_and_autodiff(model):
    s = moderate_state(3)
    joints, jac = joint_jacobian(model, s)
    assert jac.shape == (3, 24, 3, FLAT_DIM)
    np.testing.assert_allclose(joints.numpy(), joints_at(model, s, torch.zeros(3, 85, dtype=F64)).numpy())
    eps = 1e-6
    fd = torch.zeros_like(jac)
    for i in range(FLAT_DIM):
        d = torch.zeros(3, FLAT_DIM, dtype=F64)
        d[:, i] = eps
        fd[..., i] = (joints_at(model, s, d) - joints_at(model, s, -d)) / (2 * eps)
    np.testing.assert_allclose(jac.numpy(), fd.numpy(), atol=1e-7)
    one = s.select(0)
    auto = torch.func.jacrev(lambda d: joints_at(model, one, d[None])[0])(
        torch.zeros(FLAT_DIM, dtype=F64))
    np.testing.assert_allclose(jac[0].numpy(), auto.numpy(), atol=1e-10)


def test_first_order_matches_monte_carlo_and_nees_is_chi2_3(model):
    s = moderate_state(4)
    lin = propagate_joints(model, s)
    assert lin.mean.shape == (4, 24, 3) and lin.cov.shape == (4, 24, 3, 3)
    g = torch.Generator().manual_seed(7)
    samples = joints_at(model, s, sample_deltas(s, 20000, g))  # (B, N, 24, 3)
    mc = propagate_joints_sampling(model, s, 20000, generator=g)
    rel = (mc.cov - lin.cov).norm(dim=(-2, -1)) / mc.cov.norm(dim=(-2, -1))
    assert rel.max() < 0.10, f"max relative Frobenius error {rel.max():.3f}"
    err = samples - lin.mean[:, None]
    nees = (err[..., None, :] @ torch.linalg.solve(lin.cov[:, None], err[..., None]))[..., 0, 0]
    mean_nees = nees.mean(1)  # (B, 24) per person and joint
    joint_nees = mean_nees[:, 1:]  # the pelvis is exactly Gaussian; check the others
    assert ((joint_nees - 3).abs() / 3 < 0.05).all(), mean_nees
    # share inside the 95% chi-square(3) bound
    inside = (nees < 7.8147).double().mean()
    assert abs(float(inside) - 0.95) < 0.02


def test_unscented_agrees_with_first_order(model):
    s = moderate_state(3, seed=1)
    lin, ut = propagate_joints(model, s), propagate_joints_unscented(model, s)
    rel = (ut.cov - lin.cov).norm(dim=(-2, -1)) / ut.cov.norm(dim=(-2, -1))
    assert rel.max() < 0.10
    assert (ut.mean - lin.mean).norm(dim=-1).max() < 0.02  # second-order mean shift, metres


def test_vertex_subset_propagation_matches_monte_carlo(model):
    s = moderate_state(2, seed=3)
    ids = torch.tensor([100, 5000, 9000, model.num_vertices - 1])
    lin = propagate_vertices(model, s, ids)
    assert lin.cov.shape == (2, 4, 3, 3)
    g = torch.Generator().manual_seed(9)
    d = sample_deltas(s, 4000, g)
    samples = []
    for b in range(2):
        one = s.select(b)
        betas = one.betas + d[b, :, :10]
        body = exp_so3(one.body_pose) @ exp_so3(d[b, :, 10:79].reshape(-1, 23, 3))
        root = one.root_orientation @ exp_so3(d[b, :, 79:82])
        pos = one.root_position + d[b, :, 82:]
        samples.append(model.forward_vertex_subset(betas, body, root, pos, ids))
    v = torch.stack(samples)
    c = torch.einsum("bnvc,bnvd->bvcd", v - v.mean(1, keepdim=True), v - v.mean(1, keepdim=True))
    c = c / v.shape[1]
    rel = (c - lin.cov).norm(dim=(-2, -1)) / c.norm(dim=(-2, -1))
    assert rel.max() < 0.15


def test_propagation_commutes_with_frame_change(model):
    s = moderate_state(3, seed=4)
    t = RigidTransform(quat_to_matrix(torch.tensor([0.5, -0.5, 0.5, -0.5], dtype=F64)),
                       torch.tensor([1.0, 2.0, 0.5], dtype=F64))
    cam = propagate_joints(model, s)
    world = propagate_joints(model, s.transform(t, "map"))
    assert world.frame_id == "map"
    r = t.rotation
    np.testing.assert_allclose(world.mean.numpy(), t.apply(cam.mean).numpy(), atol=1e-10)
    np.testing.assert_allclose(world.cov.numpy(), (r @ cam.cov @ r.T).numpy(), atol=1e-12)


def test_no_nan_and_empty_batch(model):
    s = moderate_state(2)
    tiny = GaussianBodyState(s.betas, torch.zeros(2, 23, 3), s.root_orientation, s.root_position,
                             torch.zeros(2, FLAT_DIM, FLAT_DIM), "camera")
    out = propagate_joints(model, tiny)
    assert torch.isfinite(out.cov).all() and torch.linalg.eigvalsh(out.cov).min() > 0
    assert torch.isfinite(propagate_joints_unscented(model, tiny).cov).all()
    empty = s.select(slice(0, 0))
    for fn in (propagate_joints, propagate_joints_unscented):
        res = fn(model, empty)
        assert res.mean.shape == (0, 24, 3) and res.cov.shape == (0, 24, 3, 3)
    assert propagate_vertices(model, empty, torch.tensor([1, 2])).cov.shape == (0, 2, 3, 3)
