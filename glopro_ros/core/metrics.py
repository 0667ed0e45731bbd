"""Pose, trajectory and consistency metrics as the field computes them (see DESIGN.md "Metrics").

Joints are (T, J, 3) arrays in metres (SMPL order, pelvis = joint 0, world Z up); errors come back in
metres (multiply by 1000 for the usual mm). NumPy only, so evaluation needs no torch.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import chi2

FOOT_JOINTS = (7, 8, 10, 11)  # SMPL ankles and feet
_L_HIP, _R_HIP = 1, 2


def umeyama(src: np.ndarray, dst: np.ndarray, with_scale: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Similarity (or rigid) fit dst ~ s * R @ src + t over the last-but-one axis; batched over leading axes.

    Returns s (...), R (..., 3, 3), t (..., 3). Umeyama (1991), written once here for every metric.
    """
    mu_s, mu_d = src.mean(-2), dst.mean(-2)
    xs, xd = src - mu_s[..., None, :], dst - mu_d[..., None, :]
    cov = np.swapaxes(xd, -1, -2) @ xs / src.shape[-2]
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(sig.shape)
    d[..., -1] = np.sign(np.linalg.det(u @ vt))
    rot = u @ (d[..., :, None] * vt)
    if with_scale:
        var_s = (xs**2).sum((-1, -2)) / src.shape[-2]
        s = (sig * d).sum(-1) / np.maximum(var_s, 1e-12)
    else:
        s = np.ones(sig.shape[:-1])
    t = mu_d - s[..., None] * (rot @ mu_s[..., None])[..., 0]
    return s, rot, t


def _apply(s: np.ndarray, rot: np.ndarray, t: np.ndarray, x: np.ndarray) -> np.ndarray:
    return s[..., None, None] * x @ np.swapaxes(rot, -1, -2) + t[..., None, :]


def _joint_error(pred: np.ndarray, gt: np.ndarray) -> float:
    return float(np.linalg.norm(pred - gt, axis=-1).mean())


def mpjpe(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean joint error after subtracting each frame's pelvis."""
    return _joint_error(pred - pred[:, :1], gt - gt[:, :1])


def pa_mpjpe(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean joint error after a per-frame similarity Procrustes alignment."""
    return _joint_error(_apply(*umeyama(pred, gt), pred), gt)


def _chunked_mpjpe(pred: np.ndarray, gt: np.ndarray, chunk: int, fit_frames: int | None) -> float:
    errs = []
    for start in range(0, pred.shape[0], chunk):
        p, g = pred[start : start + chunk], gt[start : start + chunk]
        n = p.shape[0] if fit_frames is None else min(fit_frames, p.shape[0])
        s, rot, t = umeyama(p[:n].reshape(-1, 3), g[:n].reshape(-1, 3))
        errs.append(np.linalg.norm(_apply(s, rot, t, p.reshape(-1, 3)) - g.reshape(-1, 3), axis=-1))
    return float(np.concatenate(errs).mean())


def w_mpjpe(pred: np.ndarray, gt: np.ndarray, chunk: int = 100) -> float:
    """W-MPJPE100: 100-frame chunks aligned by a similarity fitted on each chunk's first 2 frames."""
    return _chunked_mpjpe(pred, gt, chunk, 2)


def wa_mpjpe(pred: np.ndarray, gt: np.ndarray, chunk: int = 100) -> float:
    """WA-MPJPE100: 100-frame chunks aligned by a similarity fitted on the whole chunk."""
    return _chunked_mpjpe(pred, gt, chunk, None)


def heading_frame(joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation (3, 3) and origin (3,) of the heading frame (yaw only, at the pelvis) of one pose (J, 3)."""
    across = joints[_L_HIP] - joints[_R_HIP]
    forward = np.cross(across, [0.0, 0.0, 1.0])
    yaw = np.arctan2(forward[1], forward[0])
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]), joints[0]


def g_mpjpe(pred: np.ndarray, gt: np.ndarray, segment: int = 100) -> float:
    """G-MPJPE: world joints re-expressed in the heading frame of each segment's first frame (own for each)."""
    errs = []
    for start in range(0, pred.shape[0], segment):
        p, g = pred[start : start + segment], gt[start : start + segment]
        rp, op = heading_frame(p[0])
        rg, og = heading_frame(g[0])
        errs.append(np.linalg.norm((p - op) @ rp - (g - og) @ rg, axis=-1))
    return float(np.concatenate(errs, 0).mean())


def rte(pred_root: np.ndarray, gt_root: np.ndarray) -> float:
    """Root translation error in % of the ground-truth path length, after a rigid fit of the trajectory."""
    s, rot, t = umeyama(pred_root, gt_root, with_scale=False)
    err = np.linalg.norm(_apply(s, rot, t, pred_root) - gt_root, axis=-1).mean()
    length = np.linalg.norm(np.diff(gt_root, axis=0), axis=-1).sum()
    return float(100.0 * err / max(length, 1e-9))


def accel_error(pred: np.ndarray, gt: np.ndarray, fps: float) -> float:
    """Mean over joints of |second difference of pred - that of gt| * fps^2, in m/s^2."""
    d2 = np.diff(pred, 2, axis=0) - np.diff(gt, 2, axis=0)
    return float(np.linalg.norm(d2, axis=-1).mean() * fps**2)


def jitter(pred: np.ndarray, fps: float) -> float:
    """Mean norm of the prediction's third difference * fps^3, in m/s^3."""
    return float(np.linalg.norm(np.diff(pred, 3, axis=0), axis=-1).mean() * fps**3)


def foot_sliding(pred: np.ndarray, gt: np.ndarray, feet: Sequence[int] = FOOT_JOINTS, still: float = 0.01) -> float:
    """Mean predicted foot displacement (m/frame) on frames where the true foot moves under `still` m/frame."""
    idx = list(feet)
    move_gt = np.linalg.norm(np.diff(gt[:, idx], axis=0), axis=-1)
    move_pred = np.linalg.norm(np.diff(pred[:, idx], axis=0), axis=-1)
    mask = move_gt < still
    return float(move_pred[mask].mean()) if mask.any() else float("nan")


def nees(err: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """Normalised estimation error squared e^T P^-1 e, batched: err (..., d), cov (..., d, d)."""
    return np.einsum("...i,...i->...", err, np.linalg.solve(cov, err[..., None])[..., 0])


def gaussian_nll(err: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """Negative log-likelihood of the error under N(0, cov), batched (nats)."""
    d = err.shape[-1]
    return 0.5 * (nees(err, cov) + np.linalg.slogdet(cov)[1] + d * np.log(2 * np.pi))


def consistency(err: np.ndarray, cov: np.ndarray, level: float = 0.95) -> dict[str, float]:
    """ANEES/dim (about 1 when calibrated), share of frames inside the two-sided chi-square bounds, mean NLL."""
    d = err.shape[-1]
    e = nees(err, cov)
    lo, hi = chi2.ppf([(1 - level) / 2, (1 + level) / 2], d)
    return {
        "anees_per_dim": float(e.mean() / d),
        "in_bounds": float(((e >= lo) & (e <= hi)).mean()),
        "nll": float(gaussian_nll(err, cov).mean()),
    }


def id_switches(assigned: np.ndarray) -> int:
    """ID switches: (T, P) track id given to each true person per frame (-1: none); counts id changes."""
    switches = 0
    for col in np.asarray(assigned).T:
        ids = col[col >= 0]
        switches += int(np.count_nonzero(ids[1:] != ids[:-1]))
    return switches
