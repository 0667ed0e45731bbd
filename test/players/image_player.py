"""Test player: one real HSR RGB frame (from the shared rosbag) as a camera stream, with TF of a
robot that drives and turns, so the person's true world position depends on the image stamp.

Options let fault tests break it: no TF, images stamped backwards, a bad encoding, NaN intrinsics,
bursts at several times the rate.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import rclpy
from geometry_msgs.msg import TransformStamped
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.time import Time
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import CameraInfo, Image
from tf2_msgs.msg import TFMessage

from glopro_ros.perception.rgbd_frames import read_rgbd_frames

CAMERA_FRAME = "head_rgbd_sensor_rgb_frame"
IMAGE_TOPIC = "/hero/head_rgbd_sensor/rgb/image_raw"
INFO_TOPIC = "/hero/head_rgbd_sensor/rgb/camera_info"
DEPTH_TOPIC = "/hero/head_rgbd_sensor/depth_registered/image"
MOUNT = np.array([[0, 0, 1, 0.1], [-1, 0, 0, 0.0], [0, -1, 0, 1.0], [0, 0, 0, 1.0]])  # base <- optical


def base_pose(stamp_s: float) -> np.ndarray:
    """map <- base_link: drives along x at 0.1 m/s and sways its heading by +-0.1 rad."""
    m = np.eye(4)
    m[:3, :3] = Rotation.from_euler("z", 0.1 * np.sin(0.5 * stamp_s)).as_matrix()
    m[0, 3] = 0.1 * (stamp_s % 1000.0)
    return m


def camera_pose(stamp_s: float) -> np.ndarray:
    """map <- camera optical frame at a stamp."""
    return base_pose(stamp_s) @ MOUNT


def load_frame(bag: Path, index: int):
    return read_rgbd_frames(bag, IMAGE_TOPIC, INFO_TOPIC, DEPTH_TOPIC, max_gap_ns=500_000_000)[index]


def _transform(parent: str, child: str, m: np.ndarray, stamp: Time) -> TransformStamped:
    tf = TransformStamped()
    tf.header.stamp, tf.header.frame_id, tf.child_frame_id = stamp.to_msg(), parent, child
    tf.transform.translation.x, tf.transform.translation.y, tf.transform.translation.z = (float(v) for v in m[:3, 3])
    q = Rotation.from_matrix(m[:3, :3]).as_quat()
    tf.transform.rotation.x, tf.transform.rotation.y, tf.transform.rotation.z, tf.transform.rotation.w = (float(v) for v in q)
    return tf


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("bag", type=Path)
    parser.add_argument("--frame", type=int, default=0)
    parser.add_argument("--rate", type=float, default=5.0)
    parser.add_argument("--burst", type=int, default=1, help="images per tick (a burst at rate x burst)")
    parser.add_argument("--no-tf", action="store_true")
    parser.add_argument("--backwards-after", type=float, default=0.0, help="after this many s, stamp images 30 s earlier")
    parser.add_argument("--encoding", default="rgb8")
    parser.add_argument("--nan-intrinsics", action="store_true")
    parser.add_argument("--zoom-after", type=float, default=0.0, help="after this many s, focal lengths x 1.1")
    parser.add_argument("--best-effort", action="store_true", help="publish images best effort (SensorDataQoS)")
    args = parser.parse_args()
    frame = load_frame(args.bag, args.frame)

    rclpy.init()
    node = Node("image_player")
    # Reliable by default, as most image_transport camera drivers publish (it serves best-effort subscriptions too).
    reliable = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    image_pub = node.create_publisher(Image, "image", qos_profile_sensor_data if args.best_effort else reliable)
    info_pub = node.create_publisher(CameraInfo, "camera_info", qos_profile_sensor_data)
    tf_pub = node.create_publisher(TFMessage, "/tf", 100)
    static_pub = node.create_publisher(TFMessage, "/tf_static", QoSProfile(depth=10, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    start = node.get_clock().now()
    if not args.no_tf:
        static_pub.publish(TFMessage(transforms=[_transform("base_link", CAMERA_FRAME, MOUNT, start)]))
    h, w = frame.rgb.shape[:2]
    data = frame.rgb.tobytes()

    def tf_tick() -> None:
        now = node.get_clock().now()
        if not args.no_tf:
            tf_pub.publish(TFMessage(transforms=[_transform("map", "base_link", base_pose(now.nanoseconds * 1e-9), now)]))

    def image_tick() -> None:
        now = node.get_clock().now()
        if args.backwards_after and (now - start).nanoseconds * 1e-9 > args.backwards_after:
            now = now - rclpy.duration.Duration(seconds=30)
        for _ in range(args.burst):
            image = Image(height=h, width=w, encoding=args.encoding, step=w * 3, data=data)
            image.header.stamp, image.header.frame_id = now.to_msg(), CAMERA_FRAME
            k = frame.k.copy()
            if args.zoom_after and (node.get_clock().now() - start).nanoseconds * 1e-9 > args.zoom_after:
                k[0, 0] *= 1.1
                k[1, 1] *= 1.1
            info = CameraInfo(height=h, width=w, k=[float("nan")] * 9 if args.nan_intrinsics else k.ravel().tolist())
            info.header = image.header
            info_pub.publish(info)
            image_pub.publish(image)

    node.create_timer(0.02, tf_tick)
    node.create_timer(1.0 / args.rate, image_tick)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
