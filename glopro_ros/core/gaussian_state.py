"""Gaussian SMPL body states of several people, their validation and rigid frame changes.

Conventions (binding for the filter, perception and ROS layers):
- SI units; float64 tensors; batch B over people (B may be 0); `frame_id` names the frame.
- Means: betas (B, 10); body_pose (B, 23, 3) axis-angle of joints 1..23 (norm wrapped to [0, pi]);
  root_orientation (B, 3, 3) and root_position (B, 3) are the PELVIS (SMPL joint 0) pose in frame_id.
- Uncertainty is one full covariance (B, 85, 85) over the flat tangent vector
      [d_betas (10) | d_body_pose (23 x 3) | d_root_theta (3) | d_root_position (3)]
  with RIGHT perturbations for every rotation: R_j = exp(body_pose_j) @ exp(d_j),
  R_root = root_orientation @ exp(d_root_theta); betas and root_position are additive
  (root_position in frame_id). Blocks are views of it: betas_cov (B, 10, 10),
  body_pose_cov (B, 23, 3, 3) per-joint blocks, root_cov (B, 6, 6) ordered [d_position, d_theta]
  as in geometry_msgs/PoseWithCovariance. Keeping the full matrix lets a filter carry cross terms.
- The flat mean (B, 85) uses the same order with log(root_orientation) in the root-theta slot;
  `boxplus`/`boxminus` are the matching manifold operations for an error-state filter.
Invalid input raises ValueError naming the field; covariances are symmetrised and their
eigenvalues clamped to at least MIN_EIGENVALUE so no NaN or indefinite matrix leaves the library.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from glopro_ros.core.so3 import (
    exp_so3, hat, log_so3, project_to_so3, quat_to_matrix, right_jacobian, wrap_axis_angle,
)

NUM_BETAS = 10
NUM_BODY_JOINTS = 23
FLAT_DIM = 85
BETAS = slice(0, 10)
BODY_POSE = slice(10, 79)
ROOT_THETA = slice(79, 82)
ROOT_POSITION = slice(82, 85)
MIN_EIGENVALUE = 1e-12  # m^2 / rad^2 floor keeping covariances strictly positive definite
_ROTATION_TOL = 1e-3
_ROOT_PERM = [3, 4, 5, 0, 1, 2]  # [theta, position] (flat order) <-> [position, theta] (root_cov)


def flat_field_name(i: int) -> str:
    """Name of flat index i, for error messages (e.g. 'body_pose[4][2]')."""
    if i < 10:
        return f"betas[{i}]"
    if i < 79:
        return f"body_pose[{(i - 10) // 3}][{(i - 10) % 3}]"
    return f"root_orientation(theta)[{i - 79}]" if i < 82 else f"root_position[{i - 82}]"


def _as_f64(name: str, x, device: torch.device | None = None) -> Tensor:
    if not isinstance(x, Tensor):
        try:
            x = torch.as_tensor(x, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ValueError(f"{name}: not convertible to a float tensor ({exc})") from exc
    x = x.to(dtype=torch.float64, device=device)
    if not torch.isfinite(x).all():
        raise ValueError(f"{name}: contains NaN or Inf")
    return x


def _check_shape(name: str, x: Tensor, shape: tuple[int, ...]) -> None:
    if tuple(x.shape) != shape:
        pretty = tuple("B" if i == 0 else s for i, s in enumerate(shape))
        raise ValueError(f"{name}: expected shape {pretty} with B={shape[0]}, got {tuple(x.shape)}")


def _negative_variances(cov: Tensor) -> Tensor:
    """Mask of variances below zero by more than rounding (1e-10 of the matrix's scale)."""
    diag = torch.diagonal(cov, dim1=-2, dim2=-1)
    scale = diag.abs().amax(-1, keepdim=True).clamp_min(1.0) if diag.numel() else diag
    return diag < -1e-10 * scale


def sanitize_covariance(cov: Tensor, name: str = "cov",
                        min_eigenvalue: float = MIN_EIGENVALUE) -> Tensor:
    """Symmetrise and clamp eigenvalues of (..., n, n) covariances to >= min_eigenvalue.

    Raises ValueError naming `name` for NaN/Inf, negative variances, or clearly indefinite input
    (an eigenvalue below -1e-6 of the largest); rounding-level negatives (a variance above -1e-10
    of the largest) are clamped silently.
    """
    if not torch.isfinite(cov).all():
        raise ValueError(f"{name}: contains NaN or Inf")
    neg = _negative_variances(cov)
    if neg.any():
        raise ValueError(f"{name}: negative variance at index {torch.nonzero(neg)[0].tolist()}")
    cov = 0.5 * (cov + cov.transpose(-1, -2))
    if cov.numel() == 0:
        return cov
    # Fast path: a Cholesky of cov - floor*I succeeds iff every eigenvalue exceeds the floor;
    # only the failures pay for an eigendecomposition.
    eye = torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)
    _, info = torch.linalg.cholesky_ex(cov - min_eigenvalue * eye)
    bad = info != 0
    if not bad.any():
        return cov
    evals, evecs = torch.linalg.eigh(cov[bad])
    scale = evals.abs().amax(-1, keepdim=True).clamp_min(1.0)
    if (evals < -1e-6 * scale).any():
        raise ValueError(f"{name}: not positive semi-definite (eigenvalue {evals.min().item():.3g})")
    fixed = evecs @ torch.diag_embed(evals.clamp_min(min_eigenvalue)) @ evecs.transpose(-1, -2)
    cov = cov.clone()
    cov[bad] = 0.5 * (fixed + fixed.transpose(-1, -2))
    return cov


def right_cov_from_axis_angle_cov(axis_angle: Tensor, cov: Tensor) -> Tensor:
    """Convert covariances of additive axis-angle noise (phi = mean + e, e.g. an image model's
    per-parameter variances) to this package's right-perturbation convention:
    exp(mean + e) ~= exp(mean) @ exp(Jr(mean) e), so cov_right = Jr cov Jr^T. Shapes (..., 3) and
    (..., 3, 3)."""
    jr = right_jacobian(axis_angle.to(cov.dtype))
    return jr @ cov @ jr.transpose(-1, -2)


def _check_rotations(name: str, r: Tensor) -> Tensor:
    if r.numel():
        eye = torch.eye(3, dtype=r.dtype, device=r.device)
        err = (r.transpose(-1, -2) @ r - eye).abs().amax()
        if err > _ROTATION_TOL or (torch.det(r) <= 0).any():
            raise ValueError(f"{name}: not rotation matrices (|R^T R - I| = {err.item():.3g} "
                             "or det <= 0)")
        r = project_to_so3(r)
    return r


@dataclass(frozen=True)
class RigidTransform:
    """T_target_source: x_target = rotation @ x_source + translation.

    rotation (3, 3) or (B, 3, 3), translation (3,) or (B, 3). Optional `cov` (6, 6) or (B, 6, 6)
    over [d_translation (additive, target frame), d_theta (right perturbation of rotation)],
    e.g. the uncertainty of a camera pose from SLAM; it is assumed independent of the states.
    """

    rotation: Tensor
    translation: Tensor
    cov: Tensor | None = None

    def __post_init__(self) -> None:
        r = _as_f64("rotation", self.rotation)
        if r.shape[-2:] != (3, 3) or r.ndim > 3:
            raise ValueError(f"rotation: expected shape (3, 3) or (B, 3, 3), got {tuple(r.shape)}")
        t = _as_f64("translation", self.translation, r.device)
        if t.shape[-1:] != (3,) or t.ndim > 2:
            raise ValueError(f"translation: expected shape (3,) or (B, 3), got {tuple(t.shape)}")
        object.__setattr__(self, "rotation", _check_rotations("rotation", r))
        object.__setattr__(self, "translation", t)
        if self.cov is not None:
            c = _as_f64("cov", self.cov, r.device)
            if c.shape[-2:] != (6, 6) or c.ndim > 3:
                raise ValueError(f"cov: expected shape (6, 6) or (B, 6, 6), got {tuple(c.shape)}")
            object.__setattr__(self, "cov", sanitize_covariance(c, "cov"))

    @classmethod
    def from_quaternion(cls, quat_xyzw, translation, cov=None) -> "RigidTransform":
        """From a ROS-order quaternion (x, y, z, w) and a translation (e.g. a TF lookup)."""
        return cls(quat_to_matrix(_as_f64("quat_xyzw", quat_xyzw)), translation, cov)

    def inverse(self) -> "RigidTransform":
        """T_source_target, with the covariance mapped to the inverse's perturbation."""
        rt = self.rotation.transpose(-1, -2)
        t_inv = -(rt @ self.translation[..., None])[..., 0]
        cov = None
        if self.cov is not None:
            # d_t' = -R^T d_t - hat(R^T t) d_theta ; d_theta' = -R d_theta
            jac = torch.zeros(*rt.shape[:-2], 6, 6, dtype=rt.dtype, device=rt.device)
            jac[..., :3, :3] = -rt
            jac[..., :3, 3:] = hat(t_inv)
            jac[..., 3:, 3:] = -self.rotation
            cov = jac @ self.cov @ jac.transpose(-1, -2)
        return RigidTransform(rt, t_inv, cov)

    def apply(self, points: Tensor) -> Tensor:
        """Map (..., 3) points (batch-broadcast against the transform's batch)."""
        return (self.rotation @ points[..., None].to(self.rotation))[..., 0] + self.translation


@dataclass(frozen=True)
class GaussianBodyState:
    """Gaussian over the SMPL parameters of B people in frame `frame_id` (see module docstring).

    Construct with `from_blocks` (per-block covariances) or `from_flat`; the constructor takes
    the means and the full (B, 85, 85) covariance directly.
    """

    betas: Tensor
    body_pose: Tensor
    root_orientation: Tensor
    root_position: Tensor
    cov: Tensor
    frame_id: str

    def __post_init__(self) -> None:
        if not isinstance(self.frame_id, str):
            raise ValueError(f"frame_id: expected str, got {type(self.frame_id).__name__}")
        betas = _as_f64("betas", self.betas)
        dev = betas.device
        b = betas.shape[0] if betas.ndim else -1
        _check_shape("betas", betas, (b, NUM_BETAS))
        fields = {
            "body_pose": (b, NUM_BODY_JOINTS, 3), "root_orientation": (b, 3, 3),
            "root_position": (b, 3), "cov": (b, FLAT_DIM, FLAT_DIM),
        }
        vals = {"betas": betas}
        for name, shape in fields.items():
            vals[name] = _as_f64(name, getattr(self, name), dev)
            _check_shape(name, vals[name], shape)
        vals["body_pose"] = wrap_axis_angle(vals["body_pose"])
        vals["root_orientation"] = _check_rotations("root_orientation", vals["root_orientation"])
        neg = _negative_variances(vals["cov"])
        if neg.any():
            i = int(torch.nonzero(neg)[0, 1])
            raise ValueError(f"cov: negative variance for {flat_field_name(i)}")
        vals["cov"] = sanitize_covariance(vals["cov"], "cov")
        for name, value in vals.items():
            object.__setattr__(self, name, value)

    # --- construction -------------------------------------------------------------------------
    @classmethod
    def from_blocks(cls, betas, betas_cov, body_pose, body_pose_cov, root_orientation,
                    root_position, root_cov, frame_id: str) -> "GaussianBodyState":
        """Block-diagonal state: betas_cov (B, 10, 10) or variances (B, 10); body_pose_cov
        (B, 23, 3, 3) or variances (B, 23, 3); root_cov (B, 6, 6) over [d_position, d_theta]
        or variances (B, 6)."""
        betas = _as_f64("betas", betas)
        b, dev = betas.shape[0], betas.device
        blocks = {}
        for name, value, full, var in (
            ("betas_cov", betas_cov, (b, 10, 10), (b, 10)),
            ("body_pose_cov", body_pose_cov, (b, 23, 3, 3), (b, 23, 3)),
            ("root_cov", root_cov, (b, 6, 6), (b, 6)),
        ):
            x = _as_f64(name, value, dev)
            if tuple(x.shape) == var:
                if (x < 0).any():
                    raise ValueError(f"{name}: negative variance")
                x = torch.diag_embed(x)
            _check_shape(name, x, full)
            blocks[name] = sanitize_covariance(x, name, min_eigenvalue=0.0)
        cov = torch.zeros(b, FLAT_DIM, FLAT_DIM, dtype=torch.float64, device=dev)
        cov[:, BETAS, BETAS] = blocks["betas_cov"]
        for j in range(NUM_BODY_JOINTS):
            s = slice(10 + 3 * j, 13 + 3 * j)
            cov[:, s, s] = blocks["body_pose_cov"][:, j]
        cov[:, 79:, 79:] = blocks["root_cov"][:, _ROOT_PERM][:, :, _ROOT_PERM]
        return cls(betas, body_pose, root_orientation, root_position, cov, frame_id)

    @classmethod
    def from_flat(cls, mean, cov, frame_id: str) -> "GaussianBodyState":
        """From a flat mean (B, 85) (root slot = axis-angle of the root rotation) and cov."""
        mean = _as_f64("mean", mean)
        if mean.ndim != 2 or mean.shape[1] != FLAT_DIM:
            raise ValueError(f"mean: expected shape (B, 85), got {tuple(mean.shape)}")
        b = mean.shape[0]
        return cls(mean[:, BETAS], mean[:, BODY_POSE].reshape(b, NUM_BODY_JOINTS, 3),
                   exp_so3(mean[:, ROOT_THETA]), mean[:, ROOT_POSITION], cov, frame_id)

    # --- views --------------------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        return self.betas.shape[0]

    @property
    def device(self) -> torch.device:
        return self.betas.device

    @property
    def betas_cov(self) -> Tensor:
        return self.cov[:, BETAS, BETAS]

    @property
    def body_pose_cov(self) -> Tensor:
        """(B, 23, 3, 3) per-joint diagonal blocks (cross-joint terms live in `cov`)."""
        c = self.cov[:, BODY_POSE, BODY_POSE].reshape(-1, NUM_BODY_JOINTS, 3, NUM_BODY_JOINTS, 3)
        idx = torch.arange(NUM_BODY_JOINTS, device=self.device)
        return c[:, idx, :, idx, :].permute(1, 0, 2, 3)

    @property
    def root_cov(self) -> Tensor:
        """(B, 6, 6) over [d_position, d_theta] (PoseWithCovariance order)."""
        return self.cov[:, 79:, 79:][:, _ROOT_PERM][:, :, _ROOT_PERM]

    def flat_mean(self) -> Tensor:
        """(B, 85): [betas | body_pose | log(root_orientation) | root_position]."""
        return torch.cat([self.betas, self.body_pose.flatten(1), log_so3(self.root_orientation),
                          self.root_position], dim=1)

    def root_transform(self) -> RigidTransform:
        """The root (pelvis) frame as T_frame_root with the root covariance."""
        return RigidTransform(self.root_orientation, self.root_position, self.root_cov)

    # --- manifold operations ------------------------------------------------------------------
    def boxplus(self, delta: Tensor, cov: Tensor | None = None) -> "GaussianBodyState":
        """Move the mean by a flat tangent step (B, 85); keep `cov` unless a new one is given."""
        delta = _as_f64("delta", delta, self.device)
        _check_shape("delta", delta, (self.batch_size, FLAT_DIM))
        b = self.batch_size
        pose = log_so3(exp_so3(self.body_pose) @ exp_so3(delta[:, BODY_POSE].reshape(b, 23, 3)))
        return GaussianBodyState(
            self.betas + delta[:, BETAS], pose,
            self.root_orientation @ exp_so3(delta[:, ROOT_THETA]),
            self.root_position + delta[:, ROOT_POSITION],
            self.cov if cov is None else cov, self.frame_id)

    def boxminus(self, other: "GaussianBodyState") -> Tensor:
        """Flat tangent difference d (B, 85) with other.boxplus(d) == self (same frame only)."""
        if other.frame_id != self.frame_id:
            raise ValueError(f"frame_id: cannot compare {self.frame_id!r} with {other.frame_id!r}")
        d_pose = log_so3(exp_so3(other.body_pose).transpose(-1, -2) @ exp_so3(self.body_pose))
        d_root = log_so3(other.root_orientation.transpose(-1, -2) @ self.root_orientation)
        return torch.cat([self.betas - other.betas, d_pose.flatten(1), d_root,
                          self.root_position - other.root_position], dim=1)

    # --- frames -------------------------------------------------------------------------------
    def transform(self, t_target_source: RigidTransform, target_frame: str) -> "GaussianBodyState":
        """Express the state in another frame: root pose mean and covariance change, betas and
        body pose do not. A transform covariance (independent of the state) is added to first
        order: d_p' = R_T d_p + d_t - R_T hat(p) d_phi, d_theta' = d_theta + R^T d_phi."""
        rt = t_target_source.rotation.to(self.device)
        tt = t_target_source.translation.to(self.device)
        b = self.batch_size
        rt_b = rt.expand(b, 3, 3)
        position = (rt_b @ self.root_position[..., None])[..., 0] + tt
        orientation = rt_b @ self.root_orientation
        jac = torch.eye(FLAT_DIM, dtype=torch.float64, device=self.device).repeat(b, 1, 1)
        jac[:, ROOT_POSITION, ROOT_POSITION] = rt_b
        cov = jac @ self.cov @ jac.transpose(-1, -2)
        if t_target_source.cov is not None:
            jt = torch.zeros(b, FLAT_DIM, 6, dtype=torch.float64, device=self.device)
            jt[:, ROOT_POSITION, :3] = torch.eye(3, dtype=torch.float64, device=self.device)
            jt[:, ROOT_POSITION, 3:] = -rt_b @ hat(self.root_position)
            jt[:, ROOT_THETA, 3:] = self.root_orientation.transpose(-1, -2)
            cov = cov + jt @ t_target_source.cov.to(self.device).expand(b, 6, 6) \
                @ jt.transpose(-1, -2)
        return GaussianBodyState(self.betas, self.body_pose, orientation, position, cov,
                                 target_frame)

    def to_body_frame(self, reference: RigidTransform,
                      frame_id: str = "body") -> "GaussianBodyState":
        """Express relative to a body-centric frame H given as T_frame_H (e.g. a person's root
        frame at step k, from `root_transform()`), per person or shared."""
        return self.transform(reference.inverse(), frame_id)

    def from_body_frame(self, reference: RigidTransform, frame_id: str) -> "GaussianBodyState":
        """Inverse of `to_body_frame`: back to the frame in which `reference` (T_frame_H) lives."""
        return self.transform(reference, frame_id)

    # --- batching -----------------------------------------------------------------------------
    def select(self, index) -> "GaussianBodyState":
        """People subset by index tensor, list or slice (keeps the batch dimension)."""
        if isinstance(index, int):
            index = [index]
        return GaussianBodyState(self.betas[index], self.body_pose[index],
                                 self.root_orientation[index], self.root_position[index],
                                 self.cov[index], self.frame_id)

    @staticmethod
    def cat(states: list["GaussianBodyState"]) -> "GaussianBodyState":
        """Concatenate states of the same frame along the people dimension."""
        if not states or len({s.frame_id for s in states}) != 1:
            raise ValueError("frame_id: cat needs at least one state and a single frame_id")
        return GaussianBodyState(*(torch.cat([getattr(s, f) for s in states]) for f in (
            "betas", "body_pose", "root_orientation", "root_position", "cov")), states[0].frame_id)

    def to(self, device: torch.device | str) -> "GaussianBodyState":
        return GaussianBodyState(self.betas.to(device), self.body_pose.to(device),
                                 self.root_orientation.to(device), self.root_position.to(device),
                                 self.cov.to(device), self.frame_id)
