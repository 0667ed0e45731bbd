"""LiftingProcess: the child's fits are bit for bit the in-process ones, and it never outlives its
use: close() stops it, and so does its parent's death (a killed node must not leave it behind)."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from glopro_ros.core.body_model import BodyModel
from glopro_ros.perception.lifting import KeypointLifter, LiftResult
from glopro_ros.perception.lifting_process import PARENT_POLL_S, LiftingProcess, lift_people
from glopro_ros.ros.keypoint_input import people_from_keypoints_msg

sys.path.insert(0, str(Path(__file__).parent / "players"))
from keypoint_player import build_scene  # noqa: E402


def _alive(pid: int) -> bool:
    """Running (a zombie nobody reaped has exited)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_child_fits_equal_in_process_fits() -> None:
    scene = build_scene(3, 1.0, 10.0, 4, with_truth=False, clean=True)
    lifter = KeypointLifter(BodyModel(device="cpu"))
    process = LiftingProcess()
    try:
        compared = 0
        for msg in scene.keypoints:
            people, _ = people_from_keypoints_msg(msg)
            here = lift_people(lifter, people, scene.k, msg.image_width, msg.image_height)
            there = process.submit(people, scene.k, msg.image_width, msg.image_height).result(timeout=60)
            assert len(here) == len(there) == len(people)
            for a, b in zip(here, there):
                assert type(a) is type(b)
                if isinstance(a, LiftResult):
                    for field in dataclasses.fields(LiftResult):
                        np.testing.assert_array_equal(getattr(a, field.name), getattr(b, field.name), err_msg=field.name)
                    compared += 1
                else:
                    assert str(a) == str(b)
        assert compared >= 10
    finally:
        process.close()
    assert not _alive(process.pid)


def test_child_exits_when_its_parent_is_killed() -> None:
    parent = subprocess.Popen([sys.executable, "-c", "import time\n"
                               "from glopro_ros.perception.lifting_process import LiftingProcess\n"
                               "print(LiftingProcess().pid, flush=True)\n"
                               "time.sleep(600)\n"], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        assert _alive(child)
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 10 * PARENT_POLL_S
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child), f"lifting process {child} outlived its killed parent"
