"""Multi-person tracker around GloProFilter: association, track life cycle, stable IDs, bad-input guard.

Per frame: predict every track to the frame's stamp (several motion steps if frames were skipped,
at most `max_steps_per_frame`, the rest of a long gap as one stretched step),
associate detections by the root position's Gaussian likelihood (Hungarian assignment with scipy's
linear_sum_assignment on the negative log-likelihood, chi-square gate on the Mahalanobis distance;
confirmed tracks first, then tentative ones), fuse
matched pairs, coast unmatched tracks
(prediction only, uncertainty grows), start tentative tracks from unmatched detections, confirm
them after a few hits and delete tracks that stay unobserved too long. Measurements with NaN,
non-positive-definite covariances or stamps older than the tracks are rejected and counted, never
fused; a frame stamp going backwards (bag loop, clock reset) resets the tracker.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from scipy.stats import chi2

from glopro_ros.core.fusion import FilterState, GloProFilter, Measurement, init_state, valid_measurements


class TrackStatus(IntEnum):
    TENTATIVE = 0
    CONFIRMED = 1
    OCCLUDED = 2  # confirmed, currently predicted only


@dataclass(frozen=True)
class TrackerConfig:
    fps: float = 30.0  # the motion model's step rate
    max_steps_per_frame: int = 4  # motion steps per frame at most; a longer gap ends in one stretched step
    gate_prob: float = 0.999  # association gate on the 3-dof root position distance
    confirm_hits: int = 3
    tentative_max_misses: int = 2
    max_coast_s: float = 3.0
    max_position_std: float = 2.0  # m; a track more uncertain than this is dropped


@dataclass
class TrackerOutput:
    """One frame: tracks alive after the update (same order everywhere)."""

    stamp: float
    ids: np.ndarray  # (N,) stable track ids
    status: np.ndarray  # (N,) TrackStatus
    state: FilterState | None  # N tracks (None before the first detection)
    detection: np.ndarray  # (N,) index of the fused input detection, -1 when none


@dataclass
class TrackerCounters:
    rejected_invalid: int = 0  # NaN / non-PD covariance
    rejected_stale: int = 0  # stamp older than the tracks
    gated_out: int = 0  # matched but rejected by the filter's outlier gate
    resets: int = 0
    extra: dict = field(default_factory=dict)


class MultiPersonTracker:
    def __init__(self, filt: GloProFilter, config: TrackerConfig | None = None) -> None:
        self.filter = filt
        self.config = config or TrackerConfig()
        self.counters = TrackerCounters()
        self._gate = float(chi2.ppf(self.config.gate_prob, 3))
        self.reset()

    def reset(self) -> None:
        self.state: FilterState | None = None
        self.ids = np.zeros(0, dtype=np.int64)
        self.status = np.zeros(0, dtype=np.int64)
        self.hits = np.zeros(0, dtype=np.int64)
        self.misses = np.zeros(0, dtype=np.int64)
        self.stamp: float | None = None
        self._next_id = 0

    def step(self, stamp: float, detections: Measurement, detection_stamps: np.ndarray | None = None) -> TrackerOutput:
        """Process one frame of world-frame detections (B may be 0)."""
        if self.stamp is not None and stamp < self.stamp:
            self.counters.resets += 1
            self.reset()
        n_in = len(detections)
        dstamps = np.full(n_in, stamp) if detection_stamps is None else np.asarray(detection_stamps)
        with torch.inference_mode():  # read-only checks: no autograd bookkeeping per op
            valid = valid_measurements(detections).numpy()
        stale = (dstamps < self.stamp) if self.stamp is not None else np.zeros(n_in, dtype=bool)
        self.counters.rejected_invalid += int((~valid).sum())
        self.counters.rejected_stale += int((valid & stale).sum())
        keep = np.flatnonzero(valid & ~stale)
        dets = detections if len(keep) == n_in else detections.select(torch.as_tensor(keep, dtype=torch.long))

        if len(self.ids):
            self._predict(int(round((stamp - self.stamp) * self.config.fps)))
        self.stamp = stamp

        det_of_track = np.full(len(self.ids), -1)
        used = np.zeros(len(dets), dtype=bool)
        if len(self.ids) and len(dets):
            d2, logdet = self._distances(self.state, dets)
            # Cost = negative log-likelihood (up to a constant): with the bare Mahalanobis distance a
            # track coasting through an occlusion, whose covariance has grown, would take a nearby
            # person's detection from that person's own tight track.
            cost = np.where(d2 <= self._gate, d2 + logdet, np.inf)
            # Cascade: established tracks choose first, so a fresh (wide) tentative track cannot
            # steal their detections; tentative tracks share what is left.
            rows, cols = self._assign(cost, self.status != TrackStatus.TENTATIVE, used)
            used[cols] = True
            rows_t, cols_t = self._assign(cost, self.status == TrackStatus.TENTATIVE, used)
            used[cols_t] = True
            rows, cols = np.concatenate([rows, rows_t]), np.concatenate([cols, cols_t])
            if len(rows):
                # The same rows in the same order (every track, every detection): no copies.
                every_track = _is_range(rows, len(self.ids))
                updated, info = self.filter.update(
                    self.state if every_track else self.state.select(torch.as_tensor(rows)),
                    dets if _is_range(cols, len(dets)) else dets.select(torch.as_tensor(cols)))
                self.state = updated if every_track else self.state.replace_rows(torch.as_tensor(rows), updated)
                fused = info.fused.numpy()
                self.counters.gated_out += int((~fused).sum())
                det_of_track[rows[fused]] = keep[cols[fused]]
            # No births inside an established track's gate (duplicates of a person already tracked).
            established = self.status != TrackStatus.TENTATIVE
            if established.any():
                used |= (d2[established] <= self._gate).any(0)

        hit = det_of_track >= 0
        self.hits = np.where(hit, self.hits + 1, self.hits)
        self.misses = np.where(hit, 0, self.misses + 1)
        confirmed = (self.status != TrackStatus.TENTATIVE) | (self.hits >= self.config.confirm_hits)
        self.status = np.where(confirmed, np.where(hit, TrackStatus.CONFIRMED, TrackStatus.OCCLUDED),
                               TrackStatus.TENTATIVE)
        alive = self._alive_mask()
        self._keep(alive)
        det_of_track = det_of_track[alive]

        new = np.flatnonzero(~used)
        if len(new):
            born = init_state(dets.select(torch.as_tensor(new)), self.filter.history)
            self.state = born if self.state is None else FilterState.cat([self.state, born])
            n = len(new)
            self.ids = np.concatenate([self.ids, self._next_id + np.arange(n)])
            self._next_id += n
            self.status = np.concatenate([self.status, np.full(n, TrackStatus.TENTATIVE)])
            self.hits = np.concatenate([self.hits, np.ones(n, dtype=np.int64)])
            self.misses = np.concatenate([self.misses, np.zeros(n, dtype=np.int64)])
            det_of_track = np.concatenate([det_of_track, keep[new]])
        return TrackerOutput(stamp, self.ids.copy(), self.status.copy(), self.state, det_of_track)

    def _predict(self, steps: int) -> None:
        """Predict `steps` motion steps; past max_steps_per_frame the rest is one stretched step, so a
        slow frame (a long gap to the next) cannot make the next frame slower still."""
        cap = self.config.max_steps_per_frame
        for _ in range(min(steps, cap - 1) if steps > cap else steps):
            self.state = self.filter.predict(self.state)
        if steps > cap:
            self.state = self.filter.predict(self.state, steps=float(steps - cap + 1))

    @staticmethod
    @torch.inference_mode()
    def _distances(s: FilterState, d: Measurement) -> tuple[np.ndarray, np.ndarray]:
        """(N, M) squared Mahalanobis distances of detection root positions to track predictions, and
        the log-determinants of their innovation covariances."""
        err = d.root_pos[None] - s.root_pos[:, None]  # (N, M, 3)
        cov = s.root_cov[:, None, :3, :3] + d.root_pos_cov[None]
        d2 = (err[..., None, :] @ torch.linalg.solve(cov, err[..., None]))[..., 0, 0]
        return d2.numpy(), torch.linalg.slogdet(cov)[1].numpy()

    @staticmethod
    def _assign(cost: np.ndarray, tracks: np.ndarray, taken: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Hungarian assignment (scipy) of the given tracks to the free detections; inf = outside the gate."""
        rows_all, cols_all = np.flatnonzero(tracks), np.flatnonzero(~taken)
        if not len(rows_all) or not len(cols_all):
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        sub = cost[np.ix_(rows_all, cols_all)]
        if sub.size == 1:  # one track, one detection: what linear_sum_assignment would answer
            return (rows_all, cols_all) if np.isfinite(sub[0, 0]) else (rows_all[:0], cols_all[:0])
        finite = np.isfinite(sub)
        # linear_sum_assignment needs finite costs: out-of-gate pairs get one more than any sum of real ones.
        big = np.abs(sub[finite]).sum() + 1.0 if finite.any() else 1.0
        r, c = linear_sum_assignment(np.where(finite, sub, big))
        ok = finite[r, c]
        return rows_all[r[ok]], cols_all[c[ok]]

    def _alive_mask(self) -> np.ndarray:
        cfg = self.config
        if not len(self.ids):
            return np.zeros(0, dtype=bool)
        with torch.inference_mode():
            std = torch.linalg.eigvalsh(self.state.root_cov[:, :3, :3])[:, -1].sqrt().numpy()
        dead = ((self.status == TrackStatus.TENTATIVE) & (self.misses >= cfg.tentative_max_misses)) \
            | (self.misses > cfg.max_coast_s * cfg.fps) | (std > cfg.max_position_std)
        return ~dead

    def _keep(self, alive: np.ndarray) -> None:
        if self.state is not None and not alive.all():
            self.state = self.state.select(torch.as_tensor(np.flatnonzero(alive)))
        self.ids, self.status = self.ids[alive], self.status[alive]
        self.hits, self.misses = self.hits[alive], self.misses[alive]


def _is_range(idx: np.ndarray, n: int) -> bool:
    """idx is 0, 1, ..., n-1."""
    return len(idx) == n and bool((idx == np.arange(n)).all())
