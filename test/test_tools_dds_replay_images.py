"""glopro replay (offline and --via-dds) on the shipped real-robot frames (HSR: 640x480 images, epoch stamps).

Two ways this path lost every frame: best-effort 900 KB images between processes do not fit Fast
DDS's default shared-memory segment (the replay's node subscribes reliable), and outputs were matched by float seconds, which
drop the last nanoseconds of an epoch stamp (matched by the exact header stamp now).
"""
from __future__ import annotations

from pathlib import Path

from rosbags.highlevel import AnyReader
from test_tools_dds_replay import _decoded

from glopro_ros.tools import replay
from glopro_ros.tools.bag_typestore import glopro_typestore
from glopro_ros.tools.demo import HSR_BAG, HSR_CAMERA_POSE, HSR_IMAGE_TOPIC


def _image_stamps(bag: Path) -> list[tuple[int, int]]:
    with AnyReader([bag], default_typestore=glopro_typestore()) as reader:
        wanted = [c for c in reader.connections if c.topic == HSR_IMAGE_TOPIC]
        headers = [reader.deserialize(raw, c.msgtype).header for c, _, raw in reader.messages(connections=wanted)]
    return [(h.stamp.sec, h.stamp.nanosec) for h in headers]


def test_real_robot_images_replay_through_the_node(tmp_path: Path) -> None:
    out = tmp_path / "hsr"
    assert replay.main([str(HSR_BAG), "--out", str(out), "--image-topic", HSR_IMAGE_TOPIC,
                        "--static-camera-pose", HSR_CAMERA_POSE, "--via-dds", "--quiet"]) == replay.EXIT_OK
    humans = _decoded(out, "/humans")
    assert [(m.header.stamp.sec, m.header.stamp.nanosec) for m in humans] == _image_stamps(HSR_BAG)
    assert len(_decoded(out, "/markers")) == len(humans)
    assert any(m.humans for m in humans), "the node found nobody in the HSR frames"


def test_offline_replay_keeps_the_exact_epoch_stamps(tmp_path: Path) -> None:
    out = tmp_path / "hsr_offline"
    assert replay.main([str(HSR_BAG), "--out", str(out), "--image-topic", HSR_IMAGE_TOPIC,
                        "--static-camera-pose", HSR_CAMERA_POSE, "--quiet"]) == replay.EXIT_OK
    humans = _decoded(out, "/humans")
    assert [(m.header.stamp.sec, m.header.stamp.nanosec) for m in humans] == _image_stamps(HSR_BAG)
