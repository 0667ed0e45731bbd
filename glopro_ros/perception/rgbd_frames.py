"""Read RGB(-D) frames with intrinsics from a rosbag2 (sqlite3 or MCAP) without ROS, via `rosbags`.

Used to evaluate perception on recorded robot data; images go through the same decoder as the
node's (image_io), so the bag path tests the live path's decoding too.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from glopro_ros.perception.image_io import decode_image


@dataclass
class RgbdFrame:
    stamp_ns: int
    rgb: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray | None  # (H, W) float32 metres, NaN where invalid
    k: np.ndarray  # (3, 3)
    frame_id: str


def decode_depth(data: np.ndarray, width: int, height: int, step: int, encoding: str,
                 is_bigendian: bool = False) -> np.ndarray:
    """32FC1 (metres) or 16UC1 (millimetres) -> float32 metres, NaN where there is no return."""
    enc = encoding.upper()
    if enc not in ("32FC1", "16UC1", "MONO16"):
        raise ValueError(f"unsupported depth encoding {encoding!r} (32FC1 or 16UC1)")
    item = 4 if enc == "32FC1" else 2
    rows = np.frombuffer(bytes(data), np.uint8)[: step * height].reshape(height, step)
    rows = np.ascontiguousarray(rows[:, : width * item])
    order = ">" if is_bigendian else "<"
    if enc == "32FC1":
        depth = rows.view(order + "f4").reshape(height, width).astype(np.float32)
    else:
        depth = rows.view(order + "u2").reshape(height, width).astype(np.float32) / 1000.0
    depth[~np.isfinite(depth) | (depth <= 0)] = np.nan
    return depth


def read_rgbd_frames(bag: Path, image_topic: str, info_topic: str,
                     depth_topic: str | None = None, max_gap_ns: int = 50_000_000
                     ) -> list[RgbdFrame]:
    """Frames of image_topic with the camera_info and depth nearest by header stamp.

    Pairs further apart than max_gap_ns are not made (depth None, or no frame without intrinsics).
    """
    from rosbags.highlevel import AnyReader

    images, infos, depths = [], [], []
    with AnyReader([Path(bag)]) as reader:
        topics = {image_topic, info_topic} | ({depth_topic} if depth_topic else set())
        conns = [c for c in reader.connections if c.topic in topics]
        missing = topics - {c.topic for c in conns}
        if missing:
            raise ValueError(f"{bag}: no topic(s) {sorted(missing)}")
        for con, _, raw in reader.messages(connections=conns):
            msg = reader.deserialize(raw, con.msgtype)
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            if con.topic == info_topic:
                infos.append((stamp, np.asarray(msg.k, float).reshape(3, 3)))
            elif con.topic == image_topic:
                images.append((stamp, msg.header.frame_id, decode_image(
                    msg.data, msg.width, msg.height, msg.step, msg.encoding,
                    bool(msg.is_bigendian))))
            else:
                depths.append((stamp, decode_depth(msg.data, msg.width, msg.height, msg.step,
                                                   msg.encoding, bool(msg.is_bigendian))))

    def nearest(items: list, stamp: int):
        if not items:
            return None
        best = min(items, key=lambda it: abs(it[0] - stamp))
        return best[1] if abs(best[0] - stamp) <= max_gap_ns else None

    frames = []
    for stamp, frame_id, rgb in images:
        k = nearest(infos, stamp)
        if k is not None:
            frames.append(RgbdFrame(stamp, rgb, nearest(depths, stamp), k, frame_id))
    return frames
