"""Metrics library: alignments, trajectory and smoothness errors, consistency statistics, ID switches."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from glopro_ros.core import metrics as M


@pytest.fixture
def walk() -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(250)[:, None, None] / 30.0
    return rng.normal(0, 0.3, (1, 24, 3)) + t * np.array([1.0, 0.2, 0.0]) + 0.01 * rng.normal(size=(250, 24, 3))


def similarity(x: np.ndarray, s: float = 1.3, seed: int = 1) -> np.ndarray:
    r = Rotation.random(random_state=seed).as_matrix()
    return s * x @ r.T + np.array([1.0, -2.0, 0.5])


def test_umeyama_recovers_similarity_and_rigid(walk):
    src = walk[0]
    s, r, t = M.umeyama(src, similarity(src))
    assert s == pytest.approx(1.3)
    np.testing.assert_allclose(r, Rotation.random(random_state=1).as_matrix(), atol=1e-10)
    s_rigid, _, _ = M.umeyama(src, similarity(src, s=1.0), with_scale=False)
    assert s_rigid == 1.0


def test_aligned_errors_vanish_under_similarity(walk):
    moved = similarity(walk)
    assert M.pa_mpjpe(moved, walk) < 1e-9
    assert M.w_mpjpe(moved, walk) < 1e-9
    assert M.wa_mpjpe(moved, walk) < 1e-9
    assert M.rte(similarity(walk[:, 0], s=1.0), walk[:, 0]) < 1e-9
    assert M.mpjpe(walk + 5.0, walk) < 1e-12


def test_g_mpjpe_is_heading_invariant_but_sees_drift(walk):
    yaw = Rotation.from_euler("z", 0.7).as_matrix()
    assert M.g_mpjpe(walk @ yaw.T + [3.0, 1.0, 0.0], walk) < 1e-9
    drift = walk + np.linspace(0, 0.2, len(walk))[:, None, None] * np.array([1.0, 0.0, 0.0])
    assert M.g_mpjpe(drift, walk) > 0.01


def test_accel_jitter_and_foot_sliding():
    t = np.arange(100)[:, None, None] / 30.0
    gt = np.zeros((100, 24, 3)) + t * np.array([1.0, 0.0, 0.0])
    assert M.accel_error(gt, gt, 30.0) == 0.0 and M.jitter(gt, 30.0) < 1e-9
    wobble = gt + 0.01 * (np.arange(100) % 2)[:, None, None] * np.array([0.0, 0.0, 1.0])
    # second difference of an alternating 1 cm offset: 2 cm per frame^2.
    assert M.accel_error(wobble, gt, 30.0) == pytest.approx(0.02 * 900, rel=1e-6)
    still = np.zeros((50, 24, 3))
    sliding = still + np.arange(50)[:, None, None] * np.array([0.005, 0.0, 0.0])
    assert M.foot_sliding(sliding, still) == pytest.approx(0.005)


def test_consistency_of_calibrated_and_overconfident_gaussians():
    rng = np.random.default_rng(0)
    cov = np.array([[0.04, 0.01, 0.0], [0.01, 0.02, 0.0], [0.0, 0.0, 0.09]])
    err = rng.multivariate_normal(np.zeros(3), cov, 20000)
    c = M.consistency(err, np.broadcast_to(cov, (20000, 3, 3)))
    assert c["anees_per_dim"] == pytest.approx(1.0, abs=0.03)
    assert c["in_bounds"] == pytest.approx(0.95, abs=0.01)
    over = M.consistency(err, np.broadcast_to(cov / 4, (20000, 3, 3)))
    assert over["anees_per_dim"] == pytest.approx(4.0, rel=0.05) and over["in_bounds"] < 0.5
    assert over["nll"] > c["nll"]


def test_id_switches():
    assigned = np.array([[0, 1], [0, 1], [2, -1], [2, 1], [0, 1]])
    assert M.id_switches(assigned) == 2
