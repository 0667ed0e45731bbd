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
import torch.nn.functional as F
from torch import Tensor

_SMALL = 1e-4  # below this angle (rad) the Taylor series are exact to float64 precision


_CONSTANTS: dict = {}


def _constant(name: str, like: Tensor) -> Tensor:
    """A small constant matrix below, made once per dtype and device (building it each call costs
    as much as the few ops it saves)."""
    key = (name, like.dtype, like.device)
    c = _CONSTANTS.get(key)
    if c is None:
        with torch.inference_mode(False):  # a normal tensor even if first made under inference_mode
            c = torch.tensor(_CONSTANT_VALUES[name], dtype=like.dtype, device=like.device)
        if type(c) is torch.Tensor:  # never cache a fake / meta-mode stand-in
            _CONSTANTS[key] = c
    return c


_CONSTANT_VALUES = {
    "eye": [[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]],
    # hat(v).flatten(-1, -2) = v @ basis: row i is hat(e_i) flattened.
    "hat": [[0, 0, 0, 0, 0, -1.0, 0, 1.0, 0],
            [0, 0, 1.0, 0, 0, 0, -1.0, 0, 0],
            [0, -1.0, 0, 1.0, 0, 0, 0, 0, 0]],
    # Shepperd's four candidate rows (see _shepperd_row) as one affine map of the flattened matrix:
    # cand.flatten(-2, -1) = r.flatten(-2, -1) @ shepperd.T + shepperd_1 (F.linear's weight layout,
    # transposed below). Row i of cand is 4 q_i q. Below, the four diagonal entries 4 q_i^2 are put in
    # front of the 16 (columns 0, 5, 10, 15 repeated).
    "shepperd": [
        # x row         y row          z row          w row
        [1, 0, 0, 0, 0, -1, 0, 0, 0, 0, -1, 0, 0, 0, 0, 1],  # m00
        [0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, -1, 0, 0, -1, 0],  # m01
        [0, 0, 1, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 0, 0],  # m02
        [0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0],  # m10
        [-1, 0, 0, 0, 0, 1, 0, 0, 0, 0, -1, 0, 0, 0, 0, 1],  # m11
        [0, 0, 0, -1, 0, 0, 1, 0, 0, 1, 0, 0, -1, 0, 0, 0],  # m12
        [0, 0, 1, 0, 0, 0, 0, -1, 1, 0, 0, 0, 0, -1, 0, 0],  # m20
        [0, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 0],  # m21
        [-1, 0, 0, 0, 0, -1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1],  # m22
    ],
    "shepperd_1": [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1],
}
_CONSTANT_VALUES["shepperd"] = [list(col) for col in zip(*_CONSTANT_VALUES["shepperd"])]  # (16, 9)
_CONSTANT_VALUES["shepperd"][:0] = [_CONSTANT_VALUES["shepperd"][i] for i in (0, 5, 10, 15)]  # (20, 9)
_CONSTANT_VALUES["shepperd_1"][:0] = [_CONSTANT_VALUES["shepperd_1"][i] for i in (0, 5, 10, 15)]
_CONSTANT_VALUES["shepperd_row"] = [4, 5, 6, 7]  # flat index of row i's entries: 4 i + these


def hat(v: Tensor) -> Tensor:
    """(..., 3) -> (..., 3, 3) skew-symmetric matrix with hat(a) @ b = a x b."""
    # One product with a constant 0/+-1 basis: exact for finite v (one op instead of a stack of six).
    return (v @ _constant("hat", v)).view(v.shape[:-1] + (3, 3))


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
    # R = I + a K + b K^2 with a = sin(t)/t and b = (1 - cos t)/t^2 = sinc(t/2)^2 / 2 (unnormalised sinc).
    # torch.sinc is exact at 0 with finite derivatives, and the norm's derivative at 0 is 0, so no
    # Taylor branch is needed (the derivatives at zero angle match the Taylor series'), and the
    # half-angle form of b has no cancellation at small angles. Twelve ops: a step of a few people
    # costs what its ops cost.
    theta = torch.linalg.vector_norm(phi, dim=-1, keepdim=True).unsqueeze(-1)
    h = torch.sinc(theta * (0.5 / math.pi))
    k = hat(phi)
    return torch.addcmul(torch.addcmul(_constant("eye", phi), torch.sinc(theta * (1 / math.pi)), k), h * h, k @ k,
                         value=0.5)


def _shepperd_row(r: Tensor) -> Tensor:
    """(..., 3, 3) -> (..., 4): Shepperd's best-conditioned candidate row, 4 |q_i| q (unnormalised).

    The candidates' diagonal is 4 q_i^2; the largest one is used, so it is stable for every
    rotation, including angles near pi.
    """
    # One affine map gives the diagonal (contiguous, in front) and the 16 candidates (..., 20), and the
    # best row is gathered from them flat: fewer ops than an argmax over the strided diagonal of a 4x4
    # view (which needs a copy first) and a gather of a row.
    cand = F.linear(r.flatten(-2), _constant("shepperd", r), _constant("shepperd_1", r))
    best = cand[..., :4].argmax(-1, keepdim=True)
    return torch.gather(cand, -1, torch.add(_constant("shepperd_row", best), best, alpha=4))


def matrix_to_quat(r: Tensor) -> Tensor:
    """Rotation matrix (..., 3, 3) -> unit quaternion (..., 4) in ROS order (x, y, z, w), w >= 0.

    Shepperd's method: the largest of the four candidate denominators is used, so it is stable
    for every rotation, including angles near pi.
    """
    q = _shepperd_row(r)
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
    """Rotation matrix -> axis-angle with angle in [0, pi] (via quaternion: stable near pi).

    quat_to_axis_angle(matrix_to_quat(r)) without normalising the quaternion q = (v, w) first: with
    half the angle h = atan2(|v|, w), phi = v h / sin(h) / |q| * 2 = 2 v / (|q| sinc(h / pi)), exact
    and smooth at zero angle (sinc(0) = 1) without a Taylor branch.
    """
    q = _shepperd_row(r)
    v, w = q.split([3, 1], -1)
    # q is used as (v, |w|) with the sign of w moved to the denominator: the numbers of flipping q to
    # w >= 0 with fewer ops (w is never -0.0: the candidates' w entries get a +0 or 1 bias added).
    half = torch.atan2(torch.linalg.vector_norm(v, dim=-1, keepdim=True), w.abs())
    scale = torch.linalg.vector_norm(q, dim=-1, keepdim=True) * torch.sinc(half * (1 / math.pi))
    return (v + v) / torch.copysign(scale, w)


def right_jacobian(phi: Tensor) -> Tensor:
    """Right Jacobian of SO(3): exp(phi + d) ~= exp(phi) @ exp(Jr(phi) @ d)."""
    _, b, c = _angle_coeffs((phi * phi).sum(-1))
    k = hat(phi)
    return _constant("eye", phi) - b[..., None, None] * k + c[..., None, None] * (k @ k)


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
