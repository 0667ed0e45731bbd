"""A listener in the test process: its own rclpy context on the test's isolated graph, spun in a
background thread (BackgroundNode), so tests can subscribe to what the node and player processes publish."""
from __future__ import annotations

import time
from collections.abc import Callable

from glopro_ros.ros.background_node import BackgroundNode


class RosListener(BackgroundNode):
    def subscribe(self, msg_type: type, topic: str, callback: Callable, depth: int = 100) -> None:
        self.node.create_subscription(msg_type, topic, callback, depth)

    @staticmethod
    def wait_for(condition: Callable[[], object], limit_s: float) -> bool:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(0.1)
        return False
