"""glopro simulate and glopro replay: determinism, content, and the documented exit codes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import Reader, StoragePlugin, Writer

from glopro_ros.core.fusion import DEFAULT_FUSION_WEIGHTS
from glopro_ros.tools import replay, simulate_bag
from glopro_ros.tools.bag_typestore import glopro_typestore

needs_weights = pytest.mark.skipif(not DEFAULT_FUSION_WEIGHTS.exists(),
                                   reason=f"fusion weights {DEFAULT_FUSION_WEIGHTS.name} not trained yet")


def _messages(bag: Path) -> dict[str, list[tuple[int, bytes]]]:
    out: dict[str, list[tuple[int, bytes]]] = {}
    with Reader(bag) as reader:
        for connection, timestamp, raw in reader.messages():
            out.setdefault(connection.topic, []).append((timestamp, bytes(raw)))
    return out


@pytest.fixture(scope="module")
def sim_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bag = tmp_path_factory.mktemp("sim") / "sim"
    assert simulate_bag.main([str(bag), "--duration", "1", "--people", "2", "--seed", "3", "--images", "--scale", "0.25"]) == 0
    return bag


def test_simulated_bag_is_deterministic_and_complete(sim_bag: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    assert simulate_bag.main([str(again), "--duration", "1", "--people", "2", "--seed", "3", "--images", "--scale", "0.25"]) == 0
    first, second = _messages(sim_bag), _messages(again)
    assert first == second
    assert {len(v) for k, v in first.items() if k != "/tf_static"} == {30}
    assert set(first) == {"/tf", "/tf_static", "/camera/camera_info", "/camera/keypoints", "/ground_truth",
                          "/camera/image_raw"}
    other = tmp_path / "other"
    assert simulate_bag.main([str(other), "--duration", "1", "--people", "2", "--seed", "4"]) == 0
    assert _messages(other)["/ground_truth"] != first["/ground_truth"]
    assert simulate_bag.main([str(other)]) == simulate_bag.EXIT_EXISTS


def test_simulated_keypoints_and_ground_truth_agree_with_the_camera(sim_bag: Path) -> None:
    """Each detection's hip landmarks project near the true pelvis seen through the TF camera pose."""
    store = glopro_typestore()
    with AnyReader([sim_bag], default_typestore=store) as reader:
        msgs: dict[str, list] = {}
        for c, _, raw in reader.messages():
            msgs.setdefault(c.topic, []).append(reader.deserialize(raw, c.msgtype))
    static = msgs["/tf_static"][0].transforms[0]
    assert (static.header.frame_id, static.child_frame_id) == ("base_link", "camera_optical_frame")
    info = msgs["/camera/camera_info"][0]
    k = np.asarray(info.k).reshape(3, 3)
    assert (info.width, info.height) == (160, 120) and k[0, 0] == pytest.approx(525 * 0.25)
    hips, torsos = [], []
    for kp, gt in zip(msgs["/camera/keypoints"], msgs["/ground_truth"]):
        assert kp.skeleton == "blazepose33" and gt.header.frame_id == "map"
        for h in gt.humans:
            assert np.allclose(np.asarray(h.joint_positions[:3]), [h.root_pose.pose.position.x,
                                                                   h.root_pose.pose.position.y,
                                                                   h.root_pose.pose.position.z], atol=1e-5)
            assert max(h.joint_covariances) < 1e-8
        for person in kp.people:
            assert len(person.keypoints) == 66 and len(person.confidences) == 33 and len(person.keypoints_3d) == 99
            world = np.asarray(person.keypoints_3d).reshape(33, 3)
            hips.append(np.linalg.norm(world[[23, 24]].mean(0)))
            torsos.append(np.linalg.norm(world[11] - world[23]))
    assert len(hips) > 20
    assert np.median(hips) < 0.15  # hip-centred (up to the 3D landmark noise)
    assert 0.3 < np.median(torsos) < 0.7  # shoulder to hip: a human torso
    image = msgs["/camera/image_raw"][10]
    assert image.encoding == "rgb8" and len(image.data) == 160 * 120 * 3
    assert np.asarray(image.data).reshape(120, 160, 3).std() > 1.0  # something was drawn


@needs_weights
def test_replay_is_deterministic_and_writes_what_the_node_publishes(sim_bag: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    a, b = tmp_path / "a", tmp_path / "b"
    assert replay.main([str(sim_bag), "--out", str(a), "--quiet", "--no-mesh"]) == 0
    assert replay.main([str(sim_bag), "--out", str(b), "--quiet", "--no-mesh"]) == 0
    first, second = _messages(a), _messages(b)
    assert first == second
    assert len(first["/humans"]) == len(first["/markers"]) == 30
    assert first["/ground_truth"] == _messages(sim_bag)["/ground_truth"]  # copied byte for byte
    assert first["/tf"] == _messages(sim_bag)["/tf"]
    with AnyReader([a], default_typestore=glopro_typestore()) as reader:
        humans = [reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages()
                  if c.topic == "/humans"]
    assert humans[-1].header.frame_id == "map" and len(humans[-1].humans) >= 1
    assert all(len(h.joint_positions) == 72 for m in humans for h in m.humans)


@needs_weights
def test_replay_reads_sqlite3_bags(sim_bag: Path, tmp_path: Path) -> None:
    """The same input as a sqlite3 rosbag2 gives the same /humans as the MCAP one."""
    store = glopro_typestore()
    lite = tmp_path / "lite"
    with Reader(sim_bag) as reader, Writer(lite, version=9, storage_plugin=StoragePlugin.SQLITE3) as writer:
        conns = {c.id: writer.add_connection(c.topic, c.msgtype, typestore=store) for c in reader.connections
                 if c.topic != "/camera/image_raw"}
        for c, timestamp, raw in reader.messages():
            if c.id in conns:
                writer.write(conns[c.id], timestamp, raw)
    assert replay.main([str(lite), "--out", str(tmp_path / "o1"), "--quiet", "--no-markers"]) == 0
    assert replay.main([str(sim_bag), "--out", str(tmp_path / "o2"), "--quiet", "--no-markers"]) == 0
    assert _messages(tmp_path / "o1")["/humans"] == _messages(tmp_path / "o2")["/humans"]


def _copy_topics(src: Path, dst: Path, keep: set[str]) -> None:
    store = glopro_typestore()
    with Reader(src) as reader, Writer(dst, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conns = {c.id: writer.add_connection(c.topic, c.msgtype, typestore=store) for c in reader.connections
                 if c.topic in keep}
        for c, timestamp, raw in reader.messages():
            if c.id in conns:
                writer.write(conns[c.id], timestamp, raw)


def test_replay_exit_codes_for_bad_input(sim_bag: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert replay.main([str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == replay.EXIT_UNREADABLE
    junk = tmp_path / "junk.mcap"
    junk.write_bytes(b"not a bag at all" * 100)
    assert replay.main([str(junk), "--out", str(tmp_path / "o")]) == replay.EXIT_UNREADABLE
    assert "cannot read" in capsys.readouterr().err
    assert replay.main([str(sim_bag), "--out", str(sim_bag)]) == replay.EXIT_USAGE  # output exists
    only_gt = tmp_path / "only_gt"
    _copy_topics(sim_bag, only_gt, {"/ground_truth", "/tf"})
    assert replay.main([str(only_gt), "--out", str(tmp_path / "o")]) == replay.EXIT_MISSING_TOPIC
    assert "topic to replay" in capsys.readouterr().err
    no_tf = tmp_path / "no_tf"
    _copy_topics(sim_bag, no_tf, {"/camera/keypoints", "/camera/camera_info"})
    assert replay.main([str(no_tf), "--out", str(tmp_path / "o")]) == replay.EXIT_MISSING_TOPIC
    assert replay.main([str(sim_bag), "--out", str(tmp_path / "o"), "--keypoints-topic", "/ground_truth"]) \
        == replay.EXIT_UNKNOWN_TYPE
    assert "expected glopro_ros/msg/Keypoints2DArray" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # nothing written for input refused up front


@needs_weights
def test_replay_keeps_partial_output_of_a_damaged_bag(tmp_path: Path) -> None:
    """A corrupt chunk part way: exit 6, and the frames before it are in the output."""
    bag = tmp_path / "bag"  # images make several MCAP chunks, so the damage hits one of them
    assert simulate_bag.main([str(bag), "--duration", "1", "--people", "1", "--images", "--scale", "0.5"]) == 0
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    original = next(bag.glob("*.mcap"))
    data = bytearray(original.read_bytes())
    start = int(len(data) * 0.6)
    data[start:start + 100000] = b"\xff" * 100000
    (damaged / original.name).write_bytes(bytes(data))
    (damaged / "metadata.yaml").write_text((bag / "metadata.yaml").read_text())
    out = tmp_path / "out"
    assert replay.main([str(damaged), "--out", str(out), "--quiet", "--no-mesh"]) == replay.EXIT_TRUNCATED
    humans = _messages(out).get("/humans", [])
    assert 0 < len(humans) < 30


@needs_weights
def test_replay_without_ground_truth_notes_it(sim_bag: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    no_gt = tmp_path / "no_gt"
    _copy_topics(sim_bag, no_gt, {"/camera/keypoints", "/camera/camera_info", "/tf", "/tf_static"})
    assert replay.main([str(no_gt), "--out", str(tmp_path / "o"), "--quiet", "--no-markers"]) == 0
    assert "'glopro evaluate' needs it" in capsys.readouterr().err
    assert "/ground_truth" not in _messages(tmp_path / "o")
