"""SO(3) maths in batched torch: exp/log, quaternions (ROS order x, y, z, w), Jacobians, wrapping.

Hand-written rather than taken from a library because the filter and the propagation need batched,
autograd- and torch.func-friendly ops on CPU and CUDA with exact Taylor branches at zero angle
(pytransform3d is numpy-only and per-sample; it is used in the tests as the reference).
All functions accept arbitrary leading batch dimensions.

Conventions (see DESIGN.md): rotation means are matrices, uncertainty is a RIGHT perturbation
R = R_hat @ exp(delta), so the error of R w.r.t. R_hat is log(R_hat^T @ R).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

_SMALL = 1e-4  # below this angle (rad) the Taylor series are exact to float64 precision


def hat(v: Tensor) -> Tensor:
    """(..., 3) -> (..., 3, 3) skew-symmetric matrix with hat(a) @ b = a x b."""
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([o, -z, y, z, o, -x, -y, x, o], dim=-1).reshape(*v.shape[:-1], 3, 3)


def vee(m: Tensor) -> Tensor:
    """Inverse of :func:`hat` (uses the antisymmetric part)."""
    return 0.5 * torch.stack(
        [m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1
    )


def _angle_coeffs(theta2: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """sin(t)/t, (1-cos t)/t^2, (t-sin t)/t^3 with Taylor branches so gradients stay finite at 0."""
    small = theta2 < _SMALL**2
    t2 = torch.where(small, torch.ones_like(theta2), theta2)
    t = torch.sqrt(t2)
    a = torch.where(small, 1 - theta2 / 6, torch.sin(t) / t)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(t)) / t2)
    c = torch.where(small, 1.0 / 6 - theta2 / 120, (t - torch.sin(t)) / (t2 * t))
    return a, b, c


def exp_so3(phi: Tensor) -> Tensor:
    """Axis-angle (..., 3) -> rotation matrix (..., 3, 3) (Rodrigues)."""
    a, b, _ = _angle_coeffs((phi * phi).sum(-1))
    k = hat(phi)
    eye = torch.eye(3, dtype=phi.dtype, device=phi.device).expand_as(k)
    return eye + a[..., None, None] * k + b[..., None, None] * (k @ k)


def matrix_to_quat(r: Tensor) -> Tensor:
    """Rotation matrix (..., 3, 3) -> unit quaternion (..., 4) in ROS order (x, y, z, w), w >= 0.

    Shepperd's method: the largest of the four candidate denominators is used, so it is stable
    for every rotation, including angles near pi.
    """
    m00, m11, m22 = r[..., 0, 0], r[..., 1, 1], r[..., 2, 2]
    cand = torch.stack(
        [
            torch.stack([1 + m00 - m11 - m22, r[..., 1, 0] + r[..., 0, 1],
                         r[..., 0, 2] + r[..., 2, 0], r[..., 2, 1] - r[..., 1, 2]], -1),
            torch.stack([r[..., 1, 0] + r[..., 0, 1], 1 - m00 + m11 - m22,
                         r[..., 2, 1] + r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0]], -1),
            torch.stack([r[..., 0, 2] + r[..., 2, 0], r[..., 2, 1] + r[..., 1, 2],
                         1 - m00 - m11 + m22, r[..., 1, 0] - r[..., 0, 1]], -1),
            torch.stack([r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0],
                         r[..., 1, 0] - r[..., 0, 1], 1 + m00 + m11 + m22], -1),
        ],
        dim=-2,
    )  # (..., 4 candidates, 4); candidate i has 4*q_i*q on its row
    diag = torch.stack([cand[..., 0, 0], cand[..., 1, 1], cand[..., 2, 2], cand[..., 3, 3]], -1)
    best = diag.argmax(-1, keepdim=True)
    q = torch.gather(cand, -2, best[..., None].expand(*best.shape, 4)).squeeze(-2)
    q = q / q.norm(dim=-1, keepdim=True)
    return torch.where(q[..., 3:4] < 0, -q, q)


def quat_to_matrix(q: Tensor) -> Tensor:
    """Quaternion (..., 4) in ROS order (x, y, z, w), normalised here -> rotation matrix."""
    q = q / q.norm(dim=-1, keepdim=True)
    x, y, z, w = q.unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
            2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
            2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(*q.shape[:-1], 3, 3)


def quat_to_axis_angle(q: Tensor) -> Tensor:
    """Quaternion (x, y, z, w) -> axis-angle with angle in [0, pi]."""
    q = q / q.norm(dim=-1, keepdim=True)
    q = torch.where(q[..., 3:4] < 0, -q, q)
    v, w = q[..., :3], q[..., 3]
    s2 = (v * v).sum(-1)
    small = s2 < 1e-16
    s = torch.sqrt(torch.where(small, torch.ones_like(s2), s2))
    # angle / sin(angle/2); 2 / w (first order) when the vector part vanishes
    scale = torch.where(small, 2.0 / w.clamp_min(1e-12), 2 * torch.atan2(s, w) / s)
    return v * scale[..., None]


def log_so3(r: Tensor) -> Tensor:
    """Rotation matrix -> axis-angle with angle in [0, pi] (via quaternion: stable near pi)."""
    return quat_to_axis_angle(matrix_to_quat(r))


def right_jacobian(phi: Tensor) -> Tensor:
    """Right Jacobian of SO(3): exp(phi + d) ~= exp(phi) @ exp(Jr(phi) @ d)."""
    _, b, c = _angle_coeffs((phi * phi).sum(-1))
    k = hat(phi)
    eye = torch.eye(3, dtype=phi.dtype, device=phi.device).expand_as(k)
    return eye - b[..., None, None] * k + c[..., None, None] * (k @ k)


def left_jacobian(phi: Tensor) -> Tensor:
    """Left Jacobian of SO(3): exp(phi + d) ~= exp(Jl(phi) @ d) @ exp(phi); Jl(phi) = Jr(-phi)."""
    return right_jacobian(-phi)


def wrap_angle(x: Tensor) -> Tensor:
    """Wrap angles to [-pi, pi)."""
    return torch.remainder(x + math.pi, 2 * math.pi) - math.pi


def wrap_axis_angle(phi: Tensor) -> Tensor:
    """Equivalent axis-angle vector with norm in [0, pi] (same rotation)."""
    return log_so3(exp_so3(phi))


def project_to_so3(m: Tensor) -> Tensor:
    """Nearest rotation matrix (Frobenius) of a near-orthonormal matrix, via SVD."""
    u, _, vh = torch.linalg.svd(m)
    d = torch.det(u @ vh)
    s = torch.ones_like(m[..., 0])
    s[..., 2] = d
    return u @ (s[..., None] * vh)
