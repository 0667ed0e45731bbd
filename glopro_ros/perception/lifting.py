"""Keypoints -> Gaussian SMPL measurement per person in the camera frame (fit + Laplace).

A few damped Gauss-Newton steps on the joints-only SMPL chain minimise
  reprojection (pixel noise from the detector, widened by each joint pair's systematic offset,
  weighted by visibility) + BlazePose's metric 3D landmarks (up to a nuisance scale: BlazePose's
  metric size is a learned average, so it is trusted to +-scale_sigma only)
  + pose and shape priors.
The inverse Gauss-Newton Hessian at the optimum (Laplace approximation) is the covariance, in the
GaussianBodyState tangent order with right perturbations for every rotation. Depth comes out far
less certain than image position because only the body's size (betas, landmark scale) fixes it.
Jacobians are analytic in numpy (no autograd), batched over the people of an image: one person
costs about a millisecond per step alone, less in a group.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import ThreadpoolController

from glopro_ros.core.body_model import SMPL_PARENTS, BodyModel
from glopro_ros.core.gaussian_state import GaussianBodyState
from glopro_ros.perception.rotations import (exp_rotvec, inv_right_jacobian, kabsch,
                                             log_rotvec, ray_rotation)
from glopro_ros.perception.smpl_correspondence import BIAS_M, SMPL_JOINTS, BodyTargets

LOG = logging.getLogger(__name__)
NJ = 24
PARENTS = np.array(SMPL_PARENTS)
# Hand-set floor of the prior std (rad) per body joint 1..23 and local axis: real poses vary far
# more than a few walking clips (arms out, hands on hips, crouching), so the data spread is never
# trusted below it. Hinges (knees bend about x, elbows about y in SMPL's T-pose frames) keep
# their anatomical limits on the other axes; everything else is isotropic.
POSE_PRIOR_FLOOR = np.repeat(np.array([
    0.8, 0.8, 0.3, 1.0, 1.0, 0.2, 0.4, 0.4, 0.2, 0.3, 0.3, 0.4, 0.3, 0.3, 0.4, 0.9, 0.9,
    1.0, 1.0, 0.6, 0.6, 0.4, 0.4])[:, None], 3, 1)
POSE_PRIOR_FLOOR[[3, 4]] = [1.0, 0.15, 0.15]  # knees
POSE_PRIOR_FLOOR[[17, 18]] = [0.3, 1.0, 0.3]  # elbows (x: forearm twist)
POSE_PRIOR_FILE = Path(__file__).resolve().parents[1] / "data" / "pose_prior" / "cmu_pose_prior.npz"


def default_pose_prior() -> tuple[np.ndarray, np.ndarray]:
    """Prior mean (23, 3) axis-angle and std (23, 3): CMU-derived (scripts/derive_pose_prior.py)
    with the hand-set floor; the T-pose with the floor if the file is absent."""
    if not POSE_PRIOR_FILE.is_file():
        LOG.warning("pose prior %s missing: using the T-pose as prior mean", POSE_PRIOR_FILE)
        return np.zeros((23, 3)), POSE_PRIOR_FLOOR.copy()
    with np.load(POSE_PRIOR_FILE) as data:
        return data["mean"], np.maximum(data["std"], POSE_PRIOR_FLOOR)


N_STATE = 85  # [betas 10 | body 69 | root theta 3 | root position 3]; + log-scale nuisance
_TORSO = np.isin(SMPL_JOINTS, [1, 2, 16, 17])
_HIPS = [int(np.flatnonzero(SMPL_JOINTS == j)[0]) for j in (1, 2)]  # the hip centre's joints among the targets
# Per person, stacked over people: (betas, local rotations (23, 3, 3), root rotation, root position,
# log of the landmark scale)
FitState = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
# The prior's block-diagonal Jacobian: entry (a, b) of joint j's 3x3 block at row 3j + a, column 3j + b.
_BLOCK_J, _BLOCK_A, _BLOCK_B = (g.ravel() for g in np.meshgrid(np.arange(23), np.arange(3), np.arange(3),
                                                                indexing="ij"))
_BLOCK_ROWS, _BLOCK_COLS = 3 * _BLOCK_J + _BLOCK_A, 3 * _BLOCK_J + _BLOCK_B
# Multi-threaded BLAS on 86x86 problems is 50-100x slower than one thread on a busy CPU.
_THREADPOOLS = ThreadpoolController()


@dataclass
class LiftConfig:
    """Noise model and solver settings (see module docstring)."""

    pixel_sigma_rel: float = 0.02  # detector 2D noise as a share of the person's pixel height
    pixel_sigma_min: float = 2.0  # px
    world_sigma: float = 0.10  # m, BlazePose world landmark noise per joint (set by calibration)
    scale_sigma: float = 0.08  # log-std of BlazePose's metric size
    betas_sigma: float = 1.0
    pose_prior: tuple[np.ndarray, np.ndarray] = field(default_factory=default_pose_prior)
    min_confidence: float = 0.3  # a target counts as seen above this
    min_targets: int = 6
    max_iterations: int = 10
    tolerance: float = 1e-3  # stop when a step lowers the cost by less than this share
    max_reprojection_rel: float = 0.15  # reject fits whose RMS error exceeds this share of height


@dataclass
class LiftResult:
    """One person's fit: the flat mean pieces, the 85x85 covariance and its diagnostics."""

    betas: np.ndarray
    body_pose: np.ndarray  # (23, 3) axis-angle
    root_orientation: np.ndarray  # (3, 3)
    root_position: np.ndarray  # (3,)
    cov: np.ndarray  # (85, 85)
    joints: np.ndarray  # (24, 3) camera frame
    reprojection_px: float  # RMS over confident targets
    iterations: int


class KeypointLifter:
    """Fits the joints-only body model to BlazePose targets; returns camera-frame Gaussians."""

    def __init__(self, body_model: BodyModel | None = None,
                 config: LiftConfig | None = None) -> None:
        model = body_model or BodyModel(device="cpu")
        self.body_model = model
        self.config = config or LiftConfig()
        self._prior_rot = exp_rotvec(self.config.pose_prior[0])
        self.template = model.joint_template.cpu().numpy()  # (24, 3)
        self.shapedirs = model.joint_shapedirs.cpu().numpy()  # (24, 3, 10)
        # path[j, a]: a is j or an ancestor of j, a != root (bones that move j)
        path = np.zeros((NJ, NJ))
        desc = np.zeros((NJ, NJ), bool)  # desc[j, i]: j is a strict descendant of i
        for j in range(1, NJ):
            a = j
            while a > 0:
                path[j, a] = 1.0
                desc[j, PARENTS[a]] = True
                a = PARENTS[a]
        self._path, self._desc = path, desc

    # --- kinematics (batched over people: one Python loop per frame, not per person) -------
    def _forward(self, betas: np.ndarray, local: np.ndarray, root_r: np.ndarray,
                 root_p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Joints (B,24,3), world rotations (B,24,3,3), d joints / d betas (B,24,3,10)."""
        rest = self.template + np.einsum("jck,bk->bjc", self.shapedirs, betas)
        bone = rest - rest[:, PARENTS]
        bone_s = self.shapedirs - self.shapedirs[PARENTS]
        rots = np.empty((len(betas), NJ, 3, 3))
        pos = np.empty((len(betas), NJ, 3))
        rots[:, 0], pos[:, 0] = root_r, root_p
        for j in range(1, NJ):
            p = PARENTS[j]
            pos[:, j] = pos[:, p] + (rots[:, p] @ bone[:, j, :, None])[..., 0]
            rots[:, j] = rots[:, p] @ local[:, j - 1]
        rotated_s = np.einsum("baij,ajk->baik", rots[:, PARENTS], bone_s)
        rotated_s[:, 0] = 0.0
        return pos, rots, np.einsum("ja,baik->bjik", self._path, rotated_s)

    def _jacobian(self, joints: np.ndarray, rots: np.ndarray, d_betas: np.ndarray,
                  rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """(B, len(rows), 3, 85) d joints[rows] / d [betas | body delta | root delta | root position]
        (the fit needs only the joints it has targets for)."""
        n, m = len(joints), len(np.arange(NJ)[rows])
        jac = np.zeros((n, m, 3, N_STATE))
        jac[..., :10] = d_betas[:, rows]
        diff = joints[:, rows, None, :] - joints[:, None, :, :]  # (b, j, i, 3) = J_j - J_i
        # -hat(diff) @ R_i, column by column: R_i's columns crossed with diff (no 3x3 matrix products)
        r = rots[:, None]
        d_rot = diff[..., [2, 0, 1], None] * r[..., [1, 2, 0], :] - diff[..., [1, 2, 0], None] * r[..., [2, 0, 1], :]
        d_rot *= self._desc[rows][None, :, :, None, None]
        jac[..., 10:79] = d_rot[:, :, 1:].transpose(0, 1, 3, 2, 4).reshape(n, m, 3, 69)
        jac[..., 79:82] = d_rot[:, :, 0]
        jac[..., 82:85] = np.eye(3)
        return jac

    # --- fitting --------------------------------------------------------------------------
    def usable(self, targets: BodyTargets) -> str | None:
        """None if the targets can be lifted, else the reason (for one log line)."""
        seen = targets.confidence >= self.config.min_confidence
        if seen.sum() < self.config.min_targets:
            return f"only {int(seen.sum())} confident keypoints (need {self.config.min_targets})"
        if (seen & _TORSO).sum() < 2:
            return "torso not visible (need two of hips/shoulders)"
        if not np.all(np.isfinite(targets.uv)) or not np.all(np.isfinite(targets.world)):
            return "non-finite keypoints"
        return None

    def fit(self, targets: BodyTargets, k: np.ndarray) -> LiftResult:
        """Fit one person (raises ValueError when the targets cannot determine a body)."""
        result = self.fit_many([targets], k)[0]
        if isinstance(result, ValueError):
            raise result
        return result

    def fit_many(self, people: Sequence[BodyTargets], k: np.ndarray) -> list[LiftResult | ValueError]:
        """Fit all people of one image together (the same result as one by one, at a fraction of the
        Python overhead); a person whose targets cannot determine a body gets the ValueError saying why."""
        reasons = [self.usable(t) for t in people]
        todo = [t for t, reason in zip(people, reasons) if reason is None]
        with _THREADPOOLS.limit(limits=1, user_api="blas"):
            fits = iter(self._fit(todo, k) if todo else [])
        return [ValueError(reason) if reason else next(fits) for reason in reasons]

    def _setup(self, targets: BodyTargets, k: np.ndarray) -> tuple[FitState, tuple[np.ndarray, ...], float]:
        """One person's initial state, residual weights (uv, conf, world, world_sigma, pixel_sigma)
        and pixel height."""
        cfg = self.config
        fx, fy, cx, cy = k[0, 0], k[1, 1], k[0, 2], k[1, 2]
        conf = np.where(targets.confidence >= 0.05, targets.confidence, 0.0)
        seen = targets.confidence >= cfg.min_confidence
        height_px = np.ptp(targets.uv[seen, 1]) if seen.sum() > 1 else 100.0
        sigma_det = max(cfg.pixel_sigma_min, cfg.pixel_sigma_rel * max(height_px, 50.0))
        hips = targets.uv[:2].mean(0)
        r_ray = ray_rotation(np.array([(hips[0] - cx) / fx, (hips[1] - cy) / fy, 1.0]))
        world = targets.world @ r_ray.T
        world_sigma = np.sqrt(cfg.world_sigma**2 / np.maximum(targets.confidence, 0.05)
                              + BIAS_M**2)
        rest = self.template
        rest_rel = rest[SMPL_JOINTS] - rest[[1, 2]].mean(0)
        torso = _TORSO | np.isin(SMPL_JOINTS, [12])
        root_r = kabsch(rest_rel[torso], world[torso])
        root_p = self._init_translation(targets.uv, conf, world, k) \
            + root_r @ (rest[0] - rest[[1, 2]].mean(0))
        # Pixel noise per target, fixed from the initial depth: letting it follow the fitted depth
        # would reward moving closer (the offset term grows in pixels) and bias depth low.
        z0 = max(float(root_p[2]), 0.3)
        pixel_sigma = np.sqrt(sigma_det**2 / np.maximum(conf, 1e-6) + (fx * BIAS_M / z0) ** 2)
        state = (np.zeros(10), self._prior_rot.copy(), root_r, root_p, 0.0)
        return state, (targets.uv, conf, world, world_sigma, pixel_sigma), float(height_px)

    def _fit(self, people: list[BodyTargets], k: np.ndarray) -> list[LiftResult | ValueError]:
        cfg = self.config
        setups = [self._setup(t, k) for t in people]
        state = tuple(np.stack([np.asarray(s[0][i], float) for s in setups]) for i in range(5))
        data = tuple(np.stack([s[1][i] for s in setups]) for i in range(5))
        intrinsics = (k[0, 0], k[1, 1], k[0, 2], k[1, 2])
        r, jac = self._residuals(state, *data, *intrinsics)
        cost = np.einsum("bi,bi->b", r, r)
        lam = np.full(len(people), 1e-3)
        iterations = np.zeros(len(people), int)
        active = np.arange(len(people))
        for it in range(1, cfg.max_iterations + 1):  # Levenberg-Marquardt, each person on its own
            if not len(active):
                break
            iterations[active] = it
            everyone = len(active) == len(people)  # plain views instead of copies (always so for one person)
            ja, ra = (jac, r) if everyone else (jac[active], r[active])
            h = np.swapaxes(ja, 1, 2) @ ja
            damping = lam[active, None] * (np.diagonal(h, axis1=1, axis2=2) + 1e-9)
            h[:, np.arange(h.shape[1]), np.arange(h.shape[1])] += damping
            step = -np.linalg.solve(h, (np.swapaxes(ja, 1, 2) @ ra[..., None]))[..., 0]
            candidate = self._boxplus(state if everyone else tuple(x[active] for x in state), step)
            r_c, jac_c = self._residuals(candidate, *(data if everyone else (x[active] for x in data)), *intrinsics)
            cost_c = np.einsum("bi,bi->b", r_c, r_c)
            better = cost_c < cost[active]
            lam[active[~better]] *= 10  # rejected steps: damp more
            converged = better & (cost[active] - cost_c < cfg.tolerance * cost[active])
            take, kept = active[better], better
            if everyone and better.all():
                state, r, jac, cost = candidate, r_c, jac_c, cost_c
            else:
                for x, c in zip(state, candidate):
                    x[take] = c[kept]
                r[take], jac[take], cost[take] = r_c[kept], jac_c[kept], cost_c[kept]
            lam[take] = np.maximum(lam[take] / 3, 1e-6)
            active = active[~converged]
        cov = np.linalg.inv(np.swapaxes(jac, 1, 2) @ jac)[:, :N_STATE, :N_STATE]
        betas, local, root_r, root_p, _ = state
        joints, _, _ = self._forward(betas, local, root_r, root_p)
        body_pose = log_rotvec(local)
        fx, fy, cx, cy = intrinsics
        results: list[LiftResult | ValueError] = []
        for b, (targets, (_, _, height_px)) in enumerate(zip(people, setups)):
            seen = targets.confidence >= cfg.min_confidence
            proj = np.stack([fx * joints[b, :, 0] / joints[b, :, 2] + cx,
                             fy * joints[b, :, 1] / joints[b, :, 2] + cy], 1)[SMPL_JOINTS]
            err = np.linalg.norm(proj - targets.uv, axis=1)[seen]
            rms = float(np.sqrt(np.mean(err**2)))
            if joints[b, 0, 2] <= 0.1 or rms > cfg.max_reprojection_rel * max(height_px, 50.0):
                results.append(ValueError(f"fit failed (pelvis depth {joints[b, 0, 2]:.2f} m, "
                                          f"reprojection RMS {rms:.1f} px)"))
                continue
            results.append(LiftResult(betas=betas[b], body_pose=body_pose[b], root_orientation=root_r[b],
                                      root_position=root_p[b], cov=0.5 * (cov[b] + cov[b].T), joints=joints[b],
                                      reprojection_px=rms, iterations=int(iterations[b])))
        return results

    def _init_translation(self, uv: np.ndarray, conf: np.ndarray, world: np.ndarray,
                          k: np.ndarray) -> np.ndarray:
        """Hip-centre position making world landmarks project onto uv (linear least squares)."""
        a = (uv - k[[0, 1], [2, 2]]) / k[[0, 1], [0, 1]]  # normalised image coordinates
        w = np.sqrt(conf)
        rows, rhs = [], []
        for ax in range(2):
            m = np.zeros((len(uv), 3))
            m[:, ax], m[:, 2] = 1.0, -a[:, ax]
            rows.append(m * w[:, None])
            rhs.append((a[:, ax] * world[:, 2] - world[:, ax]) * w)
        t = np.linalg.lstsq(np.vstack(rows), np.concatenate(rhs), rcond=None)[0]
        if t[2] < 0.3:  # degenerate geometry: put the person at a plausible distance
            t = np.array([0.0, 0.0, 3.0])
        return t

    def _boxplus(self, state: FitState, step: np.ndarray) -> FitState:
        betas, local, root_r, root_p, log_s = state
        return (betas + step[:, :10], local @ exp_rotvec(step[:, 10:79].reshape(-1, 23, 3)),
                root_r @ exp_rotvec(step[:, 79:82]), root_p + step[:, 82:85], log_s + step[:, 85])

    def _residuals(self, state: FitState, uv: np.ndarray, conf: np.ndarray, world: np.ndarray,
                   world_sigma: np.ndarray, pixel_sigma: np.ndarray, fx: float, fy: float,
                   cx: float, cy: float) -> tuple[np.ndarray, np.ndarray]:
        """Whitened residual vectors (B, R) and their Jacobians (B, R, 86) w.r.t. [85 state | log-scale]."""
        cfg = self.config
        betas, local, root_r, root_p, log_s = state
        n = len(betas)
        joints, rots, d_betas = self._forward(betas, local, root_r, root_p)
        pts, jac_pts = joints[:, SMPL_JOINTS], self._jacobian(joints, rots, d_betas, SMPL_JOINTS)
        z = np.maximum(pts[..., 2], 0.05)
        # reprojection
        w2 = np.where(conf > 0, 1.0 / pixel_sigma, 0.0)
        proj = np.stack([fx * pts[..., 0] / z + cx, fy * pts[..., 1] / z + cy], -1)
        dproj = np.zeros((*z.shape, 2, 3))
        dproj[..., 0, 0], dproj[..., 0, 2] = fx / z, -fx * pts[..., 0] / z**2
        dproj[..., 1, 1], dproj[..., 1, 2] = fy / z, -fy * pts[..., 1] / z**2
        r2 = ((proj - uv) * w2[..., None]).reshape(n, -1)
        j2 = ((dproj @ jac_pts) * w2[..., None, None]).reshape(n, -1, N_STATE)
        # 3D landmarks relative to the hip centre, up to scale. The scale divides the model (not
        # multiplies the landmarks): otherwise shrinking body and scale together shrinks the
        # residual of noisy landmarks, and depth comes out biased low.
        inv_s = np.exp(-log_s)[:, None, None]
        rel = pts - joints[:, [1, 2]].mean(1, keepdims=True)
        w3 = 1.0 / world_sigma
        r3 = ((inv_s * rel - world) * w3[..., None]).reshape(n, -1)
        j3 = (inv_s[..., None] * (jac_pts - jac_pts[:, _HIPS].mean(1, keepdims=True))
              * w3[..., None, None]).reshape(n, -1, N_STATE)
        j3_s = (-inv_s * rel * w3[..., None]).reshape(n, -1)
        # priors: body pose about the prior mean (right perturbation), betas about zero
        prior_mean, prior_sigma = self._prior_rot, cfg.pose_prior[1]
        dev = log_rotvec(np.swapaxes(prior_mean, -1, -2) @ local)  # (B, 23, 3)
        rp = (dev / prior_sigma).reshape(n, -1)
        n2, n3 = r2.shape[1], r3.shape[1]
        r = np.concatenate([r2, r3, rp, betas / cfg.betas_sigma, log_s[:, None] / cfg.scale_sigma], 1)
        jac = np.zeros((n, r.shape[1], N_STATE + 1))
        jac[:, :n2, :N_STATE] = j2
        jac[:, n2:n2 + n3, :N_STATE] = j3
        jac[:, n2:n2 + n3, N_STATE] = j3_s
        rows, cols = n2 + n3 + _BLOCK_ROWS, 10 + _BLOCK_COLS
        jac[:, rows, cols] = (inv_right_jacobian(dev) / prior_sigma[:, :, None])[:, _BLOCK_J, _BLOCK_A, _BLOCK_B]
        jac[:, n2 + n3 + 69 + np.arange(10), np.arange(10)] = 1.0 / cfg.betas_sigma
        jac[:, -1, N_STATE] = 1.0 / cfg.scale_sigma
        return r, jac

    # --- output ---------------------------------------------------------------------------
    @staticmethod
    def to_state(results: list[LiftResult], frame_id: str) -> GaussianBodyState:
        """Stack fits into the core's GaussianBodyState (B may be 0)."""
        def stack(name: str, shape: tuple[int, ...]) -> torch.Tensor:
            vals = [getattr(r, name) for r in results]
            arr = np.stack(vals) if vals else np.zeros((0, *shape))
            return torch.as_tensor(arr, dtype=torch.float64)
        return GaussianBodyState(stack("betas", (10,)), stack("body_pose", (23, 3)),
                                 stack("root_orientation", (3, 3)), stack("root_position", (3,)),
                                 stack("cov", (N_STATE, N_STATE)), frame_id)
