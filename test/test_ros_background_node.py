"""BackgroundNode: callbacks run while the caller works; close() joins the spin thread before
destroying anything (rclpy cannot destroy a node another thread waits on), then restores the environment."""
from __future__ import annotations

import os
import time

from std_msgs.msg import String

from glopro_ros.ros.background_node import BackgroundNode


def test_spins_in_the_background_and_closes_cleanly(ros_env: dict[str, str]) -> None:
    before = dict(os.environ)
    ros = BackgroundNode("background_node_test", ros_env)
    assert os.environ["ROS_DOMAIN_ID"] == ros_env["ROS_DOMAIN_ID"]
    received: list[str] = []
    ros.node.create_subscription(String, "echo", lambda m: received.append(m.data), 10)
    publisher = ros.node.create_publisher(String, "echo", 10)
    deadline = time.monotonic() + 20.0
    while not received and time.monotonic() < deadline:  # discovery within one participant is quick
        publisher.publish(String(data="hello"))
        time.sleep(0.1)
    assert received and received[0] == "hello"
    spinner = ros._spinner
    ros.close()  # raises if the thread is still in a callback after JOIN_TIMEOUT_S
    assert not spinner.is_alive()
    assert not ros.context.ok()
    assert dict(os.environ) == before
