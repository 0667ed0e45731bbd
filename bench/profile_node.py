"""The glopro node with cProfile around its worker's per-frame processing (bench_node.py --profile).

Only ``GloproNode._process`` is profiled (the worker thread: TF lookup, perception or lifting,
tracking, messages, markers), so DDS callbacks and the executor do not blur the per-frame cost.
Stats go to $GLOPRO_PROFILE_OUT when the node is terminated.

    python bench/profile_node.py --ros-args -p input:=keypoints
"""
from __future__ import annotations

import cProfile
import os
import pstats
import signal

import glopro_ros.ros.node as node_module

PROFILE = cProfile.Profile()
_process = node_module.GloproNode._process


def profiled_process(self: node_module.GloproNode, frame: node_module.Frame) -> None:
    PROFILE.enable()
    try:
        _process(self, frame)
    finally:
        PROFILE.disable()


def dump(*_: object) -> None:
    pstats.Stats(PROFILE).dump_stats(os.environ.get("GLOPRO_PROFILE_OUT", "node.prof"))
    os._exit(0)


if __name__ == "__main__":
    node_module.GloproNode._process = profiled_process
    signal.signal(signal.SIGTERM, dump)
    node_module.main()
    dump()
