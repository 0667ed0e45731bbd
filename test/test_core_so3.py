"""SO(3) helpers against pytransform3d (numpy reference) and finite differences."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pytransform3d import rotations as pr

from glopro_ros.core import so3

torch.manual_seed(0)


def _random_axis_angles(n: int) -> torch.Tensor:
    phi = torch.randn(n, 3, dtype=torch.float64)
    angles = torch.rand(n, 1, dtype=torch.float64) * math.pi
    phi = phi / phi.norm(dim=1, keepdim=True) * angles
    phi[0] = 0.0  # exact identity
    phi[1] = torch.tensor([1e-9, 0, 0])  # tiny
    phi[2] = torch.tensor([0, 0, math.pi - 1e-7])  # near pi
    return phi


def test_exp_matches_pytransform3d_and_log_inverts():
    phi = _random_axis_angles(200)
    r = so3.exp_so3(phi)
    for p, m in zip(phi.numpy(), r.numpy()):
        ref = pr.matrix_from_compact_axis_angle(p)
        np.testing.assert_allclose(m, ref, atol=1e-12)
    back = so3.log_so3(r)
    np.testing.assert_allclose(so3.exp_so3(back).numpy(), r.numpy(), atol=1e-10)
    mask = phi.norm(dim=1) < math.pi - 1e-3
    np.testing.assert_allclose(back[mask].numpy(), phi[mask].numpy(), atol=1e-9)


def test_quaternion_ros_order_against_pytransform3d():
    phi = _random_axis_angles(100)
    r = so3.exp_so3(phi)
    q = so3.matrix_to_quat(r)  # x, y, z, w
    assert (q[:, 3] >= 0).all()
    for qi, ri in zip(q.numpy(), r.numpy()):
        ref_wxyz = pr.quaternion_from_matrix(ri)
        ref = np.r_[ref_wxyz[1:], ref_wxyz[0]]
        ref = ref if ref[3] >= 0 else -ref
        np.testing.assert_allclose(qi, ref, atol=1e-9)
    np.testing.assert_allclose(so3.quat_to_matrix(q).numpy(), r.numpy(), atol=1e-12)
    np.testing.assert_allclose(so3.quat_to_axis_angle(q)[3:].numpy(), phi[3:].numpy(), atol=1e-8)


@pytest.mark.parametrize("angle", [0.0, 1e-6, 0.3, 2.0, 3.0])
def test_right_and_left_jacobians_by_finite_differences(angle):
    phi = torch.tensor([0.3, -0.5, 0.8], dtype=torch.float64)
    phi = phi / phi.norm() * angle if angle else torch.zeros(3, dtype=torch.float64)
    jr, jl = so3.right_jacobian(phi), so3.left_jacobian(phi)
    eps = 1e-6
    for i in range(3):
        d = torch.zeros(3, dtype=torch.float64)
        d[i] = eps
        r_plus = so3.exp_so3(phi + d)
        # right: exp(phi)^T exp(phi + d) = exp(Jr d); left: exp(phi + d) exp(phi)^T = exp(Jl d)
        right = so3.log_so3(so3.exp_so3(phi).T @ r_plus) / eps
        left = so3.log_so3(r_plus @ so3.exp_so3(phi).T) / eps
        np.testing.assert_allclose(right.numpy(), jr[:, i].numpy(), atol=1e-5)
        np.testing.assert_allclose(left.numpy(), jl[:, i].numpy(), atol=1e-5)


def test_hat_vee_wrap_and_projection():
    v = torch.randn(10, 3, dtype=torch.float64)
    w = torch.randn(10, 3, dtype=torch.float64)
    np.testing.assert_allclose((so3.hat(v) @ w[..., None])[..., 0].numpy(),
                               torch.linalg.cross(v, w).numpy(), atol=1e-12)
    np.testing.assert_allclose(so3.vee(so3.hat(v)).numpy(), v.numpy())
    x = torch.tensor([0.0, math.pi, -math.pi, 3 * math.pi + 0.1, -7.0], dtype=torch.float64)
    wrapped = so3.wrap_angle(x)
    assert ((wrapped >= -math.pi) & (wrapped < math.pi)).all()
    np.testing.assert_allclose(torch.cos(wrapped).numpy(), torch.cos(x).numpy(), atol=1e-12)
    big = torch.tensor([[0.0, 0.0, 2 * math.pi - 0.5]], dtype=torch.float64)
    small = so3.wrap_axis_angle(big)
    assert small.norm() <= math.pi
    np.testing.assert_allclose(so3.exp_so3(small).numpy(), so3.exp_so3(big).numpy(), atol=1e-12)
    noisy = so3.exp_so3(v) + 1e-4 * torch.randn(10, 3, 3, dtype=torch.float64)
    r = so3.project_to_so3(noisy)
    np.testing.assert_allclose((r.mT @ r).numpy(), np.broadcast_to(np.eye(3), (10, 3, 3)),
                               atol=1e-12)
    assert (torch.det(r) > 0).all()


def test_exp_jacobian_finite_at_zero():
    jac = torch.func.jacrev(so3.exp_so3)(torch.zeros(3, dtype=torch.float64))
    assert torch.isfinite(jac).all()
    np.testing.assert_allclose(jac[..., 0].numpy(), so3.hat(torch.eye(3, dtype=torch.float64)[0]))
