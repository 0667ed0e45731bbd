"""A listener in the test process: its own rclpy context on the test's isolated graph, spun in a
background thread, so tests can subscribe to what the node and player processes publish."""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node


class RosListener:
    def __init__(self, env: dict[str, str], name: str) -> None:
        self._saved = dict(os.environ)
        os.environ.update(env)  # rclpy reads the domain and discovery range from the environment
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = Node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        threading.Thread(target=self.executor.spin, daemon=True).start()

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

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)
        os.environ.clear()
        os.environ.update(self._saved)
