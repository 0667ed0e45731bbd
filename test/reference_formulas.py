"""Straightforward reference formulas for the optimised SO(3) maths, motion model and filter step.

These are the formulas as first written (one op at a time, stack-built matrices, separate calls per
block): the optimised code in glopro_ros.core must give the same numbers up to float rounding.
"""
from __future__ import annotations

import torch

from glopro_ros.core import so3
from glopro_ros.core.fusion import BETAS_PROCESS_VAR, FilterState, GloProFilter, Measurement
from glopro_ros.core.motion_model import STEP_DIM

F64 = torch.float64
SMALL = 1e-4


def hat(v):
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([o, -z, y, z, o, -x, -y, x, o], dim=-1).reshape(*v.shape[:-1], 3, 3)


def angle_coeffs(theta2):
    small = theta2 < SMALL**2
    t2 = torch.where(small, torch.ones_like(theta2), theta2)
    t = torch.sqrt(t2)
    a = torch.where(small, 1 - theta2 / 6, torch.sin(t) / t)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(t)) / t2)
    return a, b


def exp_so3(phi):
    """Rodrigues: I + a K + b K^2."""
    a, b = angle_coeffs((phi * phi).sum(-1))
    k = hat(phi)
    eye = torch.eye(3, dtype=phi.dtype, device=phi.device).expand_as(k)
    return eye + a[..., None, None] * k + b[..., None, None] * (k @ k)


def matrix_to_quat(r):
    """Shepperd's method, candidates stacked one entry at a time; (x, y, z, w), w >= 0."""
    m00, m11, m22 = r[..., 0, 0], r[..., 1, 1], r[..., 2, 2]
    cand = torch.stack([
        torch.stack([1 + m00 - m11 - m22, r[..., 1, 0] + r[..., 0, 1], r[..., 0, 2] + r[..., 2, 0],
                     r[..., 2, 1] - r[..., 1, 2]], -1),
        torch.stack([r[..., 1, 0] + r[..., 0, 1], 1 - m00 + m11 - m22, r[..., 2, 1] + r[..., 1, 2],
                     r[..., 0, 2] - r[..., 2, 0]], -1),
        torch.stack([r[..., 0, 2] + r[..., 2, 0], r[..., 2, 1] + r[..., 1, 2], 1 - m00 - m11 + m22,
                     r[..., 1, 0] - r[..., 0, 1]], -1),
        torch.stack([r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0], r[..., 1, 0] - r[..., 0, 1],
                     1 + m00 + m11 + m22], -1),
    ], dim=-2)
    diag = torch.stack([cand[..., 0, 0], cand[..., 1, 1], cand[..., 2, 2], cand[..., 3, 3]], -1)
    best = diag.argmax(-1, keepdim=True)
    q = torch.gather(cand, -2, best[..., None].expand(*best.shape, 4)).squeeze(-2)
    q = q / q.norm(dim=-1, keepdim=True)
    return torch.where(q[..., 3:4] < 0, -q, q)


def log_so3(r):
    """Through the normalised quaternion (so3.quat_to_axis_angle is unchanged)."""
    return so3.quat_to_axis_angle(matrix_to_quat(r))


def rot6(r):
    return r[..., :, :2].transpose(-1, -2).flatten(-2)


def body_centric_features(root_pos, root_rot, pose):
    rk, pk = root_rot[:, -1], root_pos[:, -1]
    rel_pos = torch.einsum("bji,bkj->bki", rk, root_pos - pk[:, None])
    rel_rot = rot6(rk[:, None].transpose(-1, -2) @ root_rot)
    gravity = (rk.transpose(-1, -2) @ torch.tensor([0.0, 0.0, 1.0]).to(rk))[:, None].expand(-1, root_pos.shape[1], -1)
    return torch.cat([rel_pos, rel_rot, rot6(pose).flatten(2), gravity], -1)


def tcn_forward(model, root_pos, root_rot, pose):
    """TemporalConvMotionModel.forward, layer by layer."""
    x = (body_centric_features(root_pos, root_rot, pose) - model.feat_mean) / model.feat_std
    out = model.net(x.transpose(1, 2))
    mean = out[:, :STEP_DIM] * model.step_std
    log_var = out[:, STEP_DIM:].clamp(-12.0, 4.0) + 2 * model.step_std.log()
    return mean, log_var.exp()


def cv_forward(model, root_pos, root_rot, pose):
    """ConstantVelocityModel.forward, a log for the root and another for the joints."""
    k = root_pos.shape[1]
    rk = root_rot[:, -1]
    dp = torch.einsum("bji,bj->bi", rk, root_pos[:, -1] - root_pos[:, 0]) / (k - 1)
    dth = log_so3(root_rot[:, :-1].transpose(-1, -2) @ root_rot[:, 1:]).mean(1)
    dpose = log_so3(pose[:, :-1].transpose(-1, -2) @ pose[:, 1:]).mean(1).flatten(1)
    step = torch.cat([dp, dth, dpose], -1)
    return step, model.variance.expand_as(step)


def apply_step(root_pos, root_rot, pose, step):
    new_pos = root_pos + torch.einsum("bij,bj->bi", root_rot, step[:, :3])
    new_rot = root_rot @ exp_so3(step[:, 3:6])
    new_pose = pose @ exp_so3(step[:, 6:].reshape(-1, 23, 3))
    return new_pos, new_rot, new_pose


def gaussian_product_update(mean_err, prior_cov, meas_cov):
    s = prior_cov + meas_cov
    gain = torch.linalg.solve(s, prior_cov).transpose(-1, -2)
    inc = (gain @ mean_err[..., None])[..., 0]
    post = prior_cov - gain @ prior_cov
    return inc, 0.5 * (post + post.transpose(-1, -2)), s


def with_mean(s: FilterState, push: bool) -> FilterState:
    if push:
        hp, hr, ha = (torch.cat([h[:, 1:], x[:, None]], 1) for h, x in
                      ((s.hist_pos, s.root_pos), (s.hist_rot, s.root_rot), (s.hist_pose, s.pose)))
    else:
        hp, hr, ha = s.hist_pos.clone(), s.hist_rot.clone(), s.hist_pose.clone()
        hp[:, -1], hr[:, -1], ha[:, -1] = s.root_pos, s.root_rot, s.pose
    return FilterState(s.root_pos, s.root_rot, s.root_cov, s.pose, s.pose_cov, s.betas, s.betas_cov, hp, hr, ha,
                       s.since_update)


@torch.no_grad()
def predict(filt: GloProFilter, s: FilterState, steps: float = 1.0) -> FilterState:
    """GloProFilter.predict: F P F^T + Q with F and Q set block by block (the prior from filt.motion_prior)."""
    step, var = filt.motion_prior(s)
    if steps != 1.0:
        step = torch.cat([step[:, :6] * steps, step[:, 6:]], -1)
        var = var * steps
    pos, rot, pose = apply_step(s.root_pos, s.root_rot, s.pose, step)
    b = len(s)
    f = torch.eye(6, dtype=F64).repeat(b, 1, 1)
    f[:, :3, 3:] = -s.root_rot @ hat(step[:, :3])
    f[:, 3:, 3:] = exp_so3(step[:, 3:6]).transpose(-1, -2)
    q = torch.zeros(b, 6, 6, dtype=F64)
    q[:, :3, :3] = s.root_rot @ torch.diag_embed(var[:, :3]) @ s.root_rot.transpose(-1, -2)
    q[:, 3:, 3:] = torch.diag_embed(var[:, 3:6])
    root_cov = f @ s.root_cov @ f.transpose(-1, -2) + q
    a = exp_so3(step[:, 6:].reshape(b, 23, 3)).transpose(-1, -2)
    pose_cov = a @ s.pose_cov @ a.transpose(-1, -2) + torch.diag_embed(var[:, 6:].reshape(b, 23, 3))
    betas_cov = s.betas_cov + BETAS_PROCESS_VAR * torch.eye(10, dtype=F64)
    return with_mean(FilterState(pos, rot, root_cov, pose, pose_cov, s.betas, betas_cov,
                                 s.hist_pos, s.hist_rot, s.hist_pose, s.since_update + steps), push=True)


def residual_features(s: FilterState, m: Measurement, root_err, pose_err, inc):
    rt = s.root_rot.transpose(-1, -2)
    innov = torch.cat([torch.einsum("bij,bj->bi", rt, root_err[:, :3]), root_err[:, 3:], pose_err.flatten(1)], -1)
    prior_var = torch.cat([torch.diagonal(rt @ s.root_cov[:, :3, :3] @ s.root_rot, dim1=-2, dim2=-1),
                           torch.diagonal(s.root_cov[:, 3:, 3:], dim1=-2, dim2=-1),
                           torch.diagonal(s.pose_cov, dim1=-2, dim2=-1).flatten(1)], -1)
    meas_var = torch.cat([torch.diagonal(rt @ m.root_pos_cov @ s.root_rot, dim1=-2, dim2=-1),
                          torch.diagonal(m.root_rot_cov, dim1=-2, dim2=-1),
                          torch.diagonal(m.pose_cov, dim1=-2, dim2=-1).flatten(1)], -1)
    return torch.cat([innov, inc, prior_var.clamp_min(1e-12).log(), meas_var.clamp_min(1e-12).log()], -1).float()


@torch.no_grad()
def update(filt: GloProFilter, s: FilterState, m: Measurement):
    """GloProFilter.update: one product of Gaussians per block, one log per block, gating by torch.where."""
    b = len(s)
    root_err = torch.cat([m.root_pos - s.root_pos, log_so3(s.root_rot.transpose(-1, -2) @ m.root_rot)], -1)
    r_root = torch.zeros(b, 6, 6, dtype=F64)
    r_root[:, :3, :3], r_root[:, 3:, 3:] = m.root_pos_cov, m.root_rot_cov
    s_root = s.root_cov + r_root
    e_pos, e_rot = root_err[:, :3, None], root_err[:, 3:, None]
    nis = (e_pos.transpose(-1, -2) @ torch.linalg.solve(s_root[:, :3, :3], e_pos))[..., 0, 0]
    nis_rot = (e_rot.transpose(-1, -2) @ torch.linalg.solve(s_root[:, 3:, 3:], e_rot))[..., 0, 0]
    # Rotation block of the prior scaled by lambda = NIS_rot / 3 beyond ADAPT_NIS: D P D, D = diag(1, sqrt(lambda)).
    d = torch.ones(b, 6, dtype=F64)
    d[:, 3:] = torch.where(nis_rot > filt.adapt_nis, nis_rot / 3, 1.0).sqrt()[:, None]
    inc_root, root_cov, _ = gaussian_product_update(root_err, torch.diag_embed(d) @ s.root_cov @ torch.diag_embed(d),
                                                    r_root)
    fused = nis <= filt.gate_nis
    pose_err = log_so3(s.pose.transpose(-1, -2) @ m.pose)
    inc_pose, pose_cov, _ = gaussian_product_update(pose_err, s.pose_cov, m.pose_cov)
    inc_betas, betas_cov, _ = gaussian_product_update(m.betas - s.betas, s.betas_cov, m.betas_cov)
    inc = torch.cat([torch.einsum("bji,bj->bi", s.root_rot, inc_root[:, :3]), inc_root[:, 3:],
                     inc_pose.flatten(1)], -1)
    feats = residual_features(s, m, root_err, pose_err, inc)
    if filt.residual is not None:
        inc = inc + filt.residual(feats).to(F64)
    inc, inc_betas = inc * fused[:, None], inc_betas * fused[:, None]
    pos, rot, pose = apply_step(s.root_pos, s.root_rot, s.pose, inc)
    f3 = fused[:, None, None]
    post = FilterState(pos, rot, torch.where(f3, root_cov, s.root_cov), pose,
                       torch.where(f3[..., None], pose_cov, s.pose_cov), s.betas + inc_betas,
                       torch.where(f3, betas_cov, s.betas_cov), s.hist_pos, s.hist_rot, s.hist_pose,
                       torch.where(fused, 0.0, s.since_update))
    return with_mean(post, push=False), nis, fused, feats
