"""Benchmark player: one 640x480 RGB scene (bench_perception.scenes(): the HSR frame with 1 person,
or the group photo letterboxed to 640x480 for 5 people) published as a camera stream.

Each image is stamped with the wall clock at publish, so a listener on the same machine reads the
node's end-to-end latency as (receive time - header stamp). The camera is static in the map
(/tf_static, transient local), so TF never costs a wait. Publishes on an absolute schedule at
--rate and stops after --play seconds.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import rclpy
from geometry_msgs.msg import TransformStamped
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image
from tf2_msgs.msg import TFMessage

from bench.bench_perception import scenes

CAMERA_FRAME = "camera_optical_frame"
IMAGE_TOPIC, INFO_TOPIC = "image", "camera_info"
MAP_Q_CAMERA = (0.5, -0.5, 0.5, -0.5)  # x, y, z, w: optical z along map x, y down (as tf_player's mount)


def static_camera(stamp) -> TFMessage:
    tf = TransformStamped(child_frame_id=CAMERA_FRAME)
    tf.header.frame_id, tf.header.stamp = "map", stamp
    tf.transform.translation.z = 1.2
    r = tf.transform.rotation
    r.x, r.y, r.z, r.w = MAP_Q_CAMERA
    return TFMessage(transforms=[tf])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, choices=(1, 5), default=1)
    parser.add_argument("--rate", type=float, default=15.0, help="images per second")
    parser.add_argument("--play", type=float, default=20.0, help="seconds to play")
    parser.add_argument("--qos", choices=("sensor_data", "reliable"), default="sensor_data",
                        help="image QoS (the node's image_qos must be compatible: reliable needs a reliable publisher)")
    args = parser.parse_args(argv)
    rgb, k = scenes()[args.people]
    rgb = np.ascontiguousarray(rgb)
    height, width = rgb.shape[:2]
    data = rgb.tobytes()

    rclpy.init()
    node = Node("image_scene_player")
    reliable = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    image_pub = node.create_publisher(Image, IMAGE_TOPIC, reliable if args.qos == "reliable" else qos_profile_sensor_data)
    info_pub = node.create_publisher(CameraInfo, INFO_TOPIC, qos_profile_sensor_data)
    static_pub = node.create_publisher(TFMessage, "/tf_static",
                                       QoSProfile(depth=10, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    try:
        static_pub.publish(static_camera(node.get_clock().now().to_msg()))
        while image_pub.get_subscription_count() < 1:
            time.sleep(0.1)
        time.sleep(0.5)  # the node activates just after creating its subscription
        start, count = time.monotonic(), int(args.play * args.rate)
        for i in range(count):
            delay = start + i / args.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            image = Image(height=height, width=width, encoding="rgb8", step=3 * width, data=data)
            image.header.stamp, image.header.frame_id = node.get_clock().now().to_msg(), CAMERA_FRAME
            info = CameraInfo(header=image.header, height=height, width=width, k=np.asarray(k, float).ravel().tolist())
            info_pub.publish(info)
            image_pub.publish(image)
        node.get_logger().info(f"played {count} images in {time.monotonic() - start:.2f} s")
        time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
