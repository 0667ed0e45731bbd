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
import torch.nn.functional as F
from torch import Tensor, nn

from glopro_ros.core.gaussian_state import GaussianBodyState
from glopro_ros.core.motion_model import (
    STEP_DIM, WEIGHTS_DIR, TemporalConvMotionModel, load_motion_model,
)
from glopro_ros.core.so3 import exp_so3, hat, log_so3

DEFAULT_FUSION_WEIGHTS = WEIGHTS_DIR / "fusion_residual.pt"
BETAS_PROCESS_VAR = 1e-6  # betas drift allowance per step
# Floor on the motion model's step variance: mocap has joints that never move (SMPL leaves), whose
# fitted variance is ~0, which would freeze them at their first (noisy) measurement.
MIN_STEP_VAR = 1e-3**2
ADAPT_NIS = 11.34  # chi-square(3) 99 %: GloProFilter's default adapt_nis
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

    first = fields(cls)[0].name  # (looked up once: fields() per call cost more than the rest of a len)
    cls.select, cls.cat, cls.replace_rows = select, staticmethod(cat), replace_rows
    cls.__len__ = lambda self: getattr(self, first).shape[0]
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
    # Batched for speed (about half the ops of a check per field): one finiteness test of every value,
    # one check of the 25 3x3 covariances (root position, root rotation, joints), one of the betas'.
    finite = torch.isfinite(torch.cat([getattr(m, f.name).flatten(1) for f in fields(m)], 1)).all(1)
    cov3 = torch.cat([m.root_pos_cov.unsqueeze(1), m.root_rot_cov.unsqueeze(1), m.pose_cov], 1)
    return finite & _spd(cov3).all(1) & _spd(m.betas_cov)


def _spd(cov: Tensor) -> Tensor:
    """(...) bool: each (n, n) matrix symmetric (to rounding) and positive definite (NaN: zero first)."""
    c = torch.nan_to_num(cov)
    sym = (c - c.transpose(-1, -2)).abs().amax((-1, -2)) <= 1e-9 * (1 + c.abs().amax((-1, -2)))
    return sym & (torch.linalg.cholesky_ex(c)[1] == 0)


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
    inc, post, _ = _kalman(mean_err, prior_cov, s)
    return inc, _symmetric(post), s


def _kalman(mean_err: Tensor, prior_cov: Tensor, s: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Kalman update with H = I and innovation covariance S = P + R (..., d, d): the increment P S^-1 e
    (..., d), the posterior P - P S^-1 P (not yet symmetrised) and S^-1 e (the NIS is e . S^-1 e).

    One solve, with the innovation as an extra column, S^-1 [P | e], and one product, P S^-1 [P | e], give
    both (no gain formed). solve_ex: S = P + R is positive definite whenever P and R are (R is checked by
    valid_measurements), and skipping solve's error check halves it at 50 people. LU rather than Cholesky
    and a triangular solve: those are quicker alone at one person, but not in the filter's step (more
    ops; triangular solves run matrix by matrix, slow for many joints), and LU also serves a prior that is
    not quite positive definite.
    """
    mm = torch.bmm if prior_cov.dim() == 3 else torch.matmul  # bmm: a fraction of matmul's overhead
    x = torch.linalg.solve_ex(s, torch.cat([prior_cov, mean_err.unsqueeze(-1)], -1))[0]
    z = mm(prior_cov, x)  # [P S^-1 P | P S^-1 e] (S, P symmetric)
    return z[..., -1], prior_cov - z[..., :-1], x[..., -1]


def _symmetric(c: Tensor) -> Tensor:
    return 0.5 * (c + c.transpose(-1, -2))


def _diagonal_blocks(root_cov: Tensor) -> Tensor:
    """(B, 6, 6) -> its position and rotation blocks (B, 2, 3, 3)."""
    return root_cov.reshape(-1, 2, 3, 2, 3).diagonal(dim1=1, dim2=3).permute(0, 3, 1, 2)


# Constants of the filter's algebra, made once per dtype and device.
_CONSTANTS: dict = {}
# predict builds F and Q (each 6x6) with one gather from [A (9), exp(dth) (9), R diag(v) R^T (9), v_theta (3), 0, 1, 0]:
# F = [[I, A], [0, exp(dth)^T]], Q = [[R diag(v) R^T, 0], [0, diag(v_theta)]].
_FQ_INDEX = [(31 if i == j else 30) if i < 3 and j < 3 else i * 3 + j - 3 if i < 3 else 30 if j < 3
             else 9 + (j - 3) * 3 + i - 3 for i in range(6) for j in range(6)] \
    + [18 + i * 3 + j if i < 3 and j < 3 else 27 + i - 3 if i == j and i >= 3 else 30
       for i in range(6) for j in range(6)]


def _constant(name: str, like: Tensor) -> Tensor:
    key = (name, like.dtype, like.device)
    c = _CONSTANTS.get(key)
    if c is None:
        with torch.inference_mode(False):
            if name == "betas_q":
                c = BETAS_PROCESS_VAR * torch.eye(10, dtype=like.dtype, device=like.device)
            elif name == "zero3":
                c = torch.zeros(3, 3, dtype=like.dtype, device=like.device)
            elif name == "zero_one":
                c = torch.tensor([[[0.0, 1.0, 0.0]]], dtype=like.dtype, device=like.device)
            else:  # "fq_index"
                c = torch.tensor(_FQ_INDEX, device=like.device)
        _CONSTANTS[key] = c
    return c


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
        # self.net layer by layer: functional calls skip the modules' per-call overhead.
        lin1, _, lin2, _, lin3 = self.net
        y = F.gelu(F.linear(F.gelu(F.linear(features, lin1.weight, lin1.bias)), lin2.weight, lin2.bias))
        return F.linear(y, lin3.weight, lin3.bias) * self.out_scale


@dataclass
class UpdateInfo:
    """Per-person diagnostics of an update: normalised innovation squared of the root position (3 dof;
    chi-square 99.9 %: 16.27) and whether it was fused."""

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
    faster than the error does. gate_nis rejects an update whose root position innovation (3 dof) is
    beyond it (outliers), leaving the prediction. Position only: a rotation gate locked a track out
    for good when a person spun faster than the prior expected (every later measurement rejected, a
    180 degree error kept); outliers of the image model are far off in position too. Such a turn
    instead inflates the prior: a root-rotation innovation whose NIS (3 dof) is beyond adapt_nis
    scales the prior's rotation block by NIS / 3 before the update (covariance matching, as in
    adaptive "fading memory" filters), so the posterior follows the measurement and admits the miss
    instead of staying confidently wrong (held-out root-rotation ANEES/dim without residual 3.1 ->
    1.4, docs/results.md); infinity switches it off.
    """

    def __init__(self, motion_model: nn.Module, residual: FusionResidual | None = None,
                 variance_scale: dict[str, float] | None = None, gate_nis: float = 16.27,
                 coast_variance_scale: dict[str, float] | None = None, adapt_nis: float = ADAPT_NIS) -> None:
        self.motion_model = motion_model.eval()
        self.history = motion_model.history
        self.residual = residual.eval() if residual is not None else None
        self.var_scale = self._block_scales(variance_scale)
        self.coast_var_scale = self._block_scales(coast_variance_scale or variance_scale)
        self.gate_nis = gate_nis
        self.adapt_nis = adapt_nis

    @staticmethod
    def _block_scales(scales: dict[str, float] | None) -> Tensor:
        """(75,) per-dimension factors from per-block ones (missing blocks: 1)."""
        vs = {"root_pos": 1.0, "root_rot": 1.0, "pose": 1.0} | (scales or {})
        return torch.tensor([vs["root_pos"]] * 3 + [vs["root_rot"]] * 3 + [vs["pose"]] * 69, dtype=_F64)

    @torch.no_grad()
    def motion_prior(self, s: FilterState) -> tuple[Tensor, Tensor]:
        """Mean (B, 75) and variance (B, 75) of the next body-centric step."""
        return self._motion_prior(s)

    def _motion_prior(self, s: FilterState) -> tuple[Tensor, Tensor]:
        k = self.history
        hist = (s.hist_pos, s.hist_rot, s.hist_pose)
        if s.hist_pos.shape[1] != k:
            hist = tuple(h[:, -k:] for h in hist)
        if isinstance(self.motion_model, TemporalConvMotionModel):  # its float64 path, in fewer ops
            mean, var = self.motion_model.gaussian64(*hist, MIN_STEP_VAR)
        else:  # the models run in float32
            mean, var = self.motion_model(*(h.float() for h in hist))
            mean, var = mean.double(), var.double().clamp_min(MIN_STEP_VAR)
        scale = torch.where(s.since_update.unsqueeze(1) == 0, self.var_scale, self.coast_var_scale)
        return mean, var * scale

    def predict(self, s: FilterState, steps: float = 1.0) -> FilterState:
        """One motion-model step: mean moved by the predicted step, covariance F P F^T + Q (grows).

        steps > 1 stretches the one step over that many step periods: the root keeps its velocity
        (root step times steps), the body pose takes one step (joint rates extrapolated over a long
        gap would twist limbs) and every variance grows as a random walk (times steps). It is the
        tracker's bounded-cost stand-in for long gaps, less exact than stepping.
        """
        with _filter_mode():
            return self._predict(s, steps)

    def _predict(self, s: FilterState, steps: float) -> FilterState:
        if len(s) == 0:
            return s
        with torch.inference_mode():  # intermediates only, see _INFERENCE
            step, var = self._motion_prior(s)
            if steps != 1.0:
                step = torch.cat([step[:, :6] * steps, step[:, 6:]], -1)
                var = var * steps
            b, r = step.shape[0], s.root_rot
            # exp of the root and joint increments, once for the mean and the Jacobians below.
            e = exp_so3(step[:, 3:].reshape(b, 24, 3))
            # Root: p' = p + R dp, R' = R exp(dth); error Jacobian F = [[I, -R [dp]x], [0, exp(dth)^T]] over
            # [d_position, d_theta], Q = [[R diag(v_p) R^T, 0], [0, diag(v_theta)]]: both from one gather.
            # -R [dp]x = R [dp]x^T has the rows dp x R_i (R_i the rows of R): one cross product.
            fq = torch.cat([torch.linalg.cross(step[:, None, :3], r), e[:, 0],
                            torch.bmm(r * var[:, None, :3], r.transpose(-1, -2)), var[:, None, 3:6],
                            _constant("zero_one", var).expand(b, 1, 3)], 1)  # (B, 11, 3)
            fq = fq.view(b, 33).index_select(1, _constant("fq_index", var)).view(b, 2, 6, 6)
            f = fq[:, 0]
            fp = torch.bmm(f, s.root_cov)
            a = e[:, 1:]  # joints: A^T P A + diag(var) with A = exp(step_j)
            atp = a.transpose(-1, -2) @ s.pose_cov
            q_pose = torch.diag_embed(var[:, 6:].view(b, 23, 3))
            dpos = torch.bmm(r, step[:, :3, None]).squeeze(2)
        pos, rot, pose = s.root_pos + dpos, torch.bmm(r, e[:, 0]), s.pose @ a
        return FilterState(pos, rot, torch.baddbmm(fq[:, 1], fp, f.transpose(-1, -2)), pose, atp @ a + q_pose,
                           s.betas, s.betas_cov + _constant("betas_q", s.betas_cov),
                           *_pushed(s, pos, rot, pose, push=True), s.since_update + steps)

    def update(self, s: FilterState, m: Measurement, with_features: bool = False) -> tuple[FilterState, UpdateInfo]:
        """Kalman update of predicted states with world-frame measurements (same order, same B).

        with_features: also return the residual's input features (for training it).
        """
        with _filter_mode():
            return self._update(s, m, with_features)

    def _update(self, s: FilterState, m: Measurement, with_features: bool) -> tuple[FilterState, UpdateInfo]:
        with torch.inference_mode():  # intermediates only, see _INFERENCE
            b, r = s.root_pos.shape[0], s.root_rot
            # Rotation innovations of the root and the 23 joints in one log: (B, 24, 3).
            rots = torch.cat([r.unsqueeze(1), s.pose], 1)
            rot_err = log_so3(rots.transpose(-1, -2) @ torch.cat([m.root_rot.unsqueeze(1), m.pose], 1))
            # The 25 3x3 blocks (root position, root rotation, joints) in one solve: the root's two give the
            # normalised innovations of its position and rotation (3 dof each), the joints' their update.
            err3 = torch.cat([(m.root_pos - s.root_pos).unsqueeze(1), rot_err], 1)  # (B, 25, 3)
            prior3 = torch.cat([_diagonal_blocks(s.root_cov), s.pose_cov], 1)
            meas3 = torch.cat([m.root_pos_cov.unsqueeze(1), m.root_rot_cov.unsqueeze(1), m.pose_cov], 1)
            err = err3.view(-1, 3)
            inc3, post3, white3 = _kalman(err, prior3.view(-1, 3, 3), (prior3 + meas3).view(-1, 3, 3))
            nis3 = torch.linalg.vecdot(err, white3).view(b, 25)  # e^T S^-1 e, of the first two used
            nis = nis3[:, 0]
            fused = nis <= self.gate_nis
            # The usual case, everyone fused (the caller reads `fused` at once anyway): no gating below.
            every = bool(fused.all())
            root_err = err3[:, :2].reshape(b, 6)  # [position, rotation]
            prior_root = self._adapted_root_prior(s.root_cov, nis3[:, 1])
            zero = _constant("zero3", r).expand(b, 3, 3)
            r_root = torch.cat([torch.cat([m.root_pos_cov, zero], 2), torch.cat([zero, m.root_rot_cov], 2)], 1)
            inc_root, root_cov, _ = _kalman(root_err, prior_root, prior_root + r_root)
            inc_betas, betas_cov, _ = _kalman(m.betas - s.betas, s.betas_cov, s.betas_cov + m.betas_cov)
            inc_pose, pose_cov = inc3.view(b, 25, 3)[:, 2:], post3.view(b, 25, 3, 3)[:, 2:]
            feats = None
            if self.residual is not None or with_features:
                # Tangent increment as a body-centric 75-d step (position in the prior's root frame).
                inc = torch.cat([torch.bmm(inc_root[:, None, :3], r).squeeze(1), inc_root[:, 3:],
                                 inc_pose.flatten(1)], -1)
                feats = self._features(s, m, root_err[:, :3], rot_err, inc)
                if self.residual is not None:
                    inc = inc + self.residual(feats).double()
                dpos, rot_inc = torch.bmm(r, inc[:, :3, None]).squeeze(2), inc[:, 3:].view(b, 24, 3)
            else:  # the increment as it is, world-frame position (no round trip through the root frame)
                dpos, rot_inc = inc_root[:, :3], torch.cat([inc_root[:, None, 3:], inc_pose], 1)
            if not every:  # gated-out people keep their prediction: zero increment, prior covariances
                f2 = fused.unsqueeze(1)
                dpos, rot_inc, inc_betas = dpos * f2, rot_inc * f2.unsqueeze(2), inc_betas * f2
            e = exp_so3(rot_inc)
        pos, (rot, pose) = s.root_pos + dpos, _rotated(rots, e)
        root_cov, pose_cov, betas_cov = _symmetric(root_cov), _symmetric(pose_cov), _symmetric(betas_cov)
        if every:
            since = torch.zeros_like(s.since_update)
        else:
            f3 = fused[:, None, None]
            root_cov, pose_cov = torch.where(f3, root_cov, s.root_cov), torch.where(f3[..., None], pose_cov, s.pose_cov)
            betas_cov, since = torch.where(f3, betas_cov, s.betas_cov), torch.where(fused, 0.0, s.since_update)
        info = UpdateInfo(*_ordinary(nis, fused), _ordinary(feats)[0] if with_features else None)
        return FilterState(pos, rot, root_cov, pose, pose_cov, s.betas + inc_betas, betas_cov,
                           *_pushed(s, pos, rot, pose, push=False), since), info

    def _adapted_root_prior(self, root_cov: Tensor, nis_rot: Tensor) -> Tensor:
        """The root prior D P D, D = diag(1, 1, 1, sqrt(NIS / 3) x 3), for a rotation NIS beyond adapt_nis
        (the prior missed a turn), else P."""
        beyond = nis_rot > self.adapt_nis
        if not bool(beyond.any()):  # the usual case: P as it is, without the scaling's ops
            return root_cov
        lam = torch.where(beyond, nis_rot / 3.0, 1.0).sqrt()
        d = F.pad(lam.unsqueeze(1).expand(-1, 3), (3, 0), value=1.0)
        return root_cov * (d.unsqueeze(2) * d.unsqueeze(1))

    @staticmethod
    def residual_features(s: FilterState, m: Measurement, root_err: Tensor, pose_err: Tensor, inc: Tensor) -> Tensor:
        """(B, 300): innovation and increment (body-centric) and log prior / measurement variances."""
        rot_err = torch.cat([root_err[:, None, 3:], pose_err], 1)
        return GloProFilter._features(s, m, root_err[:, :3], rot_err, inc)

    @staticmethod
    def _features(s: FilterState, m: Measurement, pos_err: Tensor, rot_err: Tensor, inc: Tensor) -> Tensor:
        """residual_features from the position innovation (B, 3) and the rotation ones (B, 24, 3)."""
        r = s.root_rot
        # diag(R^T C R)_i = sum_j R_ji (C R)_ji of the prior's and the measurement's root position
        # covariances, both from one product (B, 2, 3).
        pos_var = (torch.bmm(torch.cat([s.root_cov[:, :3, :3], m.root_pos_cov], 1), r).view(-1, 2, 3, 3)
                   * r.unsqueeze(1)).sum(-2)
        var = torch.cat([pos_var[:, 0], torch.diagonal(s.root_cov, dim1=-2, dim2=-1)[:, 3:],
                         torch.diagonal(s.pose_cov, dim1=-2, dim2=-1).flatten(1),
                         pos_var[:, 1], torch.diagonal(m.root_rot_cov, dim1=-2, dim2=-1),
                         torch.diagonal(m.pose_cov, dim1=-2, dim2=-1).flatten(1)], -1)  # prior | measurement
        return torch.cat([torch.bmm(pos_err.unsqueeze(1), r).squeeze(1), rot_err.flatten(1), inc,
                          var.clamp_min(1e-12).log()], -1).float()

    @staticmethod
    def _with_mean(s: FilterState, push: bool) -> FilterState:
        """Write the current mean into the history: append (after a prediction) or overwrite the last."""
        return FilterState(s.root_pos, s.root_rot, s.root_cov, s.pose, s.pose_cov, s.betas, s.betas_cov,
                           *_pushed(s, s.root_pos, s.root_rot, s.pose, push), s.since_update)


def _rotated(rots: Tensor, inc: Tensor) -> tuple[Tensor, Tensor]:
    """Root and joint rotations (B, 24, 3, 3) times their increments, in one product: the root's (B, 3, 3)
    and the joints' (B, 23, 3, 3), views of one tensor."""
    out = rots @ inc
    return out[:, 0], out[:, 1:]


def _pushed(s: FilterState, pos: Tensor, rot: Tensor, pose: Tensor, push: bool) -> tuple[Tensor, Tensor, Tensor]:
    """s's histories with the mean (pos, rot, pose) appended (push) or written over the last entry."""
    keep = slice(1, None) if push else slice(None, -1)
    return tuple(torch.cat([h[:, keep], x.unsqueeze(1)], 1)
                 for h, x in ((s.hist_pos, pos), (s.hist_rot, rot), (s.hist_pose, pose)))


# _INFERENCE: predict and update compute their intermediates under torch.inference_mode (no autograd
# bookkeeping per op: about a sixth of a one-person step, which is nearly all per-op overhead) and
# their results outside it (the last op of each), so that they are ordinary tensors as before, which
# callers may modify in place or use in autograd.


class _native_kernels:  # lower case: used like a function, `with _native_kernels():`
    """oneDNN (mkldnn) off for the filter's tiny tensors: its per-call set-up dominated them (GELU 11 ->
    2 us, linear 15 -> 9 us at one person; one-person step 1.29 -> 1.14 ms, 50 people a little faster
    too). A process-wide flag, restored on exit: other threads' ops meanwhile only take the native
    kernels, with the same results to float rounding. A class rather than a contextlib generator: half
    the cost on entering and leaving, which every predict and update do."""

    __slots__ = ("_previous",)

    def __enter__(self) -> None:
        self._previous = torch.backends.mkldnn.enabled
        torch.backends.mkldnn.enabled = False

    def __exit__(self, *exc: object) -> None:
        torch.backends.mkldnn.enabled = self._previous


class _filter_mode(_native_kernels):  # lower case: used like a function
    """_native_kernels and autograd off, the mode predict and update run in (their intermediates also under
    torch.inference_mode, see _INFERENCE): lighter than torch.no_grad as a decorator, whose object made
    per call cost about 1 % of a one-person step in each."""

    __slots__ = ("_grad",)

    def __enter__(self) -> None:
        self._grad = torch.is_grad_enabled()
        torch.set_grad_enabled(False)
        _native_kernels.__enter__(self)

    def __exit__(self, *exc: object) -> None:
        _native_kernels.__exit__(self, *exc)
        torch.set_grad_enabled(self._grad)


def _ordinary(*xs: Tensor) -> tuple[Tensor, ...]:
    """Inference-mode intermediates returned as they are: ordinary copies (nothing to copy when the
    caller is in inference mode itself)."""
    if torch.is_inference_mode_enabled():
        return xs
    return tuple(x.clone() for x in xs)


def to_gaussian_state(s: FilterState, frame_id: str = "map") -> GaussianBodyState:
    """The package's GaussianBodyState (full 85x85 covariance, block-diagonal here)."""
    return GaussianBodyState.from_blocks(s.betas, s.betas_cov, log_so3(s.pose), s.pose_cov, s.root_rot,
                                         s.root_pos, s.root_cov, frame_id)


FILTER_VARIANTS = ("glopro", "glopro_nores", "cv")


def load_filter(variant: str = "glopro", motion_path: str | Path | None = None,
                fusion_path: str | Path | None = None) -> GloProFilter:
    """A filter from the committed weights: GloPro (learned prior + residual), without residual, or CV.

    The fusion checkpoint holds the residual and each variant's calibrated motion-variance scales
    (after an update and while coasting). Its residual is None where training found that no fitted
    residual helped in closed loop (tools/train_residual.py): GloPro then runs without one.
    """
    if variant not in FILTER_VARIANTS:
        raise ValueError(f"unknown filter variant {variant!r}; one of {FILTER_VARIANTS}")
    motion = load_motion_model(motion_path, "cv" if variant == "cv" else "learned")
    ckpt = torch.load(Path(fusion_path) if fusion_path else DEFAULT_FUSION_WEIGHTS, map_location="cpu",
                      weights_only=True)
    residual = None
    if variant == "glopro" and ckpt["residual"] is not None:
        residual = FusionResidual(ckpt["width"])
        residual.load_state_dict(ckpt["residual"])
    return GloProFilter(motion, residual, ckpt["variance_scale"][variant],
                        coast_variance_scale=ckpt.get("coast_variance_scale", {}).get(variant))
