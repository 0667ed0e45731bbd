"""Run trackers (or the image-only baseline) over simulated sequences and collect per-person estimates.

Shared by residual training, calibration and evaluation, so all of them see exactly the filter
the ROS node runs: detections go in unlabelled, in the world frame through the SLAM pose, and
estimates are matched back to the true people through the detections each track fused.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from glopro_ros.core.fusion import Measurement, camera_to_world
from glopro_ros.core.simulate import SimSequence
from glopro_ros.core.so3 import exp_so3, log_so3
from glopro_ros.core.tracker import MultiPersonTracker, TrackStatus

_F64 = torch.float64


@dataclass
class Estimates:
    """Per frame and true person: the estimate of the track that follows them (NaN / False where none)."""

    has: np.ndarray  # (T, P) bool
    track_id: np.ndarray  # (T, P) int, -1 where none
    status: np.ndarray  # (T, P) int TrackStatus, -1 where none
    root_pos: np.ndarray  # (T, P, 3)
    root_rot: np.ndarray  # (T, P, 3, 3)
    root_cov: np.ndarray  # (T, P, 6, 6) [position, theta]
    pose: np.ndarray  # (T, P, 23, 3, 3)
    pose_cov: np.ndarray  # (T, P, 23, 3, 3)
    betas: np.ndarray  # (T, P, 10)


def _empty(T: int, P: int) -> Estimates:
    return Estimates(np.zeros((T, P), bool), np.full((T, P), -1), np.full((T, P), -1),
                     np.full((T, P, 3), np.nan), np.full((T, P, 3, 3), np.nan), np.full((T, P, 6, 6), np.nan),
                     np.full((T, P, 23, 3, 3), np.nan), np.full((T, P, 23, 3, 3), np.nan), np.full((T, P, 10), np.nan))


def frame_measurements(sim: SimSequence, t: int) -> tuple[Measurement, np.ndarray]:
    """World-frame detections of frame t (through the SLAM pose) and the true person of each."""
    people = np.flatnonzero(sim.observed[t])
    g = {k: torch.as_tensor(getattr(sim, k)[t, people], dtype=_F64) for k in (
        "meas_root_pos", "meas_root_pos_cov", "meas_root_rot", "meas_root_rot_cov", "meas_body_pose",
        "meas_body_pose_cov", "meas_betas", "meas_betas_cov")}
    cam = Measurement(g["meas_root_pos"], g["meas_root_pos_cov"], g["meas_root_rot"], g["meas_root_rot_cov"],
                      exp_so3(g["meas_body_pose"]), g["meas_body_pose_cov"], g["meas_betas"], g["meas_betas_cov"])
    world = camera_to_world(cam, torch.as_tensor(sim.cam_slam[t:t + 1], dtype=_F64),
                            torch.as_tensor(sim.slam_cov, dtype=_F64))
    return world, people


def run_tracker(sim: SimSequence, tracker: MultiPersonTracker, confirmed_only: bool = True) -> Estimates:
    """Track a whole sequence; a person's estimate is the track that last fused one of their detections."""
    T, P = sim.num_frames, sim.num_people
    est = _empty(T, P)
    follow = np.full(P, -1)
    tracker.reset()
    for t in range(T):
        dets, people = frame_measurements(sim, t)
        out = tracker.step(float(sim.stamps[t]), dets)
        for i, d in enumerate(out.detection):
            if d >= 0:
                follow[people[d]] = out.ids[i]
        for p in range(P):
            idx = np.flatnonzero(out.ids == follow[p])
            if not len(idx) or not sim.present[t, p]:
                continue
            i = int(idx[0])
            if confirmed_only and out.status[i] == TrackStatus.TENTATIVE:
                continue
            s = out.state
            est.has[t, p], est.track_id[t, p], est.status[t, p] = True, out.ids[i], out.status[i]
            est.root_pos[t, p], est.root_rot[t, p] = s.root_pos[i].numpy(), s.root_rot[i].numpy()
            est.root_cov[t, p], est.pose[t, p] = s.root_cov[i].numpy(), s.pose[i].numpy()
            est.pose_cov[t, p], est.betas[t, p] = s.pose_cov[i].numpy(), s.betas[i].numpy()
    return est


def run_image_only(sim: SimSequence) -> Estimates:
    """Baseline: each frame's own measurement in the world, held through frames without one."""
    T, P = sim.num_frames, sim.num_people
    est = _empty(T, P)
    for t in range(T):
        dets, people = frame_measurements(sim, t)
        if t > 0:
            for name in ("has", "root_pos", "root_rot", "root_cov", "pose", "pose_cov", "betas"):
                getattr(est, name)[t] = getattr(est, name)[t - 1]
            est.has[t] &= sim.present[t]
        for i, p in enumerate(people):
            est.has[t, p] = True
            est.root_pos[t, p], est.root_rot[t, p] = dets.root_pos[i].numpy(), dets.root_rot[i].numpy()
            est.root_cov[t, p] = 0.0
            est.root_cov[t, p, :3, :3] = dets.root_pos_cov[i].numpy()
            est.root_cov[t, p, 3:, 3:] = dets.root_rot_cov[i].numpy()
            est.pose[t, p], est.pose_cov[t, p] = dets.pose[i].numpy(), dets.pose_cov[i].numpy()
            est.betas[t, p] = dets.betas[i].numpy()
    return est


@dataclass
class BlockErrors:
    """Errors (truth relative to the estimate, in the state's tangent space) and covariances, frames with both."""

    root_pos: np.ndarray  # (N, 3)
    root_pos_cov: np.ndarray  # (N, 3, 3)
    root_rot: np.ndarray  # (N, 3) log(R_hat^T R)
    root_rot_cov: np.ndarray  # (N, 3, 3)
    pose: np.ndarray  # (N, 23, 3)
    pose_cov: np.ndarray  # (N, 23, 3, 3)


def block_errors(sim: SimSequence, est: Estimates, p: int, frames: np.ndarray | None = None) -> BlockErrors:
    """Per-block errors of person p on the frames where the person is present and estimated."""
    m = est.has[:, p] & sim.present[:, p]
    if frames is not None:
        m &= frames
    t = lambda x: torch.as_tensor(x, dtype=_F64)  # noqa: E731
    rot_err = log_so3(t(est.root_rot[m, p]).transpose(-1, -2) @ t(sim.gt_root_rot[m, p])).numpy()
    pose_err = log_so3(t(est.pose[m, p]).transpose(-1, -2) @ exp_so3(t(sim.gt_body_pose[m, p]))).numpy()
    return BlockErrors(sim.gt_root_pos[m, p] - est.root_pos[m, p], est.root_cov[m, p, :3, :3], rot_err,
                       est.root_cov[m, p, 3:, 3:], pose_err, est.pose_cov[m, p])
