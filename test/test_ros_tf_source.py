"""Camera poses over real DDS: /tf + /tf_static from another process, and an odometry topic.

One contract for both TfSource implementations: the built-in buffer (always) and tf2_ros's (where a
ROS 2 distro installs it; the PyPI-wheel ROS 2 has no tf2_ros, so there it is skipped with that reason).
"""
from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rclpy
from nav_msgs.msg import Odometry
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.time import Time

from glopro_ros.core.tf_buffer import ExtrapolationError, TransformLookupError
from glopro_ros.ros.background_node import BackgroundNode
from glopro_ros.ros.tf_source import BufferTfSource, Tf2RosSource, TfSource, subscribe_pose_topic

PLAYER = Path(__file__).parent / "players" / "tf_player.py"
sys.path.insert(0, str(PLAYER.parent))
from tf_player import base_x  # noqa: E402


HISTORY_S = 0.3  # the tests look up to 0.2 s into the past: the buffer must reach back further than that


def _wait_for_tf(node: Node, source: TfSource, target: str, frame: str, limit_s: float = 60.0) -> None:
    """Discovery and the player's start take a few seconds (longer on a busy machine). Waits until
    the buffer holds HISTORY_S of transforms: /tf is volatile, so the first one received can be
    younger than a stamp a test asks for, and a lookup before it can never succeed. Later lookups
    use long timeouts too: on a loaded CI machine /tf was seen arriving up to 1.2 s late, and a
    lookup waits for late data instead of failing."""
    deadline = node.get_clock().now() + rclpy.duration.Duration(seconds=limit_s)
    while True:
        try:
            source.lookup(target, frame, node.get_clock().now() - rclpy.duration.Duration(seconds=HISTORY_S),
                          timeout=0.5)
            return
        except TransformLookupError:
            if node.get_clock().now() > deadline:
                raise


@pytest.fixture(params=["buffer", "tf2_ros"])
def listener(request: pytest.FixtureRequest, ros_env: dict[str, str]) -> Iterator[tuple[Node, TfSource]]:
    if request.param == "tf2_ros":  # before starting anything: skipped where not installed
        pytest.importorskip("tf2_ros", reason="tf2_ros is not installed (the PyPI-wheel ROS 2 has none); "
                                              "this case runs where a ROS 2 distro provides it")
    player = subprocess.Popen([sys.executable, str(PLAYER)], env=ros_env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ros = BackgroundNode("tf_listener_test", ros_env, executor_class=MultiThreadedExecutor)
    source = Tf2RosSource(ros.node, cache_time=5.0) if request.param == "tf2_ros" else \
        BufferTfSource(ros.node, cache_time=5.0, max_extrapolation=0.0)
    subscribe_pose_topic(ros.node, source, "/odom", Odometry, "unused")
    try:
        yield ros.node, source
    finally:
        ros.close()
        player.terminate()
        player.wait(timeout=10)


def test_camera_pose_is_chained_and_interpolated_from_another_process(listener: tuple[Node, TfSource]) -> None:
    node, source = listener
    _wait_for_tf(node, source, "map", "camera")
    stamp = node.get_clock().now() - rclpy.duration.Duration(seconds=0.111)
    pose = source.lookup("map", "camera", stamp, timeout=10.0)
    s = stamp.nanoseconds * 1e-9
    assert np.allclose(pose[:3, 3], [base_x(s), 0.0, 1.2], atol=1e-6)
    assert np.allclose(pose[:3, :3] @ [0, 0, 1], [1, 0, 0], atol=1e-6)  # optical z along base x
    assert np.allclose(pose[:3, :3] @ [0, 1, 0], [0, 0, -1], atol=1e-6)  # optical y down


def test_future_stamp_waits_then_fails_without_guessing(listener: tuple[Node, TfSource]) -> None:
    node, source = listener
    _wait_for_tf(node, source, "map", "camera")
    # 0.1 s ahead: arrives while waiting (the generous timeout absorbs a loaded machine's stalls).
    ahead = node.get_clock().now() + rclpy.duration.Duration(seconds=0.1)
    assert np.isclose(source.lookup("map", "camera", ahead, timeout=10.0)[0, 3], base_x(ahead.nanoseconds * 1e-9), atol=1e-6)
    # 10 s ahead: not within the timeout.
    with pytest.raises(ExtrapolationError):
        source.lookup("map", "camera", node.get_clock().now() + rclpy.duration.Duration(seconds=10), timeout=0.2)
    with pytest.raises(TransformLookupError):
        source.lookup("map", "no_such_frame", node.get_clock().now(), timeout=0.2)


def test_odometry_topic_feeds_the_same_buffer(listener: tuple[Node, TfSource]) -> None:
    node, source = listener
    _wait_for_tf(node, source, "slam_map", "slam_base")
    stamp = node.get_clock().now() - rclpy.duration.Duration(seconds=0.2)
    pose = source.lookup("slam_map", "slam_base", stamp, timeout=10.0)
    assert np.isclose(pose[0, 3], base_x(stamp.nanoseconds * 1e-9), atol=1e-6)
    source.reset()
    with pytest.raises(TransformLookupError):
        source.lookup("slam_map", "slam_base", Time(seconds=1), timeout=0.0)
