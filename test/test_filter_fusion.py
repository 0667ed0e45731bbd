"""Fusion algebra: the Kalman update equals the closed-form product of Gaussians; prediction grows covariance."""
from __future__ import annotations

import numpy as np
import torch

from glopro_ros.core.fusion import (
    GloProFilter, Measurement, camera_to_world, gaussian_product_update, init_state, to_gaussian_state,
    valid_measurements,
)
from glopro_ros.core.motion_model import STEP_DIM, ConstantVelocityModel, TemporalConvMotionModel
from glopro_ros.core.so3 import exp_so3, log_so3

F64 = torch.float64


def random_spd(n: int, d: int, seed: int, scale: float = 0.1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, d, d, generator=g, dtype=F64) * scale
    return a @ a.transpose(-1, -2) + 0.01 * torch.eye(d, dtype=F64)


def measurement(b: int, seed: int) -> Measurement:
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=F64)  # noqa: E731
    return Measurement(r(b, 3), random_spd(b, 3, seed), exp_so3(0.3 * r(b, 3)), random_spd(b, 3, seed + 1, 0.05),
                       exp_so3(0.3 * r(b, 23, 3)), random_spd(b * 23, 3, seed + 2, 0.05).reshape(b, 23, 3, 3),
                       r(b, 10), random_spd(b, 10, seed + 3))


def product_of_gaussians(m1, p1, m2, p2):
    """Closed form: P = (P1^-1 + P2^-1)^-1, m = P (P1^-1 m1 + P2^-1 m2)."""
    i1, i2 = np.linalg.inv(p1), np.linalg.inv(p2)
    p = np.linalg.inv(i1 + i2)
    return p @ (i1 @ m1 + i2 @ m2), p


def test_gaussian_product_update_matches_closed_form():
    p1, p2 = random_spd(5, 6, 0).numpy(), random_spd(5, 6, 1).numpy()
    m1, m2 = np.random.default_rng(0).normal(size=(2, 5, 6))
    inc, post, _ = gaussian_product_update(torch.tensor(m2 - m1), torch.tensor(p1), torch.tensor(p2))
    for i in range(5):
        m, p = product_of_gaussians(m1[i], p1[i], m2[i], p2[i])
        np.testing.assert_allclose(m1[i] + inc[i].numpy(), m, atol=1e-10)
        np.testing.assert_allclose(post[i].numpy(), p, atol=1e-10)


def test_filter_update_fuses_every_block_as_product_of_gaussians():
    # Neither gate nor inflation (the innovations here are large): the bare products.
    filt = GloProFilter(ConstantVelocityModel(torch.full((STEP_DIM,), 1e-4)), gate_nis=1e9, adapt_nis=float("inf"))
    prior = init_state(measurement(4, 0), filt.history)
    m = measurement(4, 10)
    post, info = filt.update(prior, m)
    assert info.fused.all()
    for i in range(4):
        # Additive blocks (root position, betas): exactly the product of the two Gaussians.
        mp, pp = product_of_gaussians(prior.root_pos[i].numpy(), prior.root_cov[i, :3, :3].numpy(),
                                      m.root_pos[i].numpy(), m.root_pos_cov[i].numpy())
        np.testing.assert_allclose(post.root_pos[i].numpy(), mp, atol=1e-10)
        np.testing.assert_allclose(post.root_cov[i, :3, :3].numpy(), pp, atol=1e-10)
        mb, pb = product_of_gaussians(prior.betas[i].numpy(), prior.betas_cov[i].numpy(), m.betas[i].numpy(),
                                      m.betas_cov[i].numpy())
        np.testing.assert_allclose(post.betas[i].numpy(), mb, atol=1e-10)
        np.testing.assert_allclose(post.betas_cov[i].numpy(), pb, atol=1e-10)
        # Rotations: the same product in the prior's tangent space (right perturbation).
        for rot_prior, cov_prior, rot_meas, cov_meas, rot_post, cov_post in (
            (prior.root_rot[i], prior.root_cov[i, 3:, 3:], m.root_rot[i], m.root_rot_cov[i], post.root_rot[i],
             post.root_cov[i, 3:, 3:]),
            (prior.pose[i, 5], prior.pose_cov[i, 5], m.pose[i, 5], m.pose_cov[i, 5], post.pose[i, 5],
             post.pose_cov[i, 5]),
        ):
            d, pr = product_of_gaussians(np.zeros(3), cov_prior.numpy(), log_so3(rot_prior.T @ rot_meas).numpy(),
                                         cov_meas.numpy())
            np.testing.assert_allclose(log_so3(rot_prior.T @ rot_post).numpy(), d, atol=1e-9)
            np.testing.assert_allclose(cov_post.numpy(), pr, atol=1e-10)


def test_prediction_only_grows_covariance_and_moves_with_velocity():
    filt = GloProFilter(ConstantVelocityModel(torch.full((STEP_DIM,), 1e-4), history=4))
    m = measurement(2, 0)
    s = init_state(m, filt.history)
    for k in range(4):  # walk at 1 m/frame along world x
        s.hist_pos[:, k] = m.root_pos + torch.tensor([k - 3.0, 0.0, 0.0], dtype=F64)
    traces = [torch.diagonal(s.root_cov, dim1=-2, dim2=-1).sum(-1)]
    for _ in range(3):
        s = filt.predict(s)
        traces.append(torch.diagonal(s.root_cov, dim1=-2, dim2=-1).sum(-1))
    assert all((b > a).all() for a, b in zip(traces, traces[1:]))
    np.testing.assert_allclose((s.root_pos - m.root_pos).numpy(), [[3.0, 0, 0], [3.0, 0, 0]], atol=1e-6)  # model runs in float32


def test_unexpected_turn_is_fused_not_gated():
    """A person turning faster than the prior expects: the rotation innovation is far outside the prior,
    the position is not. Gating on the rotation too locked such tracks out (every later update rejected)."""
    filt = GloProFilter(ConstantVelocityModel(torch.full((STEP_DIM,), 1e-6)))
    prior = init_state(measurement(1, 0), filt.history)
    turned = measurement(1, 0)
    turned.root_rot = turned.root_rot @ exp_so3(torch.tensor([[0.0, 0.0, 1.5]], dtype=F64))
    post, info = filt.update(prior, turned)
    assert info.fused[0] and info.nis[0] < 1e-9  # same position
    before, after = (torch.linalg.vector_norm(log_so3(x.transpose(-1, -2) @ turned.root_rot)) for x in
                     (prior.root_rot, post.root_rot))
    assert after < 0.6 * before  # moved towards the measurement (equal prior and measurement covariances)


def test_missed_turn_inflates_the_rotation_prior_by_its_nis():
    """Rotation innovation beyond adapt_nis: the update is the product with the prior's rotation block
    (and its cross-covariance) scaled to NIS / 3; within it, the plain product."""
    filt = GloProFilter(ConstantVelocityModel(torch.full((STEP_DIM,), 1e-6)))
    prior = init_state(measurement(2, 0), filt.history)
    # Correlated position and heading: cross block 0.3 L_p L_r^T (Cholesky factors of the two blocks), so the
    # whole is blockdiag(L_p, L_r) [[I, 0.3 I], [0.3 I, I]] blockdiag(L_p, L_r)^T, positive definite.
    l_p, l_r = torch.linalg.cholesky(prior.root_cov[:, :3, :3]), torch.linalg.cholesky(prior.root_cov[:, 3:, 3:])
    prior.root_cov[:, :3, 3:] = 0.3 * l_p @ l_r.transpose(-1, -2)
    prior.root_cov[:, 3:, :3] = prior.root_cov[:, :3, 3:].transpose(-1, -2)
    assert (torch.linalg.eigvalsh(prior.root_cov) > 0).all()
    meas = measurement(2, 0)
    angles = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 0.02]], dtype=F64)  # a missed turn; a small one
    meas.root_rot = prior.root_rot @ exp_so3(angles)
    meas.root_pos = prior.root_pos.clone()
    post, _ = filt.update(prior, meas)
    for i in range(2):
        p = prior.root_cov[i].numpy()
        e = angles[i].numpy()
        nis_rot = e @ np.linalg.solve(p[3:, 3:] + meas.root_rot_cov[i].numpy(), e)
        d = np.sqrt(np.r_[np.ones(3), np.full(3, nis_rot / 3 if nis_rot > filt.adapt_nis else 1.0)])
        assert (nis_rot > filt.adapt_nis) == (i == 0)
        r = np.zeros((6, 6))
        r[:3, :3], r[3:, 3:] = meas.root_pos_cov[i].numpy(), meas.root_rot_cov[i].numpy()
        mean, cov = product_of_gaussians(np.zeros(6), d[:, None] * p * d[None], np.r_[np.zeros(3), e], r)
        np.testing.assert_allclose(log_so3(prior.root_rot[i].T @ post.root_rot[i]).numpy(), mean[3:], atol=1e-9)
        np.testing.assert_allclose(post.root_pos[i].numpy() - prior.root_pos[i].numpy(), mean[:3], atol=1e-9)
        np.testing.assert_allclose(post.root_cov[i].numpy(), cov, atol=1e-10)


def test_outlier_is_gated_out_and_keeps_prediction():
    filt = GloProFilter(ConstantVelocityModel(torch.full((STEP_DIM,), 1e-4)))
    prior = init_state(measurement(1, 0), filt.history)
    far = measurement(1, 0)
    far.root_pos = far.root_pos + 50.0
    post, info = filt.update(prior, far)
    assert not info.fused[0] and info.nis[0] > filt.gate_nis
    torch.testing.assert_close(post.root_pos, prior.root_pos)
    torch.testing.assert_close(post.root_cov, prior.root_cov)


def test_valid_measurements_flags_nan_and_non_positive_definite():
    m = measurement(4, 0)
    m.root_pos[1, 0] = float("nan")
    m.root_rot_cov[2] = -torch.eye(3, dtype=F64)
    m.pose_cov[3, 7] = torch.tensor([[1.0, 2.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=F64)
    assert valid_measurements(m).tolist() == [True, False, False, False]


def test_camera_to_world_moves_mean_and_rotates_covariance():
    m = measurement(1, 0)
    pose = torch.eye(4, dtype=F64)[None].clone()
    pose[0, :3, :3] = exp_so3(torch.tensor([0.0, 0.0, 0.5], dtype=F64))
    pose[0, :3, 3] = torch.tensor([1.0, 2.0, 3.0], dtype=F64)
    w = camera_to_world(m, pose)
    r = pose[0, :3, :3]
    torch.testing.assert_close(w.root_pos[0], r @ m.root_pos[0] + pose[0, :3, 3])
    torch.testing.assert_close(w.root_pos_cov[0], r @ m.root_pos_cov[0] @ r.T)
    torch.testing.assert_close(w.root_rot_cov, m.root_rot_cov)  # right perturbation: frame-independent


def test_learned_model_shapes_and_state_export():
    model = TemporalConvMotionModel(history=8, width=16)
    filt = GloProFilter(model)
    s = filt.predict(init_state(measurement(3, 0), filt.history))
    mean, var = filt.motion_prior(s)
    assert mean.shape == var.shape == (3, STEP_DIM) and (var > 0).all()
    g = to_gaussian_state(s)
    assert g.cov.shape == (3, 85, 85)
    torch.testing.assert_close(g.root_cov, s.root_cov)
