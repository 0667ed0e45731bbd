"""glopro replay --via-dds: the node over real DDS gives the human states offline replay gives.

Both replays configure the same pipeline and OutputMessages; the DDS one runs the node process
lock-step, so every frame is processed in order and the outputs must agree field by field. Not to
the byte: the node's process rounds differently in the last bits (measured: 6e-11 m at most).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rosbags.highlevel import AnyReader

from glopro_ros.core.fusion import DEFAULT_FUSION_WEIGHTS
from glopro_ros.tools import replay, simulate_bag
from glopro_ros.tools.bag_typestore import glopro_typestore

TOLERANCE = 1e-7  # absolute and relative, on every float field (metres, radians, covariances)


def _decoded(bag: Path, topic: str) -> list[object]:
    with AnyReader([bag], default_typestore=glopro_typestore()) as reader:
        wanted = [c for c in reader.connections if c.topic == topic]
        return [reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages(connections=wanted)]


def _assert_same(a: object, b: object, path: str) -> None:
    """Field-by-field equality of two decoded messages; floats within TOLERANCE."""
    if isinstance(a, np.ndarray):
        assert a.shape == b.shape, path
        if a.dtype.kind == "f":
            np.testing.assert_allclose(a, b, rtol=TOLERANCE, atol=TOLERANCE, err_msg=path)
        else:
            np.testing.assert_array_equal(a, b, err_msg=path)
    elif isinstance(a, float):
        assert a == pytest.approx(b, rel=TOLERANCE, abs=TOLERANCE), path
    elif isinstance(a, list):
        assert len(a) == len(b), f"{path}: {len(a)} != {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{path}[{i}]")
    elif hasattr(a, "__dataclass_fields__"):
        for name in a.__dataclass_fields__:
            _assert_same(getattr(a, name), getattr(b, name), f"{path}.{name}")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


@pytest.mark.skipif(not DEFAULT_FUSION_WEIGHTS.exists(), reason=f"needs the trained {DEFAULT_FUSION_WEIGHTS.name}")
def test_dds_replay_gives_the_offline_human_states(tmp_path: Path) -> None:
    """The replay's node runs on its own random, localhost-only domain (isolated_ros_environment)."""
    bag = tmp_path / "sim"
    assert simulate_bag.main([str(bag), "--duration", "3", "--people", "2", "--fps", "10", "--seed", "5"]) == 0
    offline, dds = tmp_path / "offline", tmp_path / "dds"
    assert replay.main([str(bag), "--out", str(offline), "--quiet"]) == 0
    assert replay.main([str(bag), "--out", str(dds), "--via-dds", "--quiet"]) == 0
    for topic in ("/humans", "/markers"):
        expected, got = _decoded(offline, topic), _decoded(dds, topic)
        assert len(expected) == 30, topic
        _assert_same(got, expected, topic)
    people = {h.track_id for msg in _decoded(dds, "/humans") for h in msg.humans}
    assert people, "the node tracked nobody"
    _assert_same(_decoded(dds, "/ground_truth"), _decoded(offline, "/ground_truth"), "/ground_truth")
