"""`glopro replay BAG --out OUT --via-dds`: a bag played to the real glopro node over DDS, lock-step.

Offline replay calls the pipeline in-process; this runs the deployed path instead (the node
process, its parameters, subscriptions, TF source and serialisation) on the same bag, so both give
the same /humans and /markers, and a bag can be checked against what a robot would publish.

The node (``python -m glopro_ros.ros.node``) runs as a child process on a private, localhost-only
graph (isolated_ros_environment), its parameters set from the replay options and its topics to the
bag's. This process plays the bag's /tf, /tf_static, CameraInfo and frames as serialised CDR (no
decoding on the way) and records the node's outputs. The node keeps only its newest frame, so a
free-running player would make the output depend on timing; the player goes lock-step instead:
TF and CameraInfo up to the frame (TF beyond it until one transform is at or after the frame's
stamp, so the node can interpolate), then the frame, then it waits for the node's HumanStateArray
(and MarkerArray) with that stamp. No output within --frame-timeout counts the frame as lost, and
says so. Frames that offline replay skips (no camera pose or intrinsics anywhere in the bag) are
counted the same way and not sent: the node would skip them too. No use_sim_time is needed: the
node stamps its outputs with the input's stamps and uses wall time only for its TF wait and
diagnostics. The node runs with markers for every frame (marker_rate 0, as offline replay), BlazePose
landmarks for everyone every frame (max_landmarks 0, as offline) and reliable images (image_qos): with Fast DDS's defaults a best-effort 640x480 image does not fit its
shared-memory segment (512 KB) and most frames are lost (README, "Images between processes").
"""
from __future__ import annotations

import importlib
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from tqdm import tqdm
from visualization_msgs.msg import MarkerArray

from glopro_ros.core.tf_buffer import TransformLookupError
from glopro_ros.msg import HumanStateArray
from glopro_ros.ros.background_node import BackgroundNode
from glopro_ros.ros.isolation import isolated_ros_environment
from glopro_ros.tools.bag_output import McapBagWriter, stamp_ns, tf_message
from glopro_ros.tools.replay import (EXIT_PIPELINE, EXIT_TRUNCATED, BagReadError, Replay, ReplayError, ReplayOptions, ReplaySummary,
                                     _stamp, open_bag)

STARTUP_TIMEOUT_S = 120.0  # the node loads its models before it subscribes (image input: the pose models too)
NODE_TF_TIMEOUT_S = 1.0  # the node's wait for TF; only covers DDS delivering /tf after the frame
QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
STATIC_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def message_class(msgtype: str) -> type:
    """rclpy class of a ROS 2 type name, e.g. 'geometry_msgs/msg/TransformStamped' -> geometry_msgs.msg."""
    package, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


def node_command(replay: Replay) -> list[str]:
    """The node's command line: parameters mirror ReplayOptions, so both replays configure the same pipeline."""
    o = replay.options
    params = {"input": replay.summary.input, "device": "cpu", "world_frame": o.world_frame,
              "camera_info_topic": replay.info_topic, "filter_variant": o.filter_variant,
              "max_people": str(o.max_people), "motion_rate": repr(float(o.motion_rate)),
              "publish_markers": str(o.markers).lower(), "marker_mesh": str(o.mesh).lower(),
              "marker_sigma": repr(float(o.marker_sigma)), "marker_rate": "0.0", "image_qos": "reliable",
              "max_landmarks": "0",  # everyone every frame, as offline (the node's real-time default is 2)
              "tf_timeout": repr(NODE_TF_TIMEOUT_S),
              # The built-in TF buffer is the one offline replay uses: same interpolation, same numbers.
              "prefer_tf2_ros": "false",
              f"{replay.summary.input}_topic": replay.frame_topic}
    # Empty strings would reach the node as YAML null, not ''; the node's default is '' anyway.
    params.update({k: v for k, v in (("camera_frame", o.camera_frame), ("body_model_path", o.body_model_path),
                                     ("regressor_checkpoint", o.regressor_checkpoint)) if v})
    return [sys.executable, "-m", "glopro_ros.ros.node", "--ros-args",
            *(arg for k, v in params.items() for arg in ("-p", f"{k}:={v}"))]


@dataclass
class Outgoing:
    """A TF or CameraInfo message waiting to be published: bag time, topic, CDR, newest transform stamp."""

    timestamp: int
    topic: str
    data: bytes
    tf_stamp: float | None


class Player:
    """This process's ROS side: publishers of the bag's inputs, subscribers of the node's outputs."""

    def __init__(self, env: dict[str, str], topics: dict[str, str], markers: bool) -> None:
        self.ros = BackgroundNode("glopro_dds_replay", env)
        node = self.ros.node
        self.publishers = {topic: node.create_publisher(message_class(msgtype), topic,
                                                        STATIC_QOS if topic == "/tf_static" else QOS)
                           for topic, msgtype in topics.items()}
        self._cond = threading.Condition()
        self._humans: dict[int, HumanStateArray] = {}
        self._markers: dict[int, MarkerArray] = {}
        self._active = False
        self.markers = markers
        self.subscriptions = [node.create_subscription(HumanStateArray, "/humans", self._on_humans, 100)]
        if markers:
            self.subscriptions.append(node.create_subscription(MarkerArray, "/markers", self._on_markers, 100))
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)

    def _on_humans(self, msg: HumanStateArray) -> None:
        with self._cond:
            self._humans[msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec] = msg
            self._cond.notify_all()

    def _on_markers(self, msg: MarkerArray) -> None:
        if msg.markers:  # always starts with a DELETEALL carrying the frame's header
            stamp = msg.markers[0].header.stamp
            with self._cond:
                self._markers[stamp.sec * 10**9 + stamp.nanosec] = msg
                self._cond.notify_all()

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        if any(s.name == "glopro: pipeline" and s.message == "processing" for s in msg.status):
            with self._cond:
                self._active = True
                self._cond.notify_all()

    def wait_ready(self, node: subprocess.Popen, timeout: float) -> None:
        """Until the node is active and every publisher and subscriber is matched with it."""
        deadline = time.monotonic() + timeout
        while True:
            if node.poll() is not None:
                raise ReplayError(EXIT_PIPELINE, f"the node exited with code {node.returncode} before it was ready")
            matched = (all(p.get_subscription_count() > 0 for p in self.publishers.values())
                       and all(s.get_publisher_count() > 0 for s in self.subscriptions))
            if matched and self._active:
                return
            if time.monotonic() > deadline:
                raise ReplayError(EXIT_PIPELINE, f"the node was not ready within {timeout:.0f} s (active: {self._active}, "
                                  f"topics matched: {matched})")
            time.sleep(0.05)

    def publish(self, topic: str, data: bytes | object) -> None:
        """Serialised CDR as is (rclpy publishes bytes without decoding them) or an rclpy message."""
        self.publishers[topic].publish(data)

    def wait_outputs(self, stamp: int, timeout: float) -> tuple[HumanStateArray | None, MarkerArray | None]:
        """The node's outputs for the frame at `stamp` (ns); (None, None) if they did not all come in time.
        Older outputs still waiting (from a frame counted lost) are discarded."""
        def complete() -> bool:
            return stamp in self._humans and (not self.markers or stamp in self._markers)

        with self._cond:
            done = self._cond.wait_for(complete, timeout)
            humans, markers = self._humans.pop(stamp, None), self._markers.pop(stamp, None)
            for outputs in (self._humans, self._markers):
                for old in [s for s in outputs if s <= stamp]:
                    del outputs[old]
        return (humans, markers) if done else (None, None)

    def close(self) -> None:
        self.ros.close()


class InputFeed:
    """The bag's TF and CameraInfo in bag order, published just ahead of each frame."""

    def __init__(self, replay: Replay) -> None:
        self.items: list[Outgoing] = []
        for connection, timestamp, raw in replay.messages(replay.connections(*replay.tf_topics, replay.info_topic)):
            tf_stamp = None
            if connection.topic == "/tf":
                transforms = replay.decode(raw, connection.msgtype).transforms
                tf_stamp = max((_stamp(t.header) for t in transforms), default=None)
            self.items.append(Outgoing(timestamp, connection.topic, replay.cdr(connection, raw), tf_stamp))
        self.next = 0
        self.newest_tf = float("-inf")
        self.has_tf = any(item.tf_stamp is not None for item in self.items)

    def publish_until(self, player: Player, timestamp: int, stamp: float) -> None:
        """Everything recorded up to the frame's bag time, then /tf on until it covers the frame's stamp."""
        while self.next < len(self.items) and (self.items[self.next].timestamp <= timestamp
                                               or (self.has_tf and self.newest_tf < stamp)):
            item = self.items[self.next]
            player.publish(item.topic, item.data)
            if item.tf_stamp is not None:
                self.newest_tf = max(self.newest_tf, item.tf_stamp)
            self.next += 1


def _play(replay: Replay, player: Player, out: McapBagWriter, node: subprocess.Popen) -> None:
    """The lock-step loop: bag order, one frame at a time, outputs written as they come back."""
    o, summary = replay.options, replay.summary
    feed = InputFeed(replay)
    copied = replay.connections(*replay.tf_topics, replay.gt_topic)
    frames = replay.connections(replay.frame_topic)
    last_stamp: float | None = None
    with tqdm(total=sum(c.msgcount for c in frames), desc="replay via DDS", unit="frame", disable=not o.progress,
              leave=False) as bar:
        for connection, timestamp, raw in replay.messages(copied + frames):
            if connection.topic != replay.frame_topic:
                replay.copy(out, connection, timestamp, raw)
                continue
            bar.update()
            summary.frames += 1
            header = replay.decode(raw, connection.msgtype).header
            stamp, camera_frame = _stamp(header), o.camera_frame or header.frame_id
            if last_stamp is not None and stamp < last_stamp:
                summary.resets += 1  # the node resets itself
            last_stamp = stamp
            static = replay.static_camera(camera_frame, stamp)
            if static is not None:
                player.publish("/tf_static", tf_message(static))
                out.write("/tf_static", stamp_ns(stamp), tf_message(static))
            feed.publish_until(player, timestamp, stamp)
            if not _has_pose_and_intrinsics(replay, camera_frame, stamp):
                continue
            if node.poll() is not None:
                raise ReplayError(EXIT_PIPELINE, f"the node exited with code {node.returncode} during the replay")
            player.publish(replay.frame_topic, replay.cdr(connection, raw))
            # The node's outputs carry the frame's header stamp; float seconds lose its last digits at epoch times.
            humans, markers = player.wait_outputs(header.stamp.sec * 10**9 + header.stamp.nanosec, o.frame_timeout)
            if humans is None:
                summary.lost += 1
                summary.problems.append(f"frame at {stamp:.3f}: no output from the node within {o.frame_timeout} s; "
                                        "counted as lost")
                continue
            out.write("/humans", stamp_ns(stamp), humans)
            if markers is not None:
                out.write("/markers", stamp_ns(stamp), markers)
            summary.processed += 1


def _has_pose_and_intrinsics(replay: Replay, camera_frame: str, stamp: float) -> bool:
    """What offline replay checks before processing a frame, counted the same way."""
    if replay.intrinsics(stamp) is None:
        replay.summary.no_camera_info += 1
        return False
    try:
        replay.tf.lookup(replay.options.world_frame, camera_frame, stamp)
    except TransformLookupError as error:
        if not replay.summary.no_pose:
            replay.summary.problems.append(f"no camera pose at {stamp:.3f} (first of the skipped frames): {error}")
        replay.summary.no_pose += 1
        return False
    return True


def _stop(node: subprocess.Popen) -> None:
    """SIGINT (the node's clean shutdown), then SIGKILL if it hangs."""
    if node.poll() is None:
        node.send_signal(signal.SIGINT)
        try:
            node.wait(timeout=15)
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait()


def replay_bag_via_dds(bag: Path, out_bag: Path, options: ReplayOptions) -> ReplaySummary:
    """Play `bag` to a glopro node over DDS into `out_bag`; raises ReplayError (with its exit code) after
    writing what it could. The node's log is shown with any error."""
    reader = open_bag(bag, out_bag)
    try:
        replay = Replay(reader, options)
        replay.first_pass()
        topics = {c.topic: c.msgtype for c in replay.connections(*replay.tf_topics, replay.info_topic,
                                                                  replay.frame_topic)}
        topics.setdefault("/tf_static", "tf2_msgs/msg/TFMessage")
        with tempfile.TemporaryDirectory(prefix="glopro_dds_replay_") as tmp:
            env = isolated_ros_environment(Path(tmp))
            log = Path(tmp) / "node.log"
            with log.open("w") as log_file:
                node = subprocess.Popen(node_command(replay), env=env, stdout=log_file, stderr=subprocess.STDOUT)
            player = Player(env, topics, options.markers)
            try:
                player.wait_ready(node, STARTUP_TIMEOUT_S)
                with McapBagWriter(out_bag) as out:
                    try:
                        _play(replay, player, out, node)
                    except BagReadError as error:
                        raise ReplayError(EXIT_TRUNCATED, f"reading {bag} failed after {replay.summary.frames} frames ({error}); "
                                          f"{out_bag} holds the frames before") from error
                    finally:
                        replay.summary.topics = dict(out.counts)
            except ReplayError as error:
                _stop(node)
                raise ReplayError(error.code, f"{error}\nnode log (last lines):\n{_tail(log)}") from error
            finally:
                player.close()
                _stop(node)
        return replay.summary
    finally:
        reader.close()


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
