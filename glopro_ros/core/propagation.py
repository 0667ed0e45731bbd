"""Propagate a GaussianBodyState to 3D joints (and chosen vertices) with covariances.

First order is the production path (GloPro propagates the posterior through the body model's
Jacobian): the joint Jacobian w.r.t. the 85 flat tangent parameters is analytic (a kinematic
chain has closed-form derivatives), which is exact, allocation-light and far cheaper than
autodiff. The unscented (spherical cubature, 2n points) and sampling versions exist to validate
it and for strongly non-linear cases. Vertex subsets use torch.func.jacfwd on the float64
skinning path because blend-shape Jacobians have no compact closed form.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from glopro_ros.core.body_model import NUM_JOINTS, SMPL_PARENTS, BodyModel
from glopro_ros.core.gaussian_state import (
    BETAS, BODY_POSE, FLAT_DIM, ROOT_POSITION, ROOT_THETA, GaussianBodyState, sanitize_covariance,
)
from glopro_ros.core.so3 import exp_so3


@dataclass(frozen=True)
class PointsGaussian:
    """Per-point Gaussians: mean (B, N, 3) and cov (B, N, 3, 3) in `frame_id` (SI units)."""

    mean: Tensor
    cov: Tensor
    frame_id: str


def _on_model_device(model: BodyModel, state: GaussianBodyState) -> GaussianBodyState:
    return state if state.device == model.device else state.to(model.device)


def _perturbed_inputs(state: GaussianBodyState, delta: Tensor):
    """Body-model inputs at state ⊞ delta; delta (B, ..., 85) with any sample dims in between."""
    b = state.batch_size
    extra = delta.shape[1:-1]
    view = (b,) + (1,) * len(extra)
    betas = state.betas.reshape(*view, 10) + delta[..., BETAS]
    body = exp_so3(state.body_pose).reshape(*view, 23, 3, 3) \
        @ exp_so3(delta[..., BODY_POSE].reshape(*delta.shape[:-1], 23, 3))
    root = state.root_orientation.reshape(*view, 3, 3) @ exp_so3(delta[..., ROOT_THETA])
    pos = state.root_position.reshape(*view, 3) + delta[..., ROOT_POSITION]
    return betas, body, root, pos


def joints_at(model: BodyModel, state: GaussianBodyState, delta: Tensor) -> Tensor:
    """Joints (B, ..., 24, 3) of state ⊞ delta for flat tangent steps delta (B, ..., 85)."""
    state = _on_model_device(model, state)
    delta = delta.to(model.device)
    betas, body, root, pos = _perturbed_inputs(state, delta.to(torch.float64))
    lead = delta.shape[:-1]
    joints, _ = model.forward_joints(betas.reshape(-1, 10), body.reshape(-1, 23, 3, 3),
                                     root.reshape(-1, 3, 3), pos.reshape(-1, 3))
    return joints.reshape(*lead, NUM_JOINTS, 3)


def joint_jacobian(model: BodyModel, state: GaussianBodyState) -> tuple[Tensor, Tensor]:
    """Mean joints (B, 24, 3) and analytic Jacobian d joints / d flat tangent (B, 24, 3, 85).

    Right perturbation of joint k's rotation moves every descendant j by
    -hat(p_j - p_k) @ R_world_k; betas move joints through the rest bone offsets rotated by the
    parent's world rotation; the pelvis position moves all joints by the identity.
    """
    state = _on_model_device(model, state)
    b = state.batch_size
    f64 = dict(dtype=torch.float64, device=state.device)
    joints, rots = model.forward_joints(state.betas, exp_so3(state.body_pose),
                                        state.root_orientation, state.root_position)
    parents = torch.tensor([0, *SMPL_PARENTS[1:]], device=state.device)
    anc = model.ancestors.to(**f64)  # (24 j, 24 k)
    # Elementwise products and sums instead of batched 3x3 matmuls: much faster on CPU.
    dshape = model.joint_shapedirs - model.joint_shapedirs[parents]  # (24, 3, 10); row 0 is 0
    per_bone = (rots[:, parents, :, :, None] * dshape[None, :, None]).sum(3)  # (B, 24, 3, 10)
    with_self = anc + torch.eye(NUM_JOINTS, **f64)
    d_betas = (with_self @ per_bone.reshape(b, NUM_JOINTS, 30)).reshape(b, NUM_JOINTS, 3, 10)

    rel = joints[:, :, None] - joints[:, None, :]  # (B, j, k, 3) = p_j - p_k
    cols = rots[:, None].expand(b, NUM_JOINTS, NUM_JOINTS, 3, 3)  # R_world_k, columns on dim -1
    d_rot = -torch.linalg.cross(rel[..., None].expand_as(cols), cols, dim=-2) \
        * anc[None, :, :, None, None]  # (B, j, k, 3, 3) = -hat(p_j - p_k) @ R_world_k
    d_pose = d_rot[:, :, 1:].permute(0, 1, 3, 2, 4).reshape(b, NUM_JOINTS, 3, 69)
    d_pos = torch.eye(3, **f64).expand(b, NUM_JOINTS, 3, 3)
    return joints, torch.cat([d_betas, d_pose, d_rot[:, :, 0], d_pos], dim=-1)


def propagate_joints(model: BodyModel, state: GaussianBodyState) -> PointsGaussian:
    """First-order joint Gaussians: cov_j = J_j P J_j^T with the state's full covariance."""
    state = _on_model_device(model, state)
    joints, jac = joint_jacobian(model, state)
    b = state.batch_size
    jp = (jac.reshape(b, 3 * NUM_JOINTS, FLAT_DIM) @ state.cov).reshape(jac.shape)
    cov = (jp[:, :, :, None] * jac[:, :, None]).sum(-1)
    return PointsGaussian(joints, sanitize_covariance(cov, "joint_cov"), state.frame_id)


def _cov_sqrt(cov: Tensor) -> Tensor:
    """Symmetric square root factor L (L L^T = cov) via eigh: robust for near-singular cov."""
    evals, evecs = torch.linalg.eigh(cov)
    return evecs * evals.clamp_min(0).sqrt()[..., None, :]


def _moments(points: Tensor, frame_id: str) -> PointsGaussian:
    """points (B, S, N, 3) with equal weights -> mean and covariance over S."""
    mean = points.mean(1)
    d = points - mean[:, None]
    cov = torch.einsum("bsnc,bsnd->bncd", d, d) / points.shape[1]
    return PointsGaussian(mean, sanitize_covariance(cov, "joint_cov"), frame_id)


def propagate_joints_unscented(model: BodyModel, state: GaussianBodyState) -> PointsGaussian:
    """Spherical-cubature (unscented with kappa = 0) propagation: 2 x 85 sigma points."""
    state = _on_model_device(model, state)
    l = _cov_sqrt(state.cov) * FLAT_DIM**0.5  # columns are the sigma directions
    delta = torch.cat([l, -l], dim=2).transpose(1, 2)  # (B, 170, 85)
    return _moments(joints_at(model, state, delta), state.frame_id)


def sample_deltas(state: GaussianBodyState, num_samples: int,
                  generator: torch.Generator | None = None) -> Tensor:
    """Draw flat tangent steps (B, num_samples, 85) from N(0, cov)."""
    z = torch.randn(state.batch_size, num_samples, FLAT_DIM, dtype=torch.float64,
                    device=state.device, generator=generator)
    return z @ _cov_sqrt(state.cov).transpose(1, 2)


def propagate_joints_sampling(model: BodyModel, state: GaussianBodyState, num_samples: int = 2000,
                              generator: torch.Generator | None = None) -> PointsGaussian:
    """Monte-Carlo joint mean and covariance (for validation)."""
    state = _on_model_device(model, state)
    return _moments(joints_at(model, state, sample_deltas(state, num_samples, generator)),
                    state.frame_id)


def propagate_vertices(model: BodyModel, state: GaussianBodyState,
                       vertex_ids: Tensor | np.ndarray) -> PointsGaussian:
    """First-order Gaussians of a vertex subset (B, n, 3) via torch.func.jacfwd (85 tangents)."""
    state = _on_model_device(model, state)
    ids = np.asarray(torch.as_tensor(vertex_ids).cpu(), dtype=np.int64)  # numpy: jacfwd-safe

    def verts(delta: Tensor, one: GaussianBodyState) -> Tensor:
        betas, body, root, pos = _perturbed_inputs(one, delta[None])
        return model.forward_vertex_subset(betas, body, root, pos, ids)[0]

    means, covs = [], []
    for i in range(state.batch_size):  # per person: jacfwd over one state
        one = state.select(i)
        zero = torch.zeros(FLAT_DIM, dtype=torch.float64, device=state.device)
        jac = torch.func.jacfwd(verts)(zero, one)  # (n, 3, 85)
        means.append(verts(zero, one))
        covs.append(torch.einsum("ncm,mk,ndk->ncd", jac, one.cov[0], jac))
    if not means:
        n = ids.size
        f64 = dict(dtype=torch.float64, device=state.device)
        return PointsGaussian(torch.zeros(0, n, 3, **f64), torch.zeros(0, n, 3, 3, **f64),
                              state.frame_id)
    return PointsGaussian(torch.stack(means), sanitize_covariance(torch.stack(covs), "vertex_cov"),
                          state.frame_id)
