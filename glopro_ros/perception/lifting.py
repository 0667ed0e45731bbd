"""Keypoints -> Gaussian SMPL measurement per person in the camera frame (fit + Laplace).

A few damped Gauss-Newton steps on the joints-only SMPL chain minimise
  reprojection (pixel noise from the detector, widened by each joint pair's systematic offset,
  weighted by visibility) + BlazePose's metric 3D landmarks (up to a nuisance scale: BlazePose's
  metric size is a learned average, so it is trusted to +-scale_sigma only)
  + pose and shape priors.
The inverse Gauss-Newton Hessian at the optimum (Laplace approximation) is the covariance, in the
GaussianBodyState tangent order with right perturbations for every rotation. Depth comes out far
less certain than image position because only the body's size (betas, landmark scale) fixes it.
Jacobians are analytic in numpy (no autograd), batched over the people of an image: a step costs
about half a millisecond for one person alone and a millisecond for five together.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy.linalg import lapack
from threadpoolctl import ThreadpoolController

from glopro_ros.core.body_model import SMPL_PARENTS, BodyModel
from glopro_ros.core.gaussian_state import GaussianBodyState
from glopro_ros.perception.rotations import (exp_rotvec, hat, inv_right_jacobian, kabsch, log_rotvec,
                                             ray_rotation)
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
_TORSO_NECK = _TORSO | (SMPL_JOINTS == 12)  # the rigid-ish points that set the initial orientation
_HIPS = slice(0, 2)  # the hip centre's joints (1, 2) lead the targets
# Per person, stacked over people: (betas, local rotations (23, 3, 3), root rotation, root position,
# log of the landmark scale)
FitState = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
# Multi-threaded BLAS on 86x86 problems is 50-100x slower than one thread on a busy CPU.
_THREADPOOLS = ThreadpoolController()


def _diagonal(h: np.ndarray) -> np.ndarray:
    """Writable view (B, N) of the diagonals of contiguous square matrices (B, N, N)."""
    return h.reshape(len(h), -1)[:, ::h.shape[-1] + 1]


def _body_blocks(h: np.ndarray) -> np.ndarray:
    """Writable view (B, 23, 3, 3) of the body joints' 3x3 diagonal blocks of (B, 86, 86) matrices."""
    return np.einsum("bjajc->bjac", h[:, 10:79, 10:79].reshape(len(h), 23, 3, 23, 3))


def _solve_spd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """x (B, N) with a x = b for symmetric positive definite a (B, N, N): LAPACK's Cholesky solve
    per matrix beats numpy's batched LU at 86x86 (LU where the factorisation fails)."""
    out = np.empty_like(b)
    for i, (ai, bi) in enumerate(zip(a, b)):
        _, out[i], info = lapack.dposv(ai, bi)
        if info:
            out[i] = np.linalg.solve(ai, bi)
    return out


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
        self._prior_rot_t = np.swapaxes(exp_rotvec(self.config.pose_prior[0]), -1, -2).copy()
        # diagonal of J^T J from the betas and log-scale priors (constant Jacobians)
        self._prior_diag = np.zeros(N_STATE + 1)
        self._prior_diag[:10], self._prior_diag[N_STATE] = self.config.betas_sigma**-2, self.config.scale_sigma**-2
        self.template = model.joint_template.cpu().numpy()  # (24, 3)
        self.shapedirs = model.joint_shapedirs.cpu().numpy()  # (24, 3, 10)
        # bone from each joint's parent to it (the root's is unused): rest offset + shape directions
        self._bone_rest = self.template - self.template[PARENTS]
        self._bone_dirs = self.shapedirs - self.shapedirs[PARENTS]  # (24, 3, 10)
        # path[j, a]: a is j or an ancestor of j, a != root (bones that move j)
        path = np.zeros((NJ, NJ))
        desc = np.zeros((NJ, NJ), bool)  # desc[j, i]: j is a strict descendant of i
        for j in range(1, NJ):
            a = j
            while a > 0:
                path[j, a] = 1.0
                desc[j, PARENTS[a]] = True
                a = PARENTS[a]
        self._path, self._target_path = path, path[SMPL_JOINTS]
        # World rotations by pointer doubling (a few batched products, not one per joint): round s
        # multiplies each entry by the one 2^s levels up; index NJ is the identity above the root.
        up = np.append(np.where(PARENTS < 0, NJ, PARENTS), NJ)
        self._hops = []
        for _ in range(int(np.ceil(np.log2(desc.sum(1).max() + 1)))):
            self._hops.append(up)
            up = up[up]
        # Rotation columns of the targets' Jacobian: one 3x3 block hat(J_i - J_t) @ R_i per target t
        # and ancestor i (the differences as one product with the joints), at flat positions of the
        # target's (3, 86) Jacobian rows; joint i's columns: body joints 1..23 from 10, then the root.
        target, self._pair_i = np.nonzero(desc[SMPL_JOINTS])
        pairs = np.arange(len(target))
        self._pair_diff = np.zeros((len(pairs), NJ))
        self._pair_diff[pairs, self._pair_i], self._pair_diff[pairs, SMPL_JOINTS[target]] = 1.0, -1.0
        row, col = 3 * target[:, None] + np.arange(3), 10 + 3 * ((self._pair_i[:, None] - 1) % NJ) + np.arange(3)
        self._pair_flat = (row[:, :, None] * (N_STATE + 1) + col[:, None, :]).ravel()

    # --- kinematics (batched over people: one Python loop per frame, not per person) -------
    def _forward(self, betas: np.ndarray, local: np.ndarray, root_r: np.ndarray,
                 root_p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Joints (B,24,3) and world rotations (B,24,3,3)."""
        n = len(betas)
        rots = np.empty((n, NJ + 1, 3, 3))  # the local rotations, the root's first, then the identity
        rots[:, 0], rots[:, 1:NJ], rots[:, NJ] = root_r, local, np.eye(3)
        for up in self._hops:
            rots = np.take(rots, up, 1) @ rots
        rots = rots[:, :NJ]
        bone = self._bone_rest + (betas @ self._bone_dirs.reshape(-1, 10).T).reshape(n, NJ, 3)
        # a joint is the root plus its path's bones, each turned by its parent's rotation
        return root_p[:, None] + self._path @ (np.take(rots, PARENTS, 1) @ bone[..., None])[..., 0], rots

    def _jacobian(self, joints: np.ndarray, rots: np.ndarray) -> np.ndarray:
        """(B, targets, 3, 86) d joints[SMPL_JOINTS] / d [betas | body delta | root delta | root position
        | log-scale (zero)]: the fit needs only the joints it has targets for."""
        n = len(joints)
        jac = np.zeros((n, len(SMPL_JOINTS), 3, N_STATE + 1))
        d_betas = self._target_path @ (np.take(rots, PARENTS, 1) @ self._bone_dirs).reshape(n, NJ, 30)
        jac[..., :10] = d_betas.reshape(n, -1, 3, 10)
        hats = hat(self._pair_diff @ joints)
        jac.reshape(n, -1)[:, self._pair_flat] = (hats @ np.take(rots, self._pair_i, 1)).reshape(n, -1)
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

    def _setup(self, uv: np.ndarray, confidence: np.ndarray, world: np.ndarray, focal: np.ndarray,
               centre: np.ndarray) -> tuple[FitState, tuple[np.ndarray, ...], np.ndarray]:
        """Initial states, measurements with their whitening weights (uv, pixel weight, world, world
        weight) and pixel heights of people stacked (B, targets, ...)."""
        cfg = self.config
        n = len(uv)
        conf = np.where(confidence >= 0.05, confidence, 0.0)
        seen = confidence >= cfg.min_confidence
        v = uv[..., 1]
        height_px = np.where(seen.sum(1) > 1, np.where(seen, v, -np.inf).max(1) - np.where(seen, v, np.inf).min(1),
                             100.0)
        sigma_det = np.maximum(cfg.pixel_sigma_min, cfg.pixel_sigma_rel * np.maximum(height_px, 50.0))
        r_ray = ray_rotation(np.concatenate([(uv[:, _HIPS].mean(1) - centre) / focal, np.ones((n, 1))], 1))
        world = world @ np.swapaxes(r_ray, -1, -2)
        world_sigma = np.sqrt(cfg.world_sigma**2 / np.maximum(confidence, 0.05) + BIAS_M**2)
        rest = self.template
        hip_centre = rest[[1, 2]].mean(0)
        root_r = kabsch((rest[SMPL_JOINTS] - hip_centre)[_TORSO_NECK], world[:, _TORSO_NECK])
        root_p = self._init_translation(uv, conf, world, focal, centre) + root_r @ (rest[0] - hip_centre)
        # Pixel noise per target, fixed from the initial depth: letting it follow the fitted depth
        # would reward moving closer (the offset term grows in pixels) and bias depth low.
        z0 = np.maximum(root_p[:, 2:], 0.3)
        pixel_sigma = np.sqrt(sigma_det[:, None]**2 / np.maximum(conf, 1e-6) + (focal[0] * BIAS_M / z0) ** 2)
        local = np.repeat(np.swapaxes(self._prior_rot_t, -1, -2)[None], n, 0)
        state = (np.zeros((n, 10)), local, root_r, root_p, np.zeros(n))
        weights = (uv, np.where(conf > 0, 1.0 / pixel_sigma, 0.0), world, 1.0 / world_sigma)
        return state, weights, height_px

    def _fit(self, people: list[BodyTargets], k: np.ndarray) -> list[LiftResult | ValueError]:
        cfg = self.config
        uv, confidence, world = (np.stack([getattr(t, name) for t in people]) for name in ("uv", "confidence", "world"))
        intrinsics = (k[[0, 1], [0, 1]], k[[0, 1], [2, 2]])  # focal lengths, principal point
        state, data, height_px = self._setup(uv, confidence, world, *intrinsics)
        cost, h, g = self._normal_equations(state, *data, *intrinsics)
        lam = np.full(len(people), 1e-3)
        iterations = np.zeros(len(people), int)
        active = np.arange(len(people))
        for it in range(1, cfg.max_iterations + 1):  # Levenberg-Marquardt, each person on its own
            if not len(active):
                break
            iterations[active] = it
            everyone = len(active) == len(people)  # plain views instead of copies (always so for one person)
            damped, ga = (h.copy(), g) if everyone else (h[active], g[active])
            diagonal = _diagonal(damped)
            diagonal += lam[active, None] * (diagonal + 1e-9)
            step = -_solve_spd(damped, ga)
            candidate = self._boxplus(state if everyone else tuple(x[active] for x in state), step)
            cost_c, h_c, g_c = self._normal_equations(
                candidate, *(data if everyone else (x[active] for x in data)), *intrinsics)
            better = cost_c < cost[active]
            lam[active[~better]] *= 10  # rejected steps: damp more
            converged = better & (cost[active] - cost_c < cfg.tolerance * cost[active])
            take, kept = active[better], better
            if everyone and better.all():
                state, h, g, cost = candidate, h_c, g_c, cost_c
            else:
                for x, c in zip(state, candidate):
                    x[take] = c[kept]
                h[take], g[take], cost[take] = h_c[kept], g_c[kept], cost_c[kept]
            lam[take] = np.maximum(lam[take] / 3, 1e-6)
            active = active[~converged]
        cov = np.linalg.inv(h)[:, :N_STATE, :N_STATE]
        betas, local, root_r, root_p, _ = state
        joints, _ = self._forward(betas, local, root_r, root_p)
        body_pose = log_rotvec(local)
        focal, centre = intrinsics
        pts = joints[:, SMPL_JOINTS]
        err2 = ((focal * pts[..., :2] / pts[..., 2:] + centre - uv) ** 2).sum(-1)
        seen = confidence >= cfg.min_confidence
        rms = np.sqrt(np.where(seen, err2, 0.0).sum(1) / seen.sum(1))  # over confident targets
        failed = (joints[:, 0, 2] <= 0.1) | (rms > cfg.max_reprojection_rel * np.maximum(height_px, 50.0))
        results: list[LiftResult | ValueError] = []
        for b in range(len(people)):
            if failed[b]:
                results.append(ValueError(f"fit failed (pelvis depth {joints[b, 0, 2]:.2f} m, "
                                          f"reprojection RMS {rms[b]:.1f} px)"))
                continue
            results.append(LiftResult(betas=betas[b], body_pose=body_pose[b], root_orientation=root_r[b],
                                      root_position=root_p[b], cov=0.5 * (cov[b] + cov[b].T), joints=joints[b],
                                      reprojection_px=float(rms[b]), iterations=int(iterations[b])))
        return results

    @staticmethod
    def _init_translation(uv: np.ndarray, conf: np.ndarray, world: np.ndarray, focal: np.ndarray,
                          centre: np.ndarray) -> np.ndarray:
        """Hip-centre positions (B, 3) making world landmarks project onto uv (linear least squares
        per person, via the pseudo-inverse as numpy's lstsq is not batched)."""
        a = (uv - centre) / focal  # normalised image coordinates (B, K, 2)
        w = np.sqrt(conf)[:, None, :, None]
        m = np.zeros((*a.shape[:2], 2, 3))  # rows per image axis: t_axis - a_axis t_z
        m[..., [0, 1], [0, 1]], m[..., 2] = 1.0, -a
        m = np.swapaxes(m, 1, 2) * w  # (B, 2, K, 3)
        rhs = np.swapaxes(a * world[..., 2:] - world[..., :2], 1, 2)[..., None] * w
        t = (np.linalg.pinv(m.reshape(len(uv), -1, 3)) @ rhs.reshape(len(uv), -1, 1))[..., 0]
        # degenerate geometry: put the person at a plausible distance
        return np.where(t[:, 2:] < 0.3, np.array([0.0, 0.0, 3.0]), t)

    def _boxplus(self, state: FitState, step: np.ndarray) -> FitState:
        betas, local, root_r, root_p, log_s = state
        turn = exp_rotvec(step[:, 10:82].reshape(-1, NJ, 3))  # body joints 1..23, then the root
        return (betas + step[:, :10], local @ turn[:, :-1], root_r @ turn[:, -1], root_p + step[:, 82:85],
                log_s + step[:, 85])

    def _normal_equations(self, state: FitState, uv: np.ndarray, w2: np.ndarray, world: np.ndarray,
                          w3: np.ndarray, focal: np.ndarray,
                          centre: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cost (B,), Gauss-Newton Hessian J^T J (B, 86, 86) and gradient J^T r (B, 86) of the whitened
        residuals w.r.t. [85 state | log-scale]."""
        cfg = self.config
        betas, local, root_r, root_p, log_s = state
        n, m = len(betas), len(SMPL_JOINTS)
        joints, rots = self._forward(betas, local, root_r, root_p)
        pts, jac_pts = np.take(joints, SMPL_JOINTS, 1), self._jacobian(joints, rots)
        jac = np.empty((n, 5 * m, N_STATE + 1))  # the dense rows: reprojection (2 per target), then 3D (3)
        j2, j3 = jac[:, :2 * m].reshape(n, m, 2, -1), jac[:, 2 * m:].reshape(n, m, 3, -1)
        # reprojection: d pixel / d point = focal / z [I | -xy] for the normalised image point xy
        inv_z = 1.0 / np.maximum(pts[..., 2:], 0.05)
        xy = pts[..., :2] * inv_z
        r2 = (focal * xy + centre - uv) * w2[..., None]
        dproj = np.empty((n, m, 2, 3))
        dproj[..., :2], dproj[..., 2] = np.eye(2), -xy
        dproj *= (focal * (w2[..., None] * inv_z))[..., None]
        np.matmul(dproj, jac_pts, out=j2)
        # 3D landmarks relative to the hip centre, up to scale. The scale divides the model (not
        # multiplies the landmarks): otherwise shrinking body and scale together shrinks the
        # residual of noisy landmarks, and depth comes out biased low.
        inv_s = np.exp(-log_s)[:, None]
        rel = inv_s[..., None] * (pts - pts[:, _HIPS].mean(1, keepdims=True))
        r3 = (rel - world) * w3[..., None]
        np.subtract(jac_pts, jac_pts[:, _HIPS].mean(1, keepdims=True), out=j3)
        j3 *= (inv_s * w3)[..., None, None]
        j3[..., N_STATE] = -rel * w3[..., None]
        # priors: body pose about the prior mean (right perturbation), betas about zero, log-scale
        dev = log_rotvec(self._prior_rot_t @ local)  # (B, 23, 3)
        rp = dev / cfg.pose_prior[1]
        r = np.concatenate([r2.reshape(n, -1), r3.reshape(n, -1), rp.reshape(n, -1),
                            betas / cfg.betas_sigma, log_s[:, None] / cfg.scale_sigma], 1)
        jac_t = np.swapaxes(jac, 1, 2)
        h, g = jac_t @ jac, (jac_t @ r[:, :5 * m, None])[..., 0]
        # The priors' Jacobian is block-diagonal (3x3 per body joint, constant for betas and scale):
        # their share of J^T J and J^T r is added block by block instead of through dense rows.
        jp = inv_right_jacobian(dev) / cfg.pose_prior[1][..., None]  # d rp / d body delta per joint
        jp_t = np.swapaxes(jp, -1, -2).copy()  # small stacked products are 3x slower on transposed views
        blocks, diagonal = _body_blocks(h), _diagonal(h)
        blocks += jp_t @ jp
        diagonal += self._prior_diag
        g[:, 10:79] += (jp_t @ rp[..., None]).reshape(n, -1)
        g[:, :10] += betas / cfg.betas_sigma**2
        g[:, N_STATE] += log_s / cfg.scale_sigma**2
        return np.einsum("bi,bi->b", r, r), h, g

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
