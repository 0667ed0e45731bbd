"""A publisher and a subscriber of glopro_ros/HumanStateArray: the package's smallest DDS round trip.

``publisher_main`` publishes an example person at a fixed rate; ``subscriber_main`` prints each
received array as one JSON line (so a test or a person can read it) and exits after ``--count``.
"""
from __future__ import annotations

import argparse
import json
import math
import sys

import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.utilities import remove_ros_args

from glopro_ros.msg import HumanState, HumanStateArray

TOPIC = "humans"

# Pelvis-relative joint positions (m) of a standing adult in the map frame (x forward, y left, z
# up), SMPL joint order; illustrative values for the example message only.
_EXAMPLE_JOINTS = np.array([
    [0.00, 0.00, 0.00], [0.00, 0.06, -0.09], [0.00, -0.06, -0.09], [-0.01, 0.00, 0.11],
    [0.00, 0.10, -0.47], [0.00, -0.10, -0.47], [0.00, 0.00, 0.25], [-0.04, 0.09, -0.87],
    [-0.04, -0.09, -0.87], [0.00, 0.00, 0.31], [0.08, 0.11, -0.92], [0.08, -0.11, -0.92],
    [-0.02, 0.00, 0.52], [-0.01, 0.08, 0.43], [-0.01, -0.08, 0.43], [0.03, 0.00, 0.61],
    [-0.02, 0.18, 0.46], [-0.02, -0.18, 0.46], [-0.03, 0.44, 0.45], [-0.03, -0.44, 0.45],
    [-0.02, 0.69, 0.46], [-0.02, -0.69, 0.46], [-0.01, 0.77, 0.45], [-0.01, -0.77, 0.45],
], dtype=np.float32)


def example_human_state(track_id: int, t: float) -> HumanState:
    """One person walking slowly along x at 0.95 m pelvis height, with plausible covariances."""
    person = HumanState()
    person.track_id = track_id
    person.status = HumanState.STATUS_CONFIRMED
    person.existence_score = 0.875  # exact in float32, so round trips compare equal
    root = np.array([2.0 + 0.5 * t, 0.5 * track_id, 0.95])
    pose = person.root_pose.pose
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in root)
    # Facing +x: SMPL pelvis z (forward) -> map x, pelvis y (up) -> map z: a rotation of 120 deg
    # about (1, 1, 1)/sqrt(3), i.e. quaternion (0.5, 0.5, 0.5, 0.5).
    pose.orientation.x = pose.orientation.y = pose.orientation.z = pose.orientation.w = 0.5
    person.root_pose.covariance = np.diag([0.01, 0.01, 0.04, 0.02, 0.02, 0.05]).ravel().tolist()
    person.root_twist.twist.linear.x = 0.5
    person.root_twist.covariance = np.diag([0.04, 0.04, 0.04, 0.1, 0.1, 0.1]).ravel().tolist()
    person.betas_variance = np.full(10, 0.5, dtype=np.float32)
    person.body_pose_variance = np.full(69, 0.01, dtype=np.float32)
    person.joint_positions = (_EXAMPLE_JOINTS + root.astype(np.float32)).ravel()
    person.joint_covariances = np.tile(np.eye(3, dtype=np.float32).ravel() * 0.01, 24)
    person.last_observed.sec = int(t)
    person.last_observed.nanosec = int((t - math.floor(t)) * 1e9)
    return person


def summarize(msg: HumanStateArray) -> dict:
    """JSON-friendly summary of an array message: header and each person's root and joints."""
    return {
        "frame_id": msg.header.frame_id,
        "stamp": msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9,
        "body_model": msg.body_model,
        "humans": [
            {
                "track_id": int(h.track_id),
                "status": int(h.status),
                "existence_score": round(float(h.existence_score), 6),
                "root_position": [h.root_pose.pose.position.x, h.root_pose.pose.position.y,
                                  h.root_pose.pose.position.z],
                "root_position_std": np.sqrt(np.diag(np.reshape(h.root_pose.covariance, (6, 6)))[:3]).round(6).tolist(),
                "joints": np.asarray(h.joint_positions, dtype=float).reshape(24, 3).round(5).tolist(),
            }
            for h in msg.humans
        ],
    }


class DemoPublisher(Node):
    """Publishes HumanStateArray messages with ``people`` example persons at ``rate`` Hz."""

    def __init__(self) -> None:
        super().__init__("glopro_demo_publisher")
        self.declare_parameter("frame_id", "map")
        self.declare_parameter("rate", 10.0)
        self.declare_parameter("people", 2)
        self._pub = self.create_publisher(HumanStateArray, TOPIC, 10)
        self._start = self.get_clock().now()
        self.create_timer(1.0 / float(self.get_parameter("rate").value), self._publish)

    def _publish(self) -> None:
        now = self.get_clock().now()
        t = (now - self._start).nanoseconds * 1e-9
        msg = HumanStateArray()
        msg.header.stamp = now.to_msg()
        msg.header.frame_id = str(self.get_parameter("frame_id").value)
        msg.body_model = "example"
        msg.humans = [example_human_state(i, t) for i in range(int(self.get_parameter("people").value))]
        self._pub.publish(msg)


def publisher_main(argv: list[str] | None = None) -> int:
    """Entry point of the ``demo_publisher`` executable."""
    rclpy.init(args=sys.argv if argv is None else argv)
    node = DemoPublisher()
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def subscriber_main(argv: list[str] | None = None) -> int:
    """Entry point of the ``demo_subscriber`` executable; exit code 1 when nothing arrived in time."""
    argv = sys.argv if argv is None else argv
    parser = argparse.ArgumentParser(prog="demo_subscriber", description=__doc__)
    parser.add_argument("--count", type=int, default=1, help="messages to print before exiting (0: forever)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for them")
    args = parser.parse_args(remove_ros_args(argv)[1:])
    rclpy.init(args=argv)
    node = Node("glopro_demo_subscriber")
    received: list[HumanStateArray] = []

    def on_message(msg: HumanStateArray) -> None:
        received.append(msg)
        print(json.dumps(summarize(msg)), flush=True)

    node.create_subscription(HumanStateArray, TOPIC, on_message, 10)
    deadline = node.get_clock().now().nanoseconds + args.timeout * 1e9
    try:
        while rclpy.ok() and (args.count == 0 or len(received) < args.count):
            rclpy.spin_once(node, timeout_sec=0.1)
            if args.count and node.get_clock().now().nanoseconds > deadline:
                break
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    if args.count and len(received) < args.count:
        print(f"demo_subscriber: received {len(received)} of {args.count} messages in {args.timeout} s",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    role = sys.argv.pop(1) if len(sys.argv) > 1 else ""
    if role not in ("publisher", "subscriber"):
        sys.exit("usage: python -m glopro_ros.ros.demo_exchange publisher|subscriber [--ros-args ...]")
    sys.exit(publisher_main() if role == "publisher" else subscriber_main())
