"""Keypoint lifting in a child process, so the node can track one frame while the next is lifted.

Why a process: the node is one Python process whose executor thread and worker share the GIL, and
lifting (a batched Levenberg-Marquardt fit, thousands of small numpy calls that hold the GIL) is
the largest share of a keypoint frame (5 people: about 40%). In a process of its own it runs on
another core, in parallel with the worker's tracking and messages of the previous frame. The child
runs the same code (lift_people) on the same inputs, so results are bit for bit those of lifting
in-process (offline replay); only plain numpy results and exceptions cross the process boundary.

The child starts by spawn (forking a process with DDS threads is unsafe), ignores SIGINT (Ctrl-C
in a terminal reaches the whole process group; the parent shuts it down) and exits by itself when
its parent dies: a killed node must not leave it behind (a pool worker waits for work forever).
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor

import numpy as np

from glopro_ros.perception.keypoints import PersonKeypoints
from glopro_ros.perception.lifting import KeypointLifter, LiftResult
from glopro_ros.perception.smpl_correspondence import targets_from_blazepose

PARENT_POLL_S = 1.0
_lifter: KeypointLifter | None = None  # the child's own lifter (set by _start)


def lift_people(lifter: KeypointLifter, people: list[PersonKeypoints], k: np.ndarray, width: int,
                height: int) -> list[LiftResult | ValueError]:
    """BlazePose-33 keypoints of each person -> a fit, or the ValueError saying why there is none."""
    return lifter.fit_many([targets_from_blazepose(person, width, height) for person in people], k)


def _start(body_model_path: str, parent: int) -> None:
    import torch

    from glopro_ros.core.body_model import BodyModel

    global _lifter
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)
    _lifter = KeypointLifter(BodyModel(body_model_path or None, device="cpu"))
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()


def _exit_with(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    os._exit(0)


def _lift(people: list[PersonKeypoints], k: np.ndarray, width: int, height: int) -> list[LiftResult | ValueError]:
    assert _lifter is not None, "_start runs first in every worker"
    return lift_people(_lifter, people, k, width, height)


def _ready() -> int:
    return os.getpid()


class LiftingProcess:
    """One child process lifting one frame at a time (submit -> Future of lift_people's list)."""

    def __init__(self, body_model_path: str = "") -> None:
        self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_start, initargs=(body_model_path, os.getpid()))
        # Started and its body model loaded now, not at the first frame; raises if it cannot start.
        self.pid = self._pool.submit(_ready).result()

    def submit(self, people: list[PersonKeypoints], k: np.ndarray, width: int,
               height: int) -> Future[list[LiftResult | ValueError]]:
        return self._pool.submit(_lift, people, np.asarray(k, dtype=float), int(width), int(height))

    def close(self) -> None:
        """Stop the child; a lifting in progress is abandoned."""
        self._pool.shutdown(wait=True, cancel_futures=True)
