"""Simulator: deterministic from its seed, and its measurements follow the stated noise model."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from glopro_ros.core.body_model import BodyModel
from glopro_ros.core.mocap import TEST_SPLIT, load_split
from glopro_ros.core.simulate import SimConfig, simulate


@pytest.fixture(scope="module")
def clips():
    rest = BodyModel(device="cpu").rest_joints(torch.zeros(1, 10))[0].numpy()
    return load_split(TEST_SPLIT, 30.0, rest)


def test_same_seed_same_sequence_other_seed_differs(clips):
    cfg = SimConfig(num_people=3, duration=5.0)
    a, b, c = simulate(clips, cfg, 7), simulate(clips, cfg, 7), simulate(clips, cfg, 8)
    for f in dataclasses.fields(a):
        va, vb = getattr(a, f.name), getattr(b, f.name)
        if isinstance(va, np.ndarray):
            np.testing.assert_array_equal(va, vb, err_msg=f.name)
    assert not np.array_equal(a.cam_true, c.cam_true)


def test_measurements_follow_stated_noise_model(clips):
    cfg = SimConfig(num_people=2, duration=10.0, occlusions_per_person=2.0)
    sims = [simulate(clips, cfg, s) for s in range(4)]
    z = []
    for sim in sims:
        assert not (sim.observed & ~sim.present).any() and not (sim.observed & sim.occluded).any()
        ok = sim.observed & ~sim.outlier
        r = sim.cam_true[:, None, :3, :3]
        p_cam = np.einsum("tpji,tpj->tpi", np.broadcast_to(r, sim.gt_root_pos.shape + (3,)),
                          sim.gt_root_pos - sim.cam_true[:, None, :3, 3])
        err = (sim.meas_root_pos - p_cam)[ok]
        std = np.sqrt(np.diagonal(sim.meas_root_pos_cov[ok], axis1=-2, axis2=-1))
        z.append(err / std)
        # Depth is far less certain than the image-plane position.
        assert (std[:, 2] > 3 * std[:, 0]).all()
    assert all(s.occluded.any() for s in sims) and any(s.outlier.any() for s in sims)
    z = np.concatenate(z)
    np.testing.assert_allclose(z.std(0), 1.0, atol=0.1)
    # SLAM differs from the truth, by a small drift.
    gap = np.linalg.norm(sims[0].cam_slam[:, :3, 3] - sims[0].cam_true[:, :3, 3], axis=-1)
    assert 0 < gap.max() < 0.2


def test_occlusion_intervals_last_one_to_two_seconds(clips):
    sim = simulate(clips, SimConfig(num_people=1, occlusions_per_person=3.0), 3)
    occ = sim.occluded[:, 0].astype(int)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], occ, [0]])))
    starts, ends = edges[::2], edges[1::2]
    lengths = (ends - starts) / sim.config.fps
    inside = ends < np.flatnonzero(sim.present[:, 0])[-1]  # not cut short by the clip's end
    assert inside.any()
    assert (lengths[inside] >= 1.0 - 1e-9).all() and (lengths <= 4.0 + 1e-9).all()  # overlaps may merge


def test_simulate_rejects_wrong_rate(clips):
    with pytest.raises(ValueError, match="fps"):
        simulate(clips, SimConfig(fps=25.0), 0)
