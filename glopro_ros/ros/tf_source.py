"""Camera poses from TF at an image's stamp, behind one small interface.

``make_tf_source`` uses tf2_ros where it is installed (a ROS 2 distro) and otherwise listens to
/tf and /tf_static itself into the core TransformBuffer (the PyPI-wheel environment has no
tf2_ros). Both answer ``lookup(target, source, stamp, timeout)`` with T_target_source or raise
TransformLookupError; the node never guesses a pose.
"""
from __future__ import annotations

import threading
import time
from typing import Protocol

import numpy as np
from geometry_msgs.msg import PoseStamped, TransformStamped
from nav_msgs.msg import Odometry
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.time import Time
from scipy.spatial.transform import Rotation
from tf2_msgs.msg import TFMessage

from glopro_ros.core.tf_buffer import ExtrapolationError, TransformBuffer, TransformLookupError, UnknownFrameError

# tf2_ros's listener profiles: /tf volatile, /tf_static transient-local so late joiners get it.
TF_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
TF_STATIC_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.TRANSIENT_LOCAL)


def stamp_seconds(stamp: Time) -> float:
    return stamp.nanoseconds * 1e-9


def matrix_from_transform(msg: TransformStamped) -> np.ndarray:
    t, q = msg.transform.translation, msg.transform.rotation
    m = np.eye(4)
    m[:3, :3] = Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix()
    m[:3, 3] = [t.x, t.y, t.z]
    return m


class TfSource(Protocol):
    """Where camera poses come from."""

    def insert(self, transform: TransformStamped, static: bool) -> None:
        """Add a transform that did not come over /tf (e.g. from an odometry topic)."""

    def lookup(self, target: str, source: str, stamp: Time, timeout: float) -> np.ndarray:
        """T_target_source at ``stamp``, waiting up to ``timeout`` s for late data."""

    def reset(self) -> None:
        """Forget the moving transforms' history (time went backwards); static ones stay, as in tf2."""


class BufferTfSource:
    """Subscribes /tf and /tf_static into the core TransformBuffer.

    A lookup that misses waits on a condition that every insert notifies, so it retries the moment
    the transform arrives (no polling) and a callback inserts a whole TFMessage under one lock."""

    def __init__(self, node: Node, cache_time: float = 10.0, max_extrapolation: float = 0.0) -> None:
        self._buffer = TransformBuffer(cache_time=cache_time, max_extrapolation=max_extrapolation)
        self._changed = threading.Condition()
        self._node = node
        # Own callback group: under a multi-threaded executor, a lookup that waits inside another
        # callback still receives TF (the glopro node looks up in its worker thread).
        group = MutuallyExclusiveCallbackGroup()
        for topic, qos, static in (("/tf", TF_QOS, False), ("/tf_static", TF_STATIC_QOS, True)):
            node.create_subscription(TFMessage, topic, lambda m, s=static: self._on_tf(m, s), qos,
                                     callback_group=group)

    def _on_tf(self, msg: TFMessage, static: bool) -> None:
        with self._changed:
            for transform in msg.transforms:
                self._set(transform, static)
            self._changed.notify_all()

    def insert(self, transform: TransformStamped, static: bool) -> None:
        with self._changed:
            self._set(transform, static)
            self._changed.notify_all()

    def _set(self, transform: TransformStamped, static: bool) -> None:
        t, q, stamp = transform.transform.translation, transform.transform.rotation, transform.header.stamp
        try:
            # Seconds as stamp_seconds(Time) computes them, so a frame and its TF at one stamp match exactly.
            self._buffer.set_transform(transform.header.frame_id.lstrip("/"), transform.child_frame_id.lstrip("/"),
                                       (stamp.sec * 10**9 + stamp.nanosec) * 1e-9, (t.x, t.y, t.z),
                                       (q.x, q.y, q.z, q.w), static)
        except ValueError as error:
            self._node.get_logger().warning(f"ignoring transform: {error}", throttle_duration_sec=5.0)

    def lookup(self, target: str, source: str, stamp: Time, timeout: float) -> np.ndarray:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                try:
                    return self._buffer.lookup(target, source, stamp_seconds(stamp))
                except (UnknownFrameError, ExtrapolationError):
                    # Possibly not arrived yet: wait for the next insert, but no longer than the timeout.
                    remaining = deadline - time.monotonic()
                    if remaining <= 0.0:
                        raise
                    self._changed.wait(remaining)

    def reset(self) -> None:
        with self._changed:
            self._buffer.clear()


class Tf2RosSource:
    """tf2_ros's Buffer and TransformListener, where a ROS 2 distro provides them."""

    def __init__(self, node: Node, cache_time: float = 10.0) -> None:
        import tf2_ros  # noqa: PLC0415 (optional dependency)
        from rclpy.duration import Duration  # noqa: PLC0415

        self._tf2 = tf2_ros
        self._duration = Duration
        self._buffer = tf2_ros.Buffer(cache_time=Duration(seconds=cache_time), node=node)
        self._listener = tf2_ros.TransformListener(self._buffer, node, spin_thread=False)

    def insert(self, transform: TransformStamped, static: bool) -> None:
        if static:
            self._buffer.set_transform_static(transform, "glopro_ros")
        else:
            self._buffer.set_transform(transform, "glopro_ros")

    def lookup(self, target: str, source: str, stamp: Time, timeout: float) -> np.ndarray:
        tf2 = self._tf2
        try:
            msg = self._buffer.lookup_transform(target, source, stamp, timeout=self._duration(seconds=timeout))
        # The same errors as BufferTfSource raises, so callers and the contract tests see one interface.
        except tf2.ExtrapolationException as error:
            raise ExtrapolationError(str(error)) from error
        except tf2.LookupException as error:
            raise UnknownFrameError(str(error)) from error
        except tf2.TransformException as error:  # not connected, invalid argument, timeout
            raise TransformLookupError(str(error)) from error
        return matrix_from_transform(msg)

    def reset(self) -> None:
        self._buffer.clear()


def subscribe_pose_topic(node: Node, source: TfSource, topic: str, msg_type: type, child_frame: str) -> None:
    """Feed nav_msgs/Odometry or geometry_msgs/PoseStamped into ``source`` as the pose of
    ``child_frame`` (Odometry's child_frame_id wins when set) in the message's header frame,
    for SLAM systems that publish poses rather than TF."""
    if msg_type not in (Odometry, PoseStamped):
        raise ValueError(f"pose topic type must be Odometry or PoseStamped, not {msg_type.__name__}")

    def on_pose(msg: Odometry | PoseStamped) -> None:
        pose = msg.pose.pose if isinstance(msg, Odometry) else msg.pose
        transform = TransformStamped()
        transform.header = msg.header
        transform.child_frame_id = msg.child_frame_id if isinstance(msg, Odometry) and msg.child_frame_id else child_frame
        transform.transform.translation.x, transform.transform.translation.y, transform.transform.translation.z = (
            pose.position.x, pose.position.y, pose.position.z)
        transform.transform.rotation = pose.orientation
        source.insert(transform, static=False)

    node.create_subscription(msg_type, topic, on_pose, 50)


def make_tf_source(node: Node, cache_time: float = 10.0, max_extrapolation: float = 0.0,
                   prefer_tf2_ros: bool = True) -> TfSource:
    """tf2_ros when importable (and preferred), else the buffer over /tf and /tf_static."""
    if prefer_tf2_ros:
        try:
            return Tf2RosSource(node, cache_time)
        except ImportError:
            pass
    return BufferTfSource(node, cache_time, max_extrapolation)
