"""Multi-person tracker: crossing people keep their IDs, occlusions coast, bad input is rejected and counted."""
from __future__ import annotations

import numpy as np
import torch

from glopro_ros.core.fusion import GloProFilter, Measurement
from glopro_ros.core.metrics import id_switches
from glopro_ros.core.motion_model import STEP_DIM, ConstantVelocityModel
from glopro_ros.core.tracker import MultiPersonTracker, TrackStatus

F64 = torch.float64
FPS = 30.0


def make_tracker(step_var: float = 1e-4) -> MultiPersonTracker:
    var = torch.full((STEP_DIM,), step_var)
    return MultiPersonTracker(GloProFilter(ConstantVelocityModel(var, history=8)))


def detections(positions: np.ndarray, sigma: float = 0.05) -> Measurement:
    b = len(positions)
    eye = lambda d: torch.eye(d, dtype=F64).repeat(b, 1, 1)  # noqa: E731
    return Measurement(torch.as_tensor(positions, dtype=F64), sigma**2 * eye(3), eye(3), 0.01 * eye(3),
                       torch.eye(3, dtype=F64).repeat(b, 23, 1, 1), 0.01 * torch.eye(3, dtype=F64).repeat(b, 23, 1, 1),
                       torch.zeros(b, 10, dtype=F64), 0.1 * eye(10))


def test_crossing_people_keep_their_ids():
    rng = np.random.default_rng(1)
    tracker = make_tracker()
    T = int(4 * FPS)
    assigned = np.full((T, 2), -1)
    for t in range(T):
        y = -2.0 + t / FPS  # 1 m/s towards each other, passing 0.6 m apart at t = 2 s
        truth = np.array([[0.3, y, 1.0], [-0.3, -y, 1.0]])
        order = rng.permutation(2)  # detections come unlabelled, in any order
        out = tracker.step(t / FPS, detections(truth[order] + rng.normal(0, 0.05, (2, 3))))
        for i, d in enumerate(out.detection):
            if d >= 0 and out.status[i] == TrackStatus.CONFIRMED:
                assigned[t, order[d]] = out.ids[i]
    assert id_switches(assigned) == 0
    assert len(np.unique(assigned[assigned >= 0])) == 2
    assert (assigned[-1] >= 0).all()


def test_occluded_person_coasts_with_growing_uncertainty_and_keeps_id():
    tracker = make_tracker()
    ids, traces = [], []
    for t in range(int(4 * FPS)):
        pos = np.array([[1.0 * t / FPS, 0.0, 1.0]])
        hidden = 45 <= t < 90  # 1.5 s occlusion
        out = tracker.step(t / FPS, detections(pos if not hidden else np.zeros((0, 3))))
        assert len(out.ids) == 1
        ids.append(out.ids[0])
        traces.append(float(torch.diagonal(out.state.root_cov[0, :3, :3]).sum()))
        if hidden:
            assert out.status[0] == TrackStatus.OCCLUDED
    assert len(set(ids)) == 1
    assert all(b > a for a, b in zip(traces[45:89], traces[46:90]))
    assert traces[120 - 1] < traces[89]  # shrinks again once seen


def test_bad_input_is_rejected_counted_and_time_reversal_resets():
    tracker = make_tracker()
    tracker.step(0.0, detections(np.array([[0.0, 0.0, 1.0]])))
    bad = detections(np.array([[np.nan, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0]]))
    bad.root_pos_cov[1] = -bad.root_pos_cov[1]  # not positive definite
    out = tracker.step(1 / FPS, bad, detection_stamps=np.array([1 / FPS, 1 / FPS, -1.0]))
    assert tracker.counters.rejected_invalid == 2 and tracker.counters.rejected_stale == 1
    assert (out.detection == -1).all() and len(out.ids) == 1  # nothing fused, nothing born
    tracker.step(0.5, detections(np.array([[0.0, 0.0, 1.0]])))
    out = tracker.step(0.2, detections(np.array([[5.0, 0.0, 1.0]])))  # time went backwards
    assert tracker.counters.resets == 1
    assert len(out.ids) == 1 and out.status[0] == TrackStatus.TENTATIVE


def test_coasting_track_does_not_take_a_nearby_persons_detection():
    """A track widened by a long occlusion must not win a detection that sits on another person's tight track."""
    tracker = make_tracker(step_var=1e-2)  # after 2 s of coasting the hidden track's std is about 0.8 m
    rng = np.random.default_rng(1)
    a, b = np.array([0.0, 0.0, 1.0]), np.array([1.2, 0.0, 1.0])  # two people standing 1.2 m apart
    for t in range(int(3 * FPS)):
        hidden = t >= 15  # person a vanishes after 0.5 s; b stays observed
        seen = np.array([b]) if hidden else np.array([a, b])
        out = tracker.step(t / FPS, detections(seen + rng.normal(0, 0.06, seen.shape), sigma=0.03))  # 2x the stated noise
        if t == 14:
            id_a, id_b = out.ids[out.detection == 0][0], out.ids[out.detection == 1][0]
        if hidden and t > 20:
            assert out.ids[out.detection == 0].tolist() == [id_b]
    assert id_a in out.ids  # still coasting


def test_long_gap_costs_a_bounded_number_of_predictions_and_keeps_velocity():
    tracker = make_tracker()
    calls = []
    predict = tracker.filter.predict
    tracker.filter.predict = lambda s, steps=1.0: calls.append(steps) or predict(s, steps)
    for t in range(30):  # walk at 1 m/s along x
        tracker.step(t / FPS, detections(np.array([[t / FPS, 0.0, 1.0]]), sigma=0.01))
    calls.clear()
    out = tracker.step(59 / FPS, detections(np.zeros((0, 3))))  # 30 frames (1 s) later, nobody seen
    assert len(calls) == tracker.config.max_steps_per_frame
    assert sum(calls) == 30
    np.testing.assert_allclose(out.state.root_pos[0].numpy(), [59 / FPS, 0.0, 1.0], atol=0.05)
