"""Writing MCAP rosbag2 files of rclpy messages offline, and the messages the bag tools share.

Messages are serialised by rclpy (CDR, no DDS, no rclpy.init) and written by rosbags, whose
typestore knows the glopro_ros types, so `ros2 bag play`, Foxglove and our readers all decode them.
/tf_static is recorded as transient-local like tf2's static broadcaster, so late subscribers of a
played bag still get it. Bags are byte-for-byte reproducible (see McapBagWriter.write).
"""
from __future__ import annotations

from pathlib import Path
from types import TracebackType

import numpy as np
import torch
from geometry_msgs.msg import TransformStamped
from rclpy.serialization import serialize_message
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header
from tf2_msgs.msg import TFMessage

from glopro_ros.core.gaussian_state import FLAT_DIM, GaussianBodyState
from glopro_ros.core.propagation import PointsGaussian
from glopro_ros.core.so3 import matrix_to_quat
from glopro_ros.msg import HumanState, HumanStateArray
from glopro_ros.ros.conversions import TrackInfo, human_state_array, time_msg
from glopro_ros.tools.bag_typestore import glopro_typestore

_NEVER = QosTime(0, 0)
TF_STATIC_QOS = Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL, _NEVER, _NEVER,
                    QosLiveliness.AUTOMATIC, _NEVER, False)
GROUND_TRUTH_VARIANCE = 1e-10  # m^2 / rad^2: "exact", but still a valid (positive definite) covariance


def message_type(msg: object) -> str:
    """ROS 2 type name of an rclpy message instance, e.g. 'sensor_msgs/msg/Image'."""
    package = type(msg).__module__.split(".")[0]
    return f"{package}/msg/{type(msg).__name__}"


class McapBagWriter:
    """An MCAP rosbag2 (version 9) taking rclpy messages or already-serialised CDR bytes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(f"output bag {self.path} exists; remove it or choose another name")
        self.typestore = glopro_typestore()
        self._writer = Writer(self.path, version=9, storage_plugin=StoragePlugin.MCAP)
        self._connections: dict[str, object] = {}
        self.counts: dict[str, int] = {}

    def __enter__(self) -> "McapBagWriter":
        self._writer.open()
        return self

    def __exit__(self, kind: type | None, value: BaseException | None, trace: TracebackType | None) -> None:
        self._writer.close()

    def write(self, topic: str, stamp_ns: int, msg: object) -> None:
        """rclpy's CDR leaves alignment padding uninitialised; a round trip through rosbags zeroes it, so
        equal messages give equal bytes and a bag is a function of its inputs."""
        msgtype = message_type(msg)
        data = self.typestore.serialize_cdr(self.typestore.deserialize_cdr(serialize_message(msg), msgtype), msgtype)
        self.write_raw(topic, msgtype, stamp_ns, data)

    def write_raw(self, topic: str, msgtype: str, stamp_ns: int, data: bytes) -> None:
        connection = self._connections.get(topic)
        if connection is None:
            qos = [TF_STATIC_QOS] if topic == "/tf_static" else []
            connection = self._writer.add_connection(topic, msgtype, typestore=self.typestore, offered_qos_profiles=qos)
            self._connections[topic] = connection
        self._writer.write(connection, int(stamp_ns), bytes(data))
        self.counts[topic] = self.counts.get(topic, 0) + 1


def stamp_ns(seconds: float) -> int:
    return int(round(seconds * 1e9))


def transform_msg(parent: str, child: str, stamp: float, parent_t_child: np.ndarray) -> TransformStamped:
    """TransformStamped giving child's pose in parent (4x4)."""
    tf = TransformStamped(header=Header(stamp=time_msg(stamp), frame_id=parent), child_frame_id=child)
    t = tf.transform.translation
    t.x, t.y, t.z = (float(v) for v in parent_t_child[:3, 3])
    q = matrix_to_quat(torch.as_tensor(parent_t_child[None, :3, :3], dtype=torch.float64))[0].numpy()
    r = tf.transform.rotation
    r.x, r.y, r.z, r.w = (float(v) for v in q)
    return tf


def tf_message(*transforms: TransformStamped) -> TFMessage:
    return TFMessage(transforms=list(transforms))


def camera_info_msg(stamp: float, frame: str, k: np.ndarray, width: int, height: int) -> CameraInfo:
    """Pinhole CameraInfo without distortion (the keypoints and images are undistorted)."""
    k = np.asarray(k, dtype=float)
    p = np.zeros((3, 4))
    p[:, :3] = k
    return CameraInfo(header=Header(stamp=time_msg(stamp), frame_id=frame), width=int(width), height=int(height),
                      distortion_model="plumb_bob", d=[0.0] * 5, k=k.ravel().tolist(),
                      r=np.eye(3).ravel().tolist(), p=p.ravel().tolist())


def ground_truth_msg(stamp: float, frame: str, body_model: str, track_ids: np.ndarray, betas: np.ndarray,
                     body_pose: np.ndarray, root_rot: np.ndarray, root_pos: np.ndarray,
                     joints: np.ndarray) -> HumanStateArray:
    """HumanStateArray of N true people (exact values, tiny covariances), track_id = true person id."""
    n = len(track_ids)
    f64 = dict(dtype=torch.float64)
    state = GaussianBodyState(torch.as_tensor(betas, **f64).reshape(n, 10), torch.as_tensor(body_pose, **f64).reshape(n, 23, 3),
                              torch.as_tensor(root_rot, **f64).reshape(n, 3, 3), torch.as_tensor(root_pos, **f64).reshape(n, 3),
                              torch.eye(FLAT_DIM, **f64).expand(n, -1, -1) * GROUND_TRUTH_VARIANCE, frame)
    points = PointsGaussian(torch.as_tensor(joints, **f64).reshape(n, 24, 3),
                            torch.eye(3, **f64).expand(n, 24, -1, -1) * GROUND_TRUTH_VARIANCE, frame)
    info = TrackInfo(np.asarray(track_ids), np.full(n, HumanState.STATUS_CONFIRMED), np.ones(n), np.full(n, stamp))
    msg, _ = human_state_array(Header(stamp=time_msg(stamp), frame_id=frame), body_model, state, points, info)
    return msg
