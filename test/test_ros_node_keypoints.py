"""The glopro node over real DDS with simulated keypoint detections and a moving camera.

test/players/keypoint_player.py plays a simulated scene (2 people on held-out CMU motion, a robot
driving and panning its camera, SLAM drift in TF, detector-like BlazePose noise, occlusions and
missed detections) in real time and publishes the true people on /ground_truth with the same
stamps as the detections. The node (input:=keypoints) must put confirmed tracks where the people
are in the map frame, keep one ID per person, and never publish a NaN or an invalid covariance.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from ros_listener import RosListener
from tf2_msgs.msg import TFMessage
from visualization_msgs.msg import MarkerArray

from glopro_ros.msg import HumanState, HumanStateArray

PLAYER = Path(__file__).parent / "players" / "keypoint_player.py"
WEIGHTS = Path(__file__).resolve().parents[1] / "glopro_ros" / "data" / "weights" / "fusion_residual.pt"
SCENE = ["--people", "2", "--duration", "10", "--rate", "15", "--seed", "39"]
WARMUP_S = 1.0  # a new track needs a few detections before its depth has settled
# Pelvis tolerance: 0.10 x the camera distance plus 0.10 m. One lifted frame is within 0.15 x the
# distance (the perception target, docs/perception.md); the filter averages several frames of
# independent detector noise, so a track must do better, except for what no filter removes: SLAM
# drift in TF (centimetres over this drive), the motion model's lag as people turn, and the
# simulated detector's per-landmark bias. The people are 3.1-5.8 m away and at least 2 m apart
# here; distance is measured on the ground plane from the robot base, which carries the camera.
# Checked on the median over each person's confirmed outputs (the simulator injects outlier
# frames); 95% must be within twice that. Measured: medians 0.09-0.23 m (glopro and glopro_nores).
REL_TOLERANCE, ABS_TOLERANCE = 0.10, 0.10
NODE_EXTRA: list[str] = []  # more node parameters (e.g. ["-p", "filter_variant:=cv"])
MARKER_RATE = 5.0  # Hz: a third of the frames at most, so the node has frames to leave out


def _seconds(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


class Collector(RosListener):
    """Collects the node's /humans and the player's /ground_truth in this (test) process."""

    def __init__(self, env: dict[str, str]) -> None:
        super().__init__("keypoint_test_listener", env)
        self.humans: list[HumanStateArray] = []
        self.marker_stamps: list[float] = []
        self.truth: dict[float, HumanStateArray] = {}
        self.base_xy: dict[float, np.ndarray] = {}  # robot position in map per stamp (camera distance)
        self.subscribe(HumanStateArray, "humans", self.humans.append)
        self.subscribe(MarkerArray, "markers", lambda m: self.marker_stamps.append(_seconds(m.markers[0].header.stamp)))
        self.subscribe(HumanStateArray, "/ground_truth", lambda m: self.truth.__setitem__(_seconds(m.header.stamp), m))
        self.subscribe(TFMessage, "/tf", self._on_tf)

    def _on_tf(self, msg: TFMessage) -> None:
        for tf in msg.transforms:
            if tf.child_frame_id == "base_link":
                self.base_xy[_seconds(tf.header.stamp)] = np.array([tf.transform.translation.x,
                                                                    tf.transform.translation.y])


@contextmanager
def _scene(ros_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[Collector, subprocess.Popen, subprocess.Popen]]:
    """Node + collector + player (logs node.log, player.log in tmp_path), stopped on exit."""
    collector = Collector(ros_env)  # first: if it fails, no process is left running
    node = subprocess.Popen([sys.executable, "-m", "glopro_ros.ros.node", "--ros-args", "-p", "device:=cpu",
                             "-p", "input:=keypoints", "-p", "marker_mesh:=false", "-p", f"marker_rate:={MARKER_RATE}",
                             *NODE_EXTRA],
                            env=ros_env, stdout=(tmp_path / "node.log").open("w"), stderr=subprocess.STDOUT)
    # Plays once the node and this collector listen (the node subscribes after loading its models).
    player = subprocess.Popen([sys.executable, str(PLAYER), *SCENE, "--wait-subscribers", "1"],
                              env=ros_env, stdout=(tmp_path / "player.log").open("w"), stderr=subprocess.STDOUT)
    try:
        yield collector, node, player
    finally:
        collector.close()
        for process in (player, node):
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=20)


@pytest.fixture()
def played(ros_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[Collector, Path]]:
    """Yields once the player has played the whole scene."""
    if not WEIGHTS.is_file():
        pytest.skip(f"needs {WEIGHTS} (the trained fusion residual)")
    with _scene(ros_env, tmp_path) as (collector, _, player):
        player.wait(timeout=60)
        time.sleep(1.0)  # the node's last frame
        assert player.returncode == 0, (tmp_path / "player.log").read_text()[-3000:]
        yield collector, tmp_path / "node.log"


def test_node_keeps_tracking_when_its_lifting_process_dies(ros_env: dict[str, str], tmp_path: Path) -> None:
    """The lifting child killed mid-scene: the node says so and lifts in its worker from then on."""
    node_log = tmp_path / "node.log"
    with _scene(ros_env, tmp_path) as (collector, node, player):
        assert collector.wait_for(lambda: len(collector.humans) >= 5, 90), node_log.read_text()[-3000:]
        child = re.search(r"lifting in process (\d+)", node_log.read_text())
        assert child, node_log.read_text()[-3000:]
        os.kill(int(child.group(1)), signal.SIGKILL)
        before = len(collector.humans)
        player.wait(timeout=60)
        time.sleep(1.0)
        log = node_log.read_text()
        assert node.poll() is None, log[-3000:]
        assert "the lifting process stopped" in log, log[-3000:]
        # About 7 s of the 10 s scene remain at 15 Hz; a loaded CI machine processes fewer of them.
        after = [m for m in collector.humans[before:] if m.humans]
        assert len(after) >= 10, f"{len(after)} outputs with people after the kill; {log[-3000:]}"
        assert all(np.all(np.isfinite(h.joint_positions)) for m in after for h in m.humans)


def _position(h: HumanState) -> np.ndarray:
    p = h.root_pose.pose.position
    return np.array([p.x, p.y, p.z])


def _assign(msg: HumanStateArray, truth: HumanStateArray) -> list[tuple[int, int, float]]:
    """(track id, nearest true person id, pelvis error m) per confirmed track of one output."""
    true_pos = {h.track_id: _position(h) for h in truth.humans}
    rows = []
    for h in msg.humans:
        if h.status != HumanState.STATUS_CONFIRMED or not true_pos:
            continue
        p = _position(h)
        person, error = min(((i, float(np.linalg.norm(p - q))) for i, q in true_pos.items()), key=lambda r: r[1])
        rows.append((h.track_id, person, error))
    return rows


def test_node_tracks_simulated_people_from_keypoints(played) -> None:
    collector, node_log = played
    log = node_log.read_text()
    assert collector.humans, log[-3000:]
    # Nothing invalid is ever published (any status, any frame).
    for msg in collector.humans:
        for h in msg.humans:
            if h.status == HumanState.STATUS_LOST:
                continue
            values = [h.root_pose.covariance, h.root_twist.covariance, h.joint_positions, h.joint_covariances,
                      h.body_pose, h.body_pose_variance, h.betas, h.betas_variance]
            assert all(np.all(np.isfinite(v)) for v in values), h
            assert np.all(np.linalg.eigvalsh(np.reshape(h.root_pose.covariance, (6, 6))) > 0)
            assert np.all(np.linalg.eigvalsh(np.reshape(h.root_twist.covariance, (6, 6))) > 0)
            assert np.all(np.linalg.eigvalsh(np.reshape(h.joint_covariances, (24, 3, 3))) > 0)
            assert np.all(np.asarray(h.body_pose_variance) > 0) and np.all(np.asarray(h.betas_variance) > 0)
    # Every output's stamp is one of the player's frames (the node stamps outputs with the input's stamp).
    stamps = [_seconds(m.header.stamp) for m in collector.humans]
    missing = [s for s in stamps if s not in collector.truth]
    assert not missing, f"{len(missing)} of {len(stamps)} output stamps are no frame's"
    start = min(collector.truth)
    errors: dict[int, list[tuple[float, float]]] = {}
    ids: dict[int, set[int]] = {}
    owners: dict[int, set[int]] = {}
    timeline = []  # (time, track, person, error) for the failure messages
    for msg, stamp in zip(collector.humans, stamps):
        truth = collector.truth[stamp]
        for track, person, error in _assign(msg, truth):
            ids.setdefault(person, set()).add(track)
            owners.setdefault(track, set()).add(person)
            timeline.append(f"{stamp - start:.2f}s track {track} -> person {person} ({error:.2f} m)")
            if stamp - start >= WARMUP_S:
                camera = collector.base_xy[stamp]
                true_xy = next(_position(h)[:2] for h in truth.humans if h.track_id == person)
                errors.setdefault(person, []).append((error, float(np.linalg.norm(true_xy - camera))))
    assert len(errors) == 2, f"confirmed tracks for people {sorted(errors)}; node log: {log[-2000:]}"
    for person, rows in errors.items():
        error, distance = np.array(rows).T
        tolerance = REL_TOLERANCE * np.median(distance) + ABS_TOLERANCE
        print(f"person {person}: {len(rows)} confirmed outputs, pelvis error median {np.median(error):.2f} m, "
              f"95% {np.quantile(error, 0.95):.2f} m, tolerance {tolerance:.2f} m")
        # Each person is detected for about 6 s, but the node keeps only the newest frame, and a loaded
        # 2-core CI machine processed as few as 8 of one person's frames (throughput is bench_node's job):
        # enough outputs for a median, not a rate check.
        assert len(rows) >= 5, f"person {person}: only {len(rows)} confirmed outputs"
        assert np.median(error) < tolerance, f"person {person}: median error {np.median(error):.2f} m > {tolerance:.2f} m"
        assert np.quantile(error, 0.95) < 2 * tolerance, f"person {person}: 95% error {np.quantile(error, 0.95):.2f} m"
    # Markers: for frames with a humans output, at most one frame per 1/marker_rate slot of stamps
    # (which frames the node processes depends on the machine's load; this holds for any of them).
    assert collector.marker_stamps, "no markers"
    assert set(collector.marker_stamps) <= set(stamps)
    slots = [np.floor(s * MARKER_RATE) for s in collector.marker_stamps]
    assert len(set(slots)) == len(slots), f"several marker frames in one 1/{MARKER_RATE} s slot: {collector.marker_stamps}"
    # One ID per person, one person per ID.
    assert all(len(v) == 1 for v in ids.values()), f"track ids per person: {ids}; " + "; ".join(timeline)
    assert all(len(v) == 1 for v in owners.values()), f"people per track id: {owners}; " + "; ".join(timeline)
