"""GloPro fusion: motion prior (predict) + Kalman update with the image measurement + learned residual.

The state of B people is kept block-diagonal (betas 10x10, per-joint 3x3, root 6x6 over
[d_position, d_theta]) in batched float64 torch, which is what makes a step cost well under a
millisecond per person; `to_gaussian_state` gives the package's full-covariance GaussianBodyState.
Rotations use RIGHT perturbations R = R_hat exp(delta); innovations are log(R_hat^T R_meas), so the
measurement Jacobian is the identity to first order and every block update is the product of two
Gaussians. When a person is not observed only `predict` runs and the covariance grows.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import torch
from torch import Tensor, nn

from glopro_ros.core.gaussian_state import GaussianBodyState
from glopro_ros.core.motion_model import STEP_DIM, WEIGHTS_DIR, apply_step, load_motion_model
from glopro_ros.core.so3 import exp_so3, hat, log_so3

DEFAULT_FUSION_WEIGHTS = WEIGHTS_DIR / "fusion_residual.pt"
BETAS_PROCESS_VAR = 1e-6  # betas drift allowance per step
# Floor on the motion model's step variance: mocap has joints that never move (SMPL leaves), whose
# fitted variance is ~0, which would freeze them at their first (noisy) measurement.
MIN_STEP_VAR = 1e-3**2
_F64 = torch.float64


def _batched(cls):
    """Adds select / cat / replace_rows / len over the leading person axis of every tensor field."""

    def select(self, idx) -> "cls":
        return cls(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def cat(items: list) -> "cls":
        return cls(**{f.name: torch.cat([getattr(x, f.name) for x in items]) for f in fields(cls)})

    def replace_rows(self, idx, other) -> "cls":
        out = {}
        for f in fields(self):
            x = getattr(self, f.name).clone()
            x[idx] = getattr(other, f.name)
            out[f.name] = x
        return cls(**out)

    cls.select, cls.cat, cls.replace_rows = select, staticmethod(cat), replace_rows
    cls.__len__ = lambda self: getattr(self, fields(self)[0].name).shape[0]
    return cls


@_batched
@dataclass
class Measurement:
    """Image-model Gaussians of B people (frame given by context: camera or world), float64."""

    root_pos: Tensor  # (B, 3)
    root_pos_cov: Tensor  # (B, 3, 3)
    root_rot: Tensor  # (B, 3, 3)
    root_rot_cov: Tensor  # (B, 3, 3) right perturbation
    pose: Tensor  # (B, 23, 3, 3) local joint rotations
    pose_cov: Tensor  # (B, 23, 3, 3)
    betas: Tensor  # (B, 10)
    betas_cov: Tensor  # (B, 10, 10)


@_batched
@dataclass
class FilterState:
    """Posterior of B tracked people (world frame) and the history of means the motion model reads."""

    root_pos: Tensor  # (B, 3)
    root_rot: Tensor  # (B, 3, 3)
    root_cov: Tensor  # (B, 6, 6) over [d_position, d_theta]
    pose: Tensor  # (B, 23, 3, 3)
    pose_cov: Tensor  # (B, 23, 3, 3)
    betas: Tensor  # (B, 10)
    betas_cov: Tensor  # (B, 10, 10)
    hist_pos: Tensor  # (B, K, 3), oldest first, last = current mean
    hist_rot: Tensor  # (B, K, 3, 3)
    hist_pose: Tensor  # (B, K, 23, 3, 3)
    since_update: Tensor  # (B,) motion steps since the last fused measurement


def valid_measurements(m: Measurement) -> Tensor:
    """(B,) bool: every value finite and every covariance symmetric positive definite."""
    ok = torch.ones(len(m), dtype=torch.bool)
    for f in fields(m):
        x = getattr(m, f.name)
        ok &= torch.isfinite(x).flatten(1).all(1)
    for cov in (m.root_pos_cov, m.root_rot_cov, m.pose_cov, m.betas_cov):
        c = torch.nan_to_num(cov)
        sym = (c - c.transpose(-1, -2)).abs().amax((-1, -2)) <= 1e-9 * (1 + c.abs().amax((-1, -2)))
        good = sym & (torch.linalg.cholesky_ex(c)[1] == 0)
        ok &= good if good.ndim == 1 else good.all(-1)
    return ok


def camera_to_world(m: Measurement, world_t_cam: Tensor, slam_cov: Tensor | None = None) -> Measurement:
    """Move camera-frame measurements to the world with the SLAM pose (B or 1, 4, 4).

    slam_cov (6, 6) over [position, rotation (left, world)] of the camera pose is added to first order.
    """
    r, t = world_t_cam[..., :3, :3].to(_F64), world_t_cam[..., :3, 3].to(_F64)
    pos = torch.einsum("bij,bj->bi", r.expand(len(m), 3, 3), m.root_pos) + t
    pos_cov = r @ m.root_pos_cov @ r.transpose(-1, -2)
    rot = r @ m.root_rot
    rot_cov = m.root_rot_cov
    if slam_cov is not None:
        lever = hat(pos - t)  # point moves by -[v]x w for a camera rotation w
        pos_cov = pos_cov + slam_cov[:3, :3] + lever @ slam_cov[3:, 3:] @ lever.transpose(-1, -2)
        rot_cov = rot_cov + rot.transpose(-1, -2) @ slam_cov[3:, 3:] @ rot
    return Measurement(pos, pos_cov, rot, rot_cov, m.pose, m.pose_cov, m.betas, m.betas_cov)


def init_state(m: Measurement, history: int) -> FilterState:
    """A new track from its first (world-frame) measurement; the history repeats it (person at rest)."""
    b = len(m)
    root_cov = torch.zeros(b, 6, 6, dtype=_F64)
    root_cov[:, :3, :3], root_cov[:, 3:, 3:] = m.root_pos_cov, m.root_rot_cov
    return FilterState(
        m.root_pos.clone(), m.root_rot.clone(), root_cov, m.pose.clone(), m.pose_cov.clone(),
        m.betas.clone(), m.betas_cov.clone(),
        m.root_pos[:, None].repeat(1, history, 1), m.root_rot[:, None].repeat(1, history, 1, 1),
        m.pose[:, None].repeat(1, history, 1, 1, 1), torch.zeros(b, dtype=_F64))


def gaussian_product_update(mean_err: Tensor, prior_cov: Tensor, meas_cov: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Kalman update with H = I on the error (..., d): returns the increment, posterior cov and S."""
    s = prior_cov + meas_cov
    gain = torch.linalg.solve(s, prior_cov).transpose(-1, -2)  # P S^-1 (S, P symmetric)
    inc = (gain @ mean_err[..., None])[..., 0]
    post = prior_cov - gain @ prior_cov
    return inc, 0.5 * (post + post.transpose(-1, -2)), s


class FusionResidual(nn.Module):
    """Learned correction of the posterior mean from innovation, Kalman increment and both variances.

    Inputs and the 75-d output are body-centric (in the prior's root frame), like the motion step;
    the last layer starts at zero, so an untrained residual is the identity. out_scale sets each
    output's scale; the trained one corrects the root only (its body-pose outputs are scaled to 0,
    see tools/train_residual.py).
    """

    def __init__(self, width: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4 * STEP_DIM, width), nn.GELU(), nn.Linear(width, width), nn.GELU(),
                                 nn.Linear(width, STEP_DIM))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self.register_buffer("out_scale", torch.ones(STEP_DIM))

    def forward(self, features: Tensor) -> Tensor:
        return self.net(features) * self.out_scale


@dataclass
class UpdateInfo:
    """Per-person diagnostics of an update: normalised innovation of the root (6 dof) and whether it was fused."""

    nis: Tensor  # (B,)
    fused: Tensor  # (B,) bool
    features: Tensor | None = None  # (B, 300) residual inputs, when asked for


class GloProFilter:
    """Predict with a motion model (learned or constant velocity), update with image measurements.

    variance_scale multiplies the motion model's variances per block (root_pos, root_rot, pose) on
    the step right after a fused measurement, coast_variance_scale on later steps without one: both
    calibrated on simulated training sequences. The first compensates for the motion model reading
    the filter's own noisy estimates (it was trained on clean mocap); while a person is coasting the
    history holds smooth predictions, and the same inflation would make the uncertainty grow far
    faster than the error does. gate_nis rejects an update whose 6-dof root innovation is beyond it
    (outliers), leaving the prediction.
    """

    def __init__(self, motion_model: nn.Module, residual: FusionResidual | None = None,
                 variance_scale: dict[str, float] | None = None, gate_nis: float = 22.46,
                 coast_variance_scale: dict[str, float] | None = None) -> None:
        self.motion_model = motion_model.eval()
        self.history = motion_model.history
        self.residual = residual.eval() if residual is not None else None
        self.var_scale = self._block_scales(variance_scale)
        self.coast_var_scale = self._block_scales(coast_variance_scale or variance_scale)
        self.gate_nis = gate_nis

    @staticmethod
    def _block_scales(scales: dict[str, float] | None) -> Tensor:
        """(75,) per-dimension factors from per-block ones (missing blocks: 1)."""
        vs = {"root_pos": 1.0, "root_rot": 1.0, "pose": 1.0} | (scales or {})
        return torch.tensor([vs["root_pos"]] * 3 + [vs["root_rot"]] * 3 + [vs["pose"]] * 69, dtype=_F64)

    @torch.no_grad()
    def motion_prior(self, s: FilterState) -> tuple[Tensor, Tensor]:
        """Mean (B, 75) and variance (B, 75) of the next body-centric step."""
        k, f32 = self.history, torch.float32  # the models run in float32
        mean, var = self.motion_model(s.hist_pos[:, -k:].to(f32), s.hist_rot[:, -k:].to(f32),
                                      s.hist_pose[:, -k:].to(f32))
        scale = torch.where(s.since_update[:, None] == 0, self.var_scale, self.coast_var_scale)
        return mean.to(_F64), var.to(_F64).clamp_min(MIN_STEP_VAR) * scale

    @torch.no_grad()
    def predict(self, s: FilterState, steps: float = 1.0) -> FilterState:
        """One motion-model step: mean moved by the predicted step, covariance F P F^T + Q (grows).

        steps > 1 stretches the one step over that many step periods: the root keeps its velocity
        (root step times steps), the body pose takes one step (joint rates extrapolated over a long
        gap would twist limbs) and every variance grows as a random walk (times steps). It is the
        tracker's bounded-cost stand-in for long gaps, less exact than stepping.
        """
        if len(s) == 0:
            return s
        step, var = self.motion_prior(s)
        if steps != 1.0:
            step = torch.cat([step[:, :6] * steps, step[:, 6:]], -1)
            var = var * steps
        pos, rot, pose = apply_step(s.root_pos, s.root_rot, s.pose, step)
        # Root: p' = p + R dp, R' = R exp(dth); error Jacobian F over [d_position, d_theta].
        b = len(s)
        f = torch.eye(6, dtype=_F64).repeat(b, 1, 1)
        f[:, :3, 3:] = -s.root_rot @ hat(step[:, :3])
        f[:, 3:, 3:] = exp_so3(step[:, 3:6]).transpose(-1, -2)
        q = torch.zeros(b, 6, 6, dtype=_F64)
        q[:, :3, :3] = s.root_rot @ torch.diag_embed(var[:, :3]) @ s.root_rot.transpose(-1, -2)
        q[:, 3:, 3:] = torch.diag_embed(var[:, 3:6])
        root_cov = f @ s.root_cov @ f.transpose(-1, -2) + q
        a = exp_so3(step[:, 6:].reshape(b, 23, 3)).transpose(-1, -2)
        pose_cov = a @ s.pose_cov @ a.transpose(-1, -2) + torch.diag_embed(var[:, 6:].reshape(b, 23, 3))
        betas_cov = s.betas_cov + BETAS_PROCESS_VAR * torch.eye(10, dtype=_F64)
        return self._with_mean(FilterState(pos, rot, root_cov, pose, pose_cov, s.betas, betas_cov,
                                           s.hist_pos, s.hist_rot, s.hist_pose, s.since_update + steps), push=True)

    @torch.no_grad()
    def update(self, s: FilterState, m: Measurement, with_features: bool = False) -> tuple[FilterState, UpdateInfo]:
        """Kalman update of predicted states with world-frame measurements (same order, same B).

        with_features: also return the residual's input features (for training it).
        """
        b = len(s)
        root_err = torch.cat([m.root_pos - s.root_pos, log_so3(s.root_rot.transpose(-1, -2) @ m.root_rot)], -1)
        r_root = torch.zeros(b, 6, 6, dtype=_F64)
        r_root[:, :3, :3], r_root[:, 3:, 3:] = m.root_pos_cov, m.root_rot_cov
        inc_root, root_cov, s_root = gaussian_product_update(root_err, s.root_cov, r_root)
        nis = (root_err[..., None, :] @ torch.linalg.solve(s_root, root_err[..., None]))[..., 0, 0]
        fused = nis <= self.gate_nis
        pose_err = log_so3(s.pose.transpose(-1, -2) @ m.pose)
        inc_pose, pose_cov, _ = gaussian_product_update(pose_err, s.pose_cov, m.pose_cov)
        inc_betas, betas_cov, _ = gaussian_product_update(m.betas - s.betas, s.betas_cov, m.betas_cov)

        # Tangent increment as a body-centric 75-d step (position in the prior's root frame).
        inc = torch.cat([torch.einsum("bji,bj->bi", s.root_rot, inc_root[:, :3]), inc_root[:, 3:],
                         inc_pose.flatten(1)], -1)
        feats = None
        if self.residual is not None or with_features:
            feats = self.residual_features(s, m, root_err, pose_err, inc)
        if self.residual is not None:
            inc = inc + self.residual(feats).to(_F64)
        # Gated-out people keep their prediction: zero increment, prior covariances.
        inc, inc_betas = inc * fused[:, None], inc_betas * fused[:, None]
        pos, rot, pose = apply_step(s.root_pos, s.root_rot, s.pose, inc)
        f3 = fused[:, None, None]
        post = FilterState(pos, rot, torch.where(f3, root_cov, s.root_cov), pose,
                           torch.where(f3[..., None], pose_cov, s.pose_cov), s.betas + inc_betas,
                           torch.where(f3, betas_cov, s.betas_cov), s.hist_pos, s.hist_rot, s.hist_pose,
                           torch.where(fused, 0.0, s.since_update))
        return self._with_mean(post, push=False), UpdateInfo(nis, fused, feats)

    @staticmethod
    def residual_features(s: FilterState, m: Measurement, root_err: Tensor, pose_err: Tensor, inc: Tensor) -> Tensor:
        """(B, 300): innovation and increment (body-centric) and log prior / measurement variances."""
        rt = s.root_rot.transpose(-1, -2)
        innov = torch.cat([torch.einsum("bij,bj->bi", rt, root_err[:, :3]), root_err[:, 3:], pose_err.flatten(1)], -1)
        prior_var = torch.cat([torch.diagonal(rt @ s.root_cov[:, :3, :3] @ s.root_rot, dim1=-2, dim2=-1),
                               torch.diagonal(s.root_cov[:, 3:, 3:], dim1=-2, dim2=-1),
                               torch.diagonal(s.pose_cov, dim1=-2, dim2=-1).flatten(1)], -1)
        meas_var = torch.cat([torch.diagonal(rt @ m.root_pos_cov @ s.root_rot, dim1=-2, dim2=-1),
                              torch.diagonal(m.root_rot_cov, dim1=-2, dim2=-1),
                              torch.diagonal(m.pose_cov, dim1=-2, dim2=-1).flatten(1)], -1)
        return torch.cat([innov, inc, prior_var.clamp_min(1e-12).log(), meas_var.clamp_min(1e-12).log()], -1).float()

    @staticmethod
    def _with_mean(s: FilterState, push: bool) -> FilterState:
        """Write the current mean into the history: append (after a prediction) or overwrite the last."""
        if push:
            hp, hr, ha = (torch.cat([h[:, 1:], x[:, None]], 1) for h, x in
                          ((s.hist_pos, s.root_pos), (s.hist_rot, s.root_rot), (s.hist_pose, s.pose)))
        else:
            hp, hr, ha = s.hist_pos.clone(), s.hist_rot.clone(), s.hist_pose.clone()
            hp[:, -1], hr[:, -1], ha[:, -1] = s.root_pos, s.root_rot, s.pose
        return FilterState(s.root_pos, s.root_rot, s.root_cov, s.pose, s.pose_cov, s.betas, s.betas_cov, hp, hr, ha,
                           s.since_update)


def to_gaussian_state(s: FilterState, frame_id: str = "map") -> GaussianBodyState:
    """The package's GaussianBodyState (full 85x85 covariance, block-diagonal here)."""
    return GaussianBodyState.from_blocks(s.betas, s.betas_cov, log_so3(s.pose), s.pose_cov, s.root_rot,
                                         s.root_pos, s.root_cov, frame_id)


FILTER_VARIANTS = ("glopro", "glopro_nores", "cv")


def load_filter(variant: str = "glopro", motion_path: str | Path | None = None,
                fusion_path: str | Path | None = None) -> GloProFilter:
    """A filter from the committed weights: GloPro (learned prior + residual), without residual, or CV.

    The fusion checkpoint holds the residual and each variant's calibrated motion-variance scales
    (after an update and while coasting).
    """
    if variant not in FILTER_VARIANTS:
        raise ValueError(f"unknown filter variant {variant!r}; one of {FILTER_VARIANTS}")
    motion = load_motion_model(motion_path, "cv" if variant == "cv" else "learned")
    ckpt = torch.load(Path(fusion_path) if fusion_path else DEFAULT_FUSION_WEIGHTS, map_location="cpu",
                      weights_only=True)
    residual = None
    if variant == "glopro":
        residual = FusionResidual(ckpt["width"])
        residual.load_state_dict(ckpt["residual"])
    return GloProFilter(motion, residual, ckpt["variance_scale"][variant],
                        coast_variance_scale=ckpt.get("coast_variance_scale", {}).get(variant))
