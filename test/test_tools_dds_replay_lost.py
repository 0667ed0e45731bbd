"""glopro replay --via-dds when the node answers some frames with nothing: those are counted lost.

The player sends every frame that has a camera pose and intrinsics; it does not decode images, so a
truncated image (a recording cut short) reaches the real node over real DDS, which rejects it and
publishes nothing. Each such frame costs the player one --frame-timeout; the good frames answer in
well under a second, so the timeout below leaves a wide margin on a loaded machine.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from test_tools_dds_replay import _assert_same, _decoded

from glopro_ros.core.fusion import DEFAULT_FUSION_WEIGHTS
from glopro_ros.tools import replay, simulate_bag
from glopro_ros.tools.bag_typestore import glopro_typestore

REJECTED = (2, 4)  # frame indices whose image is cut short
FRAME_TIMEOUT_S = 6.0


def _cut_images(src: Path, dst: Path) -> list[float]:
    """`src` with the image data of the REJECTED frames halved; returns every image's stamp."""
    store = glopro_typestore()
    stamps = []
    with Reader(src) as reader, Writer(dst, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        out = {c.id: writer.add_connection(c.topic, c.msgtype, typestore=store,
                                           offered_qos_profiles=c.ext.offered_qos_profiles) for c in reader.connections}
        for connection, timestamp, raw in reader.messages():
            if connection.topic == simulate_bag.TOPICS["image"]:
                msg = store.deserialize_cdr(raw, connection.msgtype)
                if len(stamps) in REJECTED:
                    msg.data = msg.data[:len(msg.data) // 2]
                    raw = store.serialize_cdr(msg, connection.msgtype)
                stamps.append(msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec)
            writer.write(out[connection.id], timestamp, raw)
    return stamps


@pytest.mark.skipif(not DEFAULT_FUSION_WEIGHTS.exists(), reason=f"needs the trained {DEFAULT_FUSION_WEIGHTS.name}")
def test_frames_the_node_rejects_are_lost_and_the_rest_kept(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    simulated, bag = tmp_path / "sim", tmp_path / "cut"
    assert simulate_bag.main([str(simulated), "--duration", "0.6", "--people", "1", "--fps", "10", "--seed", "2",
                              "--images", "--scale", "0.25"]) == 0  # 160x120 images: small datagrams over DDS
    stamps = _cut_images(simulated, bag)
    assert len(stamps) == 6
    offline, dds = tmp_path / "offline", tmp_path / "dds"
    common = ["--input", "image", "--quiet", "--no-mesh"]
    assert replay.main([str(bag), "--out", str(offline), *common]) == replay.EXIT_OK
    assert "4/6 image frames processed" in capsys.readouterr().out  # offline decodes the images: 2 skipped
    assert replay.main([str(bag), "--out", str(dds), *common, "--via-dds",
                        "--frame-timeout", str(FRAME_TIMEOUT_S)]) == replay.EXIT_OK  # lost frames are not fatal
    captured = capsys.readouterr()
    assert "4/6 image frames processed" in captured.out and "2 lost over DDS" in captured.out, captured.out
    lost_notes = [line for line in captured.err.splitlines() if "counted as lost" in line]
    assert lost_notes == [f"glopro replay: note: frame at {stamps[i]:.3f}: no output from the node within "
                          f"{FRAME_TIMEOUT_S} s; counted as lost" for i in REJECTED], captured.err
    humans = _decoded(dds, "/humans")
    kept = [s for i, s in enumerate(stamps) if i not in REJECTED]
    assert [m.header.stamp.sec + 1e-9 * m.header.stamp.nanosec for m in humans] == pytest.approx(kept, abs=1e-9)
    for topic in ("/humans", "/markers"):  # the node's answers to the other frames, as offline replay gives them
        _assert_same(_decoded(dds, topic), _decoded(offline, topic), topic)
    assert len(_decoded(dds, "/ground_truth")) == len(_decoded(dds, "/tf")) == 6  # inputs copied in full
