"""Test player: publishes a robot's TF (static camera mount, moving base) and the same base pose as
nav_msgs/Odometry, at 50 Hz with the stamp s encoding the pose: base x = 0.1 * (s mod 1000) m."""
from __future__ import annotations

import rclpy
from geometry_msgs.msg import TransformStamped
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile
from tf2_msgs.msg import TFMessage


def base_x(stamp_s: float) -> float:
    return 0.1 * (stamp_s % 1000.0)


def main() -> None:
    rclpy.init()
    node = Node("tf_player")
    tf_pub = node.create_publisher(TFMessage, "/tf", 100)
    static_pub = node.create_publisher(TFMessage, "/tf_static",
                                       QoSProfile(depth=100, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    odom_pub = node.create_publisher(Odometry, "/odom", 50)
    mount = TransformStamped()
    mount.header.frame_id, mount.child_frame_id = "base_link", "camera"
    mount.transform.translation.z = 1.2
    mount.transform.rotation.x, mount.transform.rotation.y = 0.5, -0.5  # optical: z along base x
    mount.transform.rotation.z, mount.transform.rotation.w = 0.5, -0.5
    world = TransformStamped()
    world.header.frame_id, world.child_frame_id = "map", "odom"
    world.transform.rotation.w = 1.0
    static_pub.publish(TFMessage(transforms=[mount, world]))

    def tick() -> None:
        stamp = node.get_clock().now()
        x = base_x(stamp.nanoseconds * 1e-9)
        moving = TransformStamped()
        moving.header.stamp = stamp.to_msg()
        moving.header.frame_id, moving.child_frame_id = "odom", "base_link"
        moving.transform.translation.x = x
        moving.transform.rotation.w = 1.0
        tf_pub.publish(TFMessage(transforms=[moving]))
        odom = Odometry()
        odom.header = moving.header
        odom.header.frame_id, odom.child_frame_id = "slam_map", "slam_base"
        odom.pose.pose.position.x = x
        odom.pose.pose.orientation.w = 1.0
        odom_pub.publish(odom)

    node.create_timer(0.02, tick)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
