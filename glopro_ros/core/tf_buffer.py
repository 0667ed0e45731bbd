"""A tf2-like buffer of time-stamped transforms: interpolation, chaining, extrapolation limits.

Used where tf2_ros is not installed (the PyPI-wheel ROS 2) and by offline replay, so both see
the same camera poses. The transform tree and path chaining are pytransform3d's
TemporalTransformManager; this module adds what tf2 does on top: a bounded history per edge,
static edges, tf2's interpolation between the two bracketing samples, and refusal to extrapolate
beyond a stated limit (tf2 raises ExtrapolationException; a wrong camera pose is worse than none).
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import numpy as np
from pytransform3d.rotations import quaternion_slerp
from pytransform3d.transform_manager import StaticTransform, TemporalTransformManager, TimeVaryingTransform
from pytransform3d.transformations import transform_from_pq


class TransformLookupError(LookupError):
    """A transform is unknown, not connected, or not available at the requested time."""


class UnknownFrameError(TransformLookupError):
    """A frame has not been seen (yet)."""


class ExtrapolationError(TransformLookupError):
    """The requested time is outside an edge's history by more than the allowed extrapolation."""


@dataclass
class _EdgeHistory(TimeVaryingTransform):
    """Samples of one parent<-child transform, as position + quaternion (w, x, y, z) rows."""

    cache_time: float
    max_extrapolation: float
    times: list[float] = field(default_factory=list)
    pqs: list[np.ndarray] = field(default_factory=list)
    name: str = ""

    def add(self, stamp: float, pq: np.ndarray) -> None:
        index = bisect.bisect_left(self.times, stamp)
        if index < len(self.times) and self.times[index] == stamp:
            self.pqs[index] = pq
        else:
            self.times.insert(index, stamp)
            self.pqs.insert(index, pq)
        oldest_kept = self.times[-1] - self.cache_time
        drop = bisect.bisect_left(self.times, oldest_kept)
        if drop:
            del self.times[:drop], self.pqs[:drop]

    def check_transforms(self) -> "_EdgeHistory":
        """Samples are validated and normalised in TransformBuffer.set_transform."""
        return self

    def as_matrix(self, query_time: float) -> np.ndarray:
        t = float(query_time)
        first, last = self.times[0], self.times[-1]
        if t < first - self.max_extrapolation or t > last + self.max_extrapolation:
            raise ExtrapolationError(
                f"{self.name}: requested time {t:.3f} is outside the buffered [{first:.3f}, {last:.3f}] "
                f"by more than {self.max_extrapolation:.3f} s")
        if len(self.times) == 1 or t <= first or t >= last:
            return transform_from_pq(self.pqs[0 if t <= first else -1])
        # As tf2: translation interpolated linearly, rotation by slerp (not ScLERP's screw path).
        i = bisect.bisect_right(self.times, t) - 1
        (t0, t1), (a, b) = self.times[i:i + 2], self.pqs[i:i + 2]
        u = (t - t0) / (t1 - t0)
        return transform_from_pq(np.concatenate([(1 - u) * a[:3] + u * b[:3], quaternion_slerp(a[3:], b[3:], u)]))


class TransformBuffer:
    """Transform tree over time. Times are float seconds; frames are strings.

    ``set_transform(parent, child, ...)`` stores the pose of ``child`` in ``parent`` (tf2's
    TransformStamped); ``lookup(target, source, t)`` returns T_target_source (4x4), which maps
    points in ``source`` coordinates into ``target`` coordinates.
    """

    def __init__(self, cache_time: float = 10.0, max_extrapolation: float = 0.0) -> None:
        if cache_time <= 0 or max_extrapolation < 0:
            raise ValueError("cache_time must be > 0 and max_extrapolation >= 0")
        self.cache_time = cache_time
        self.max_extrapolation = max_extrapolation
        self._tree = TemporalTransformManager(strict_check=True, check=False)
        self._parent: dict[str, str] = {}
        self._edges: dict[str, _EdgeHistory | StaticTransform] = {}

    def clear(self) -> None:
        """Forget the history of every moving transform (time jumped backwards, as a looping bag does).

        Static transforms stay, as in tf2: /tf_static is latched and sent once, so a publisher would
        never resend what a clear dropped.
        """
        for child, edge in list(self._edges.items()):
            if not isinstance(edge, StaticTransform):
                self._tree.remove_transform(child, self._parent.pop(child))
                del self._edges[child]

    def set_transform(self, parent: str, child: str, stamp: float, translation: np.ndarray,
                      quaternion_xyzw: np.ndarray, static: bool = False) -> None:
        """Add one sample of child's pose in parent; raises ValueError for non-finite input."""
        if not parent or not child or parent == child:
            raise ValueError(f"invalid frame names: parent '{parent}', child '{child}'")
        translation = np.asarray(translation, dtype=float).reshape(3)
        quaternion = np.asarray(quaternion_xyzw, dtype=float).reshape(4)
        norm = np.linalg.norm(quaternion)
        if not (np.all(np.isfinite(translation)) and np.all(np.isfinite(quaternion)) and np.isfinite(stamp)) or norm < 1e-6:
            raise ValueError(f"transform {parent} -> {child}: non-finite values or zero quaternion")
        x, y, z, w = quaternion / norm
        pq = np.array([*translation, w, x, y, z])
        if self._parent.get(child) not in (None, parent):
            self._tree.remove_transform(child, self._parent[child])
            del self._edges[child]
        self._parent[child] = parent
        if static:
            edge: _EdgeHistory | StaticTransform = StaticTransform(transform_from_pq(pq))
        else:
            edge = self._edges.get(child)
            if not isinstance(edge, _EdgeHistory):
                edge = _EdgeHistory(self.cache_time, self.max_extrapolation, name=f"{parent} -> {child}")
            edge.add(float(stamp), pq)
        if self._edges.get(child) is not edge:
            self._edges[child] = edge
            self._tree.add_transform(child, parent, edge)

    def frames(self) -> set[str]:
        """All frames seen so far."""
        return set(self._parent) | set(self._parent.values())

    def lookup(self, target: str, source: str, stamp: float) -> np.ndarray:
        """T_target_source at ``stamp``; raises TransformLookupError saying why it is unavailable."""
        if target == source:
            return np.eye(4)
        for frame in (target, source):
            if frame not in self.frames():
                raise UnknownFrameError(f"frame '{frame}' does not exist (known: {sorted(self.frames())})")
        try:
            return np.asarray(self._tree.get_transform_at_time(source, target, float(stamp)))
        except ExtrapolationError:
            raise
        except KeyError as error:
            raise TransformLookupError(f"'{source}' and '{target}' are not connected in one tree") from error
