"""`rosbags` writes and reads the package's messages in an MCAP bag, compatible with rclpy's CDR."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from rclpy.serialization import deserialize_message, serialize_message
from rosbags.rosbag2 import Reader, StoragePlugin, Writer

from glopro_ros.msg import HumanStateArray
from glopro_ros.ros.demo_exchange import example_human_state
from glopro_ros.tools.bag_typestore import glopro_typestore, msg_directory

TYPE = "glopro_ros/msg/HumanStateArray"


def _rclpy_message(stamp_sec: int) -> HumanStateArray:
    msg = HumanStateArray(body_model="example", humans=[example_human_state(i, stamp_sec) for i in range(2)])
    msg.header.frame_id = "map"
    msg.header.stamp.sec = stamp_sec
    return msg


def test_typestore_hash_matches_rosidl_generated_hash() -> None:
    store = glopro_typestore()
    generated = Path(msg_directory()).parent / "msg"
    assert store.hash_rihs01(TYPE).startswith("RIHS01_")
    # rosidl writes the same hash into the type description it installs next to the .msg files.
    installed = [p for p in Path(__file__).resolve().parents[1].glob(".venv*/share/glopro_ros/msg/HumanStateArray.json")]
    for description in installed:
        assert store.hash_rihs01(TYPE) in description.read_text()
    assert generated.is_dir()


def test_mcap_bag_round_trip_of_rclpy_messages(tmp_path: Path) -> None:
    store = glopro_typestore()
    bag = tmp_path / "humans_bag"
    sent = [_rclpy_message(s) for s in range(5)]
    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        connection = writer.add_connection("/humans", TYPE, typestore=store)
        for msg in sent:
            writer.write(connection, msg.header.stamp.sec * 10**9, serialize_message(msg))
    assert list(bag.glob("*.mcap"))

    with Reader(bag) as reader:
        rows = list(reader.messages())
        assert [c.msgtype for c in reader.connections] == [TYPE]
    assert len(rows) == len(sent)
    for (connection, timestamp, raw), original in zip(rows, sent):
        assert timestamp == original.header.stamp.sec * 10**9
        assert deserialize_message(bytes(raw), HumanStateArray) == original
        decoded = store.deserialize_cdr(raw, connection.msgtype)
        assert decoded.header.frame_id == "map" and len(decoded.humans) == 2
        assert np.allclose(decoded.humans[1].joint_positions, original.humans[1].joint_positions)
        # rosbags' own serialisation decodes in rclpy to the same message.
        assert deserialize_message(bytes(store.serialize_cdr(decoded, TYPE)), HumanStateArray) == original
