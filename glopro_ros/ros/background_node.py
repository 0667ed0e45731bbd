"""An rclpy node of its own context, spun in a background thread, for processes that do other work.

Used by DDS replay's player, the benchmarks' listener and the tests' listeners. Closing stops the
spin thread and joins it before the node is destroyed: rclpy does not support destroying a node
while another thread waits on it (ros2/rclpy#255, #663: crashes or hangs), and Executor.shutdown()
alone does not wait for a spin in another thread to return. The thread spins in short turns so that
it sees the stop request within SPIN_PERIOD_S.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Mapping

import rclpy
from rclpy.executors import Executor, SingleThreadedExecutor
from rclpy.node import Node

SPIN_PERIOD_S = 0.05
JOIN_TIMEOUT_S = 10.0  # a callback still running after this is a bug worth an error, not a hang


class BackgroundNode:
    """`node` on a private rclpy context started from `env` (domain, discovery range), spinning until close()."""

    def __init__(self, name: str, env: Mapping[str, str],
                 executor_class: type[Executor] = SingleThreadedExecutor) -> None:
        # rcl reads the domain and discovery range from the environment when the context starts.
        self._saved_env = dict(os.environ)
        os.environ.update(env)
        self.context = rclpy.Context()
        rclpy.init(args=[], context=self.context)  # not this process's argv (NAME:=VALUE reads as a remap)
        self.node = Node(name, context=self.context)
        self.executor = executor_class(context=self.context)
        self.executor.add_node(self.node)
        self._running = threading.Event()
        self._running.set()
        self._spinner = threading.Thread(target=self._spin, name=f"{name}_spin", daemon=True)
        self._spinner.start()

    def _spin(self) -> None:
        while self._running.is_set() and self.context.ok():
            self.executor.spin_once(timeout_sec=SPIN_PERIOD_S)

    def close(self) -> None:
        """Stop and join the spin thread, then destroy the node and the context; restores the environment."""
        self._running.clear()
        self._spinner.join(JOIN_TIMEOUT_S)
        try:
            if self._spinner.is_alive():
                raise RuntimeError(f"{self.node.get_name()}: a callback did not return within {JOIN_TIMEOUT_S:.0f} s")
            self.executor.shutdown()
            self.node.destroy_node()
        finally:
            rclpy.try_shutdown(context=self.context)
            os.environ.clear()
            os.environ.update(self._saved_env)
