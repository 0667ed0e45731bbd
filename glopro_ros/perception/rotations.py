"""Small batched SO(3) helpers in numpy for the per-person fits (torch's overhead dominates there).

Same conventions as glopro_ros.core.so3 (right perturbations), which stays the torch reference.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation


# hat(v) flattened = v @ _HAT_BASIS: row i is hat(e_i) flattened (one product instead of six scatters)
_HAT_BASIS = np.array([[0, 0, 0, 0, 0, -1, 0, 1, 0], [0, 0, 1, 0, 0, 0, -1, 0, 0], [0, -1, 0, 1, 0, 0, 0, 0, 0]],
                     float)


def hat(v: np.ndarray) -> np.ndarray:
    """(..., 3) -> (..., 3, 3) cross-product matrices."""
    return (v @ _HAT_BASIS).reshape(*v.shape, 3)


def exp_rotvec(phi: np.ndarray) -> np.ndarray:
    """(..., 3) axis-angle -> (..., 3, 3) rotation (Rodrigues)."""
    t = np.linalg.norm(phi, axis=-1)[..., None, None]
    k = hat(phi)
    small = t < 1e-6
    ts = np.where(small, 1.0, t)
    a = np.where(small, 1.0 - t**2 / 6, np.sin(ts) / ts)
    b = np.where(small, 0.5 - t**2 / 24, (1 - np.cos(ts)) / ts**2)
    return np.eye(3) + a * k + b * (k @ k)


def log_rotvec(r: np.ndarray) -> np.ndarray:
    """(..., 3, 3) -> (..., 3) axis-angle (closed form; scipy only for angles near pi)."""
    flat = r.reshape(-1, 3, 3)
    cos = np.clip((np.trace(flat, axis1=1, axis2=2) - 1.0) / 2.0, -1.0, 1.0)
    theta = np.arccos(cos)
    v = 0.5 * (flat.reshape(-1, 9) @ _HAT_BASIS.T)  # vee of the antisymmetric part: sin(theta) * axis
    sin = np.sin(theta)
    out = v * np.where(theta < 1e-6, 1.0, theta / np.where(sin > 1e-12, sin, 1.0))[:, None]
    near_pi = theta > np.pi - 1e-3
    if near_pi.any():
        out[near_pi] = Rotation.from_matrix(flat[near_pi]).as_rotvec()
    return out.reshape(*r.shape[:-2], 3)


def inv_right_jacobian(phi: np.ndarray) -> np.ndarray:
    """Jr^-1(phi): d log(exp(phi) exp(d)) / d d at d = 0."""
    t = np.linalg.norm(phi, axis=-1)[..., None, None]
    k = hat(phi)
    small = t < 1e-4
    ts = np.where(small, 1.0, t)
    sin = np.maximum(np.sin(ts), 1e-9)
    c = np.where(small, 1.0 / 12, 1 / ts**2 - (1 + np.cos(ts)) / (2 * ts * sin))
    return np.eye(3) + 0.5 * k + c * (k @ k)


def ray_rotation(direction: np.ndarray) -> np.ndarray:
    """Rotations (..., 3, 3) turning the optical axis onto `direction` (..., 3) (BlazePose sees the
    crop head-on)."""
    d = direction / np.linalg.norm(direction, axis=-1, keepdims=True)
    axis = np.stack([-d[..., 1], d[..., 0], np.zeros_like(d[..., 0])], -1)  # z x d
    s = np.linalg.norm(axis, axis=-1, keepdims=True)
    on_axis = s < 1e-9
    return exp_rotvec(np.where(on_axis, 0.0, axis / np.where(on_axis, 1.0, s) * np.arctan2(s, d[..., 2:])))


def kabsch(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Rotations R (..., 3, 3) minimising |R src - dst| over centred point sets (..., N, 3)."""
    cov = np.swapaxes(dst - dst.mean(-2, keepdims=True), -1, -2) @ (src - src.mean(-2, keepdims=True))
    u, _, vt = np.linalg.svd(cov)
    u[..., 2] *= np.sign(np.linalg.det(u @ vt))[..., None]  # u @ diag(1, 1, d): no reflection
    return u @ vt
