"""glopro replay of ROS 1 bags: a simulated scene written as a real ROS 1 bag replays to the same human
states as its rosbag2 original, offline and over DDS, and evaluates the same.

The ROS 1 bag is made the way `rosbag record` would have stored the messages: ROS 1 definitions and
md5 sums (rosbags' Noetic typestore, glopro_ros's messages in their ROS 1 form), Header.seq counting
up, LZ4 chunks, /tf_static latched. Replay reads it through rosbags' AnyReader and converts each
message to its ROS 2 type, so everything after reading is what a rosbag2 gives.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from rosbags.rosbag1 import Reader as Reader1
from rosbags.rosbag1 import Writer as Writer1
from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore
from test_tools_dds_replay import _assert_same, _decoded
from test_tools_simulate_replay import _messages

from glopro_ros.core.fusion import DEFAULT_FUSION_WEIGHTS
from glopro_ros.tools import evaluate, replay, simulate_bag
from glopro_ros.tools.bag_typestore import glopro_typestore, msg_directory

needs_weights = pytest.mark.skipif(not DEFAULT_FUSION_WEIGHTS.exists(),
                                   reason=f"fusion weights {DEFAULT_FUSION_WEIGHTS.name} not trained yet")
# md5 sums of ROS 1 Noetic's own definitions (rosmsg md5): the bag must be what ROS 1 tools write.
ROS1_MD5 = {"tf2_msgs/msg/TFMessage": "94810edda583a504dfda3829e70d7eec",
            "sensor_msgs/msg/CameraInfo": "c9a58c1b0b154e0e6da7578cb991d214"}


def ros1_typestore() -> Typestore:
    """Noetic's types, glopro_ros's, and tf2_msgs/TFMessage (not in rosbags' Noetic store)."""
    store = glopro_typestore(Stores.ROS1_NOETIC)
    store.register(get_types_from_msg("geometry_msgs/TransformStamped[] transforms", "tf2_msgs/msg/TFMessage"))
    return store


def _count_headers(msg: object, seq: int) -> None:
    """Header.seq as a ROS 1 publisher sets it (the frame's own header and each transform's)."""
    for item in [msg, *getattr(msg, "transforms", [])]:
        if hasattr(item, "header"):
            item.header.seq = seq


def to_ros1(src: Path, dst: Path, topics: set[str] | None = None) -> None:
    """Each message of rosbag2 `src` (or of `topics`) as ROS 1 into `dst`, in the same order and log times."""
    ros2, ros1 = glopro_typestore(), ros1_typestore()
    writer = Writer1(dst)
    writer.set_compression(Writer1.CompressionFormat.LZ4)
    with Reader(src) as reader, writer:
        wanted = [c for c in reader.connections if topics is None or c.topic in topics]
        out = {c.id: writer.add_connection(c.topic, c.msgtype, typestore=ros1, latching=int(c.topic == "/tf_static"))
               for c in wanted}
        for seq, (connection, timestamp, raw) in enumerate(reader.messages(connections=wanted), start=1):
            msg = ros1.deserialize_ros1(ros2.cdr_to_ros1(raw, connection.msgtype), connection.msgtype)
            _count_headers(msg, seq)
            writer.write(out[connection.id], timestamp, bytes(ros1.serialize_ros1(msg, connection.msgtype)))


def _metrics(bag: Path) -> str:
    """evaluate's overall metrics as JSON (NaN compares equal as text)."""
    return json.dumps(evaluate.evaluate([evaluate.read_sequence(bag)])["overall"], sort_keys=True)


@pytest.fixture(scope="module")
def bags(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 10-frame simulated scene (keypoints, CameraInfo, /tf, /tf_static, ground truth) as rosbag2 and ROS 1."""
    folder = tmp_path_factory.mktemp("ros1")
    ros2_bag, ros1_bag = folder / "scene", folder / "scene.bag"
    assert simulate_bag.main([str(ros2_bag), "--duration", "1", "--people", "2", "--fps", "10", "--seed", "3"]) == 0
    to_ros1(ros2_bag, ros1_bag)
    return ros2_bag, ros1_bag


def test_the_bag_is_a_ros1_bag(bags: tuple[Path, Path]) -> None:
    with Reader1(bags[1]) as reader:
        connections = {c.topic: c for c in reader.connections}
        assert set(connections) == {"/tf", "/tf_static", "/camera/camera_info", "/camera/keypoints", "/ground_truth"}
        for connection in connections.values():
            assert connection.msgdef.data.count("uint32 seq") >= 1, connection.topic  # ROS 1 std_msgs/Header
            assert connection.digest == ROS1_MD5.get(connection.msgtype, connection.digest), connection.topic
        assert connections["/tf_static"].ext.latching == 1
        seqs = [ros1_typestore().deserialize_ros1(raw, c.msgtype).header.seq for c, _, raw in
                reader.messages(connections=[connections["/camera/keypoints"]])]
    assert len(seqs) == 10 and len(set(seqs)) == 10 and min(seqs) > 0


@needs_weights
def test_ros1_bag_replays_and_evaluates_like_its_rosbag2_original(bags: tuple[Path, Path], tmp_path: Path) -> None:
    ros2_bag, ros1_bag = bags
    from_ros2, from_ros1 = tmp_path / "from_ros2", tmp_path / "from_ros1"
    assert replay.main([str(ros2_bag), "--out", str(from_ros2), "--quiet"]) == 0
    assert replay.main([str(ros1_bag), "--out", str(from_ros1), "--quiet"]) == 0
    expected, got = _messages(from_ros2), _messages(from_ros1)
    assert set(got) == {"/tf", "/tf_static", "/ground_truth", "/humans", "/markers"}
    assert len(got["/humans"]) == 10 and any(_decoded(from_ros1, "/humans")[-1].humans)
    for topic in got:  # outputs, and TF and ground truth converted to CDR: byte for byte
        assert got[topic] == expected[topic], topic
    # Ground truth and estimates in a ROS 1 bag: glopro evaluate reads it like the MCAP.
    evaluated_ros1 = tmp_path / "evaluated.bag"
    to_ros1(from_ros2, evaluated_ros1, {"/humans", "/ground_truth", "/tf"})
    assert _metrics(evaluated_ros1) == _metrics(from_ros2)


@needs_weights
def test_ros1_bag_via_dds_gives_the_offline_human_states(bags: tuple[Path, Path], tmp_path: Path) -> None:
    """Over DDS the player publishes the ROS 1 messages as ROS 2 CDR (CameraInfo's K becomes k on the way)."""
    ros2_bag, ros1_bag = bags
    offline, dds = tmp_path / "offline", tmp_path / "dds"
    assert replay.main([str(ros2_bag), "--out", str(offline), "--quiet", "--no-mesh"]) == 0
    assert replay.main([str(ros1_bag), "--out", str(dds), "--quiet", "--no-mesh", "--via-dds"]) == 0
    for topic in ("/humans", "/markers", "/ground_truth"):
        expected = _decoded(offline, topic)
        assert len(expected) == 10, topic
        _assert_same(_decoded(dds, topic), expected, topic)


def test_ros1_bags_replay_cannot_take_are_refused_clearly(bags: tuple[Path, Path], tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    """A type whose ROS 1 definition differs from glopro_ros's (here an older Keypoints2DArray without
    image_height), and a ROS 1 bag without the .bag suffix, which rosbags cannot tell from a rosbag2."""
    ros1 = ros1_typestore()
    old = "std_msgs/Header header\nstring skeleton\nuint32 image_width\nglopro_ros/Keypoints2D[] people\n"
    older_store = get_typestore(Stores.ROS1_NOETIC)
    older_store.register({**get_types_from_msg((msg_directory() / "Keypoints2D.msg").read_text(), "glopro_ros/msg/Keypoints2D"),
                          **get_types_from_msg(old, "glopro_ros/msg/Keypoints2DArray")})
    older = tmp_path / "older.bag"
    with Reader1(bags[1]) as reader, Writer1(older) as writer:
        for connection in reader.connections:
            store = older_store if connection.msgtype == "glopro_ros/msg/Keypoints2DArray" else ros1
            writer.add_connection(connection.topic, connection.msgtype, typestore=store)
    assert replay.main([str(older), "--out", str(tmp_path / "o"), "--quiet"]) == replay.EXIT_UNKNOWN_TYPE
    assert "/camera/keypoints: this ROS 1 bag's glopro_ros/msg/Keypoints2DArray differs" in capsys.readouterr().err
    renamed = tmp_path / "scene.ros1"
    renamed.write_bytes(bags[1].read_bytes())
    assert replay.main([str(renamed), "--out", str(tmp_path / "o"), "--quiet"]) == replay.EXIT_UNREADABLE
    assert "only with the .bag suffix" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
