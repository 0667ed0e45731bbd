"""`glopro replay BAG --out OUT_BAG`: the node's pipeline run offline over a bag, deterministically, without DDS.

Reads rosbag2 (MCAP or sqlite3) and ROS 1 bags (.bag; each message converted to the ROS 2 type of
its name, which must have the same fields) through rosbags' AnyReader, feeds every image or
keypoint frame in bag order with the camera pose from TF (the node's own TransformBuffer, filled
from /tf and /tf_static in a first pass, so a transform recorded just after its frame is not
missed) through HumanPipeline, and writes an MCAP bag with the input's TF, /humans and /markers as
the node would publish them (glopro_ros.ros.outputs), plus /ground_truth when the input has it.
Whatever was processed before an error is still written. A bag without TF (a fixed camera) can be
given one static camera pose (--static-camera-pose). --via-dds plays the bag to the real node over
DDS instead (glopro_ros.tools.dds_replay), for the same messages through the deployed code path.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from builtin_interfaces.msg import Time as TimeMsg
from geometry_msgs.msg import TransformStamped
from rosbags.convert.converter import is_same_wireformat
from rosbags.highlevel import AnyReader
from scipy.spatial.transform import Rotation
from std_msgs.msg import Header
from tqdm import tqdm

from glopro_ros.core.tf_buffer import TransformBuffer, TransformLookupError
from glopro_ros.pipeline import HumanPipeline, PipelineConfig, PipelineOutput
from glopro_ros.ros.outputs import OutputMessages, display_mesh
from glopro_ros.tools.bag_output import McapBagWriter, tf_message, transform_msg
from glopro_ros.tools.bag_typestore import glopro_typestore

EXIT_OK = 0  # every frame read; frames skipped, without camera pose or intrinsics, or lost over DDS are counted, not fatal
EXIT_USAGE = 2  # bad arguments, or the output exists
EXIT_UNREADABLE = 3  # the input is not a readable bag (missing, corrupt index or header)
EXIT_MISSING_TOPIC = 4  # no camera input, CameraInfo or TF topic; or no frame was processed
EXIT_UNKNOWN_TYPE = 5  # a chosen topic carries a message type the pipeline cannot take (or a differing ROS 1 definition)
EXIT_TRUNCATED = 6  # reading failed part way (truncated or corrupt data): output holds what came before
EXIT_PIPELINE = 7  # the pipeline could not be built (model or weights missing)
EXIT_CODES = (
    "Exit codes: 0 done (frames skipped, without camera pose or intrinsics, or lost over DDS are counted, not "
    "fatal); 2 bad arguments or output exists; 3 unreadable bag; 4 missing topic (camera input, CameraInfo, TF) or "
    "no frame processed; 5 unsupported message type (or a ROS 1 definition differing from the ROS 2 one); 6 bag "
    "truncated or corrupt part way (partial output written); 7 pipeline could not be built.")

TYPES = {"keypoints": "glopro_ros/msg/Keypoints2DArray", "image": "sensor_msgs/msg/Image",
         "camera_info": "sensor_msgs/msg/CameraInfo", "tf": "tf2_msgs/msg/TFMessage",
         "ground_truth": "glopro_ros/msg/HumanStateArray"}


class ReplayError(Exception):
    """A failure with its exit code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class BagReadError(Exception):
    """Reading or decoding the input failed part way (truncated file, corrupt chunk or message)."""


@dataclass
class ReplayOptions:
    input: str = "auto"  # "auto", "keypoints" or "image"
    world_frame: str = "map"
    camera_frame: str = ""  # empty: the frame header's frame_id
    keypoints_topic: str = ""  # empty: the only topic of that type
    image_topic: str = ""
    camera_info_topic: str = ""
    ground_truth_topic: str = "/ground_truth"
    filter_variant: str = PipelineConfig.filter_variant
    body_model_path: str = ""
    regressor_checkpoint: str = ""
    max_people: int = 10
    motion_rate: float = 30.0
    markers: bool = True
    mesh: bool = True
    marker_sigma: float = 2.0
    progress: bool = True
    static_camera_pose: tuple[float, ...] | None = None  # x y z qx qy qz qw of the camera in world_frame
    frame_timeout: float = 10.0  # --via-dds: seconds to wait for the node's output of one frame


@dataclass
class ReplaySummary:
    frames: int = 0
    processed: int = 0
    no_pose: int = 0
    no_camera_info: int = 0
    skipped: int = 0  # undecodable images or failed frames
    dropped_people: int = 0
    resets: int = 0
    lost: int = 0  # --via-dds: frames the node gave no output for within the timeout
    has_ground_truth: bool = False
    input: str = ""
    topics: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def _stamp(header: object) -> float:
    return float(header.stamp.sec) + 1e-9 * float(header.stamp.nanosec)


def _choose(reader: AnyReader, kind: str, wanted: str) -> str | None:
    """Topic for `kind`: the given one (type checked), else the only topic of its type."""
    types = {c.topic: c.msgtype for c in reader.connections}
    if wanted:
        if wanted not in types:
            raise ReplayError(EXIT_MISSING_TOPIC, f"topic {wanted} is not in the bag (topics: {', '.join(sorted(types))})")
        if types[wanted] != TYPES[kind]:
            raise ReplayError(EXIT_UNKNOWN_TYPE, f"topic {wanted} has type {types[wanted]}, expected {TYPES[kind]}")
        return wanted
    found = sorted(t for t, m in types.items() if m == TYPES[kind])
    if len(found) > 1:
        raise ReplayError(EXIT_USAGE, f"several {TYPES[kind]} topics ({', '.join(found)}): choose one with --{kind.replace('_', '-')}-topic")
    return found[0] if found else None


class Replay:
    """One replay: topic choice, first pass (TF, intrinsics), second pass (frames through the pipeline)."""

    def __init__(self, reader: AnyReader, options: ReplayOptions) -> None:
        self.reader, self.options = reader, options
        self.typestore = glopro_typestore()  # ROS 2 types: ROS 1 input is converted to them
        self.summary = ReplaySummary()
        topics = {c.topic: c.msgtype for c in reader.connections}
        kp, im = _choose(reader, "keypoints", options.keypoints_topic), _choose(reader, "image", options.image_topic)
        mode = options.input if options.input != "auto" else ("keypoints" if kp else "image")
        self.frame_topic = kp if mode == "keypoints" else im
        if self.frame_topic is None:
            unknown = sorted(f"{t} ({m})" for t, m in topics.items() if m not in TYPES.values())
            raise ReplayError(EXIT_MISSING_TOPIC, f"no {TYPES[mode]} topic to replay (input '{mode}'); topics: "
                              f"{', '.join(f'{t} ({m})' for t, m in sorted(topics.items()))}"
                              + (f"; unsupported types: {', '.join(unknown)}" if unknown else ""))
        self.summary.input = mode
        self.info_topic = _choose(reader, "camera_info", options.camera_info_topic)
        if self.info_topic is None:
            raise ReplayError(EXIT_MISSING_TOPIC, "no sensor_msgs/msg/CameraInfo topic: the pipeline needs the intrinsics")
        self.tf_topics = sorted(t for t, m in topics.items() if m == TYPES["tf"] and t in ("/tf", "/tf_static"))
        if not self.tf_topics and options.static_camera_pose is None:
            other = "".join(f"; {t} has type {topics[t]}" for t in ("/tf", "/tf_static") if t in topics)
            raise ReplayError(EXIT_MISSING_TOPIC, f"no /tf or /tf_static (tf2_msgs/msg/TFMessage){other}: no camera pose; "
                              "for a fixed camera give --static-camera-pose")
        gt = options.ground_truth_topic
        if gt and topics.get(gt) not in (None, TYPES["ground_truth"]):
            raise ReplayError(EXIT_UNKNOWN_TYPE, f"topic {gt} has type {topics[gt]}, expected {TYPES['ground_truth']}")
        self.gt_topic = gt if gt in topics else None
        self.summary.has_ground_truth = self.gt_topic is not None
        if not reader.is2:
            self._check_ros1_types(topics)
        span = max(1.0, (reader.end_time - reader.start_time) * 1e-9 + 1.0)
        self.tf = TransformBuffer(cache_time=span)
        self.infos: list[tuple[float, np.ndarray]] = []
        self._static_cameras: set[str] = set()

    def _check_ros1_types(self, topics: dict[str, str]) -> None:
        """ROS 1 messages are read as the ROS 2 type of the same name (same bytes but for Header.seq), so a bag
        whose definition of a used type differs (an older Keypoints2DArray, say) is refused up front."""
        for topic in (self.frame_topic, self.info_topic, *self.tf_topics, self.gt_topic):
            if topic and not is_same_wireformat(self.reader.typestore, self.typestore, topics[topic], topics[topic]):
                raise ReplayError(EXIT_UNKNOWN_TYPE, f"topic {topic}: this ROS 1 bag's {topics[topic]} differs from "
                                  "the ROS 2 definition (field types or order); convert the bag with matching types")

    def connections(self, *topics: str | None) -> list:
        return [c for c in self.reader.connections if c.topic in topics]

    def messages(self, connections: list) -> Iterator[tuple[object, int, bytes]]:
        """The reader's messages in log-time order; its failures become BagReadError (not our bugs)."""
        iterator = self.reader.messages(connections=connections)
        while True:
            try:
                item = next(iterator)
            except StopIteration:
                return
            except Exception as error:  # noqa: BLE001 - rosbags/mcap raise many kinds for damaged data
                raise BagReadError(f"{type(error).__name__}: {error}") from error
            yield item

    def decode(self, raw: bytes, msgtype: str) -> object:
        """A ROS 2 message object (ROS 1 input too: the code after this sees one kind of message)."""
        try:
            if self.reader.is2:
                return self.reader.deserialize(raw, msgtype)
            return self.typestore.deserialize_cdr(self.typestore.ros1_to_cdr(raw, msgtype), msgtype)
        except Exception as error:  # noqa: BLE001 - as above
            raise BagReadError(f"cannot decode a {msgtype}: {type(error).__name__}: {error}") from error

    def first_pass(self) -> None:
        """All transforms into the buffer and all intrinsics (small) by stamp. Damage stops it quietly:
        the second pass meets the same damage, after processing the frames before it."""
        try:
            for connection, _, raw in self.messages(self.connections(*self.tf_topics, self.info_topic)):
                msg = self.decode(raw, connection.msgtype)
                if connection.topic == self.info_topic:
                    k = np.asarray(msg.k, dtype=float).reshape(3, 3)
                    if np.any(k):
                        self.infos.append((_stamp(msg.header), k))
                    continue
                for tf in msg.transforms:
                    t, q = tf.transform.translation, tf.transform.rotation
                    try:
                        self.tf.set_transform(tf.header.frame_id, tf.child_frame_id, _stamp(tf.header),
                                              [t.x, t.y, t.z], [q.x, q.y, q.z, q.w],
                                              static=connection.topic == "/tf_static")
                    except ValueError as error:
                        self.summary.problems.append(f"transform ignored: {error}")
        except BagReadError:
            pass
        self.infos.sort(key=lambda item: item[0])

    def static_camera(self, camera_frame: str, stamp: float) -> TransformStamped | None:
        """The --static-camera-pose transform world -> camera_frame, put into the TF buffer the first
        time a frame names that camera (the frame_id is known only then); None when already there or
        no pose was given. The caller records (and, over DDS, publishes) what it returns on /tf_static."""
        pose = self.options.static_camera_pose
        if pose is None or camera_frame in self._static_cameras:
            return None
        self._static_cameras.add(camera_frame)
        world_t_camera = np.eye(4)
        world_t_camera[:3, :3] = Rotation.from_quat(pose[3:]).as_matrix()
        world_t_camera[:3, 3] = pose[:3]
        transform = transform_msg(self.options.world_frame, camera_frame, stamp, world_t_camera)
        r = transform.transform.rotation
        self.tf.set_transform(self.options.world_frame, camera_frame, stamp, pose[:3], [r.x, r.y, r.z, r.w], static=True)
        return transform

    def camera_frame(self, msg: object) -> str:
        return self.options.camera_frame or msg.header.frame_id

    def intrinsics(self, stamp: float) -> np.ndarray | None:
        """The newest CameraInfo at or before `stamp` (the first one for frames before any)."""
        if not self.infos:
            return None
        stamps = [s for s, _ in self.infos]
        index = max(0, int(np.searchsorted(stamps, stamp, side="right")) - 1)
        return self.infos[index][1]

    def build(self) -> tuple[HumanPipeline, OutputMessages]:
        """The node's pipeline and output builder, configured from the options."""
        o = self.options
        config = PipelineConfig(world_frame=o.world_frame, body_model_path=o.body_model_path, device="cpu",
                                filter_variant=o.filter_variant, regressor_checkpoint=o.regressor_checkpoint,
                                max_people=o.max_people, fps=o.motion_rate)
        try:
            pipeline = HumanPipeline(config, with_images=self.summary.input == "image")
        except (OSError, ValueError, RuntimeError, KeyError) as error:
            raise ReplayError(EXIT_PIPELINE, f"cannot build the pipeline: {error}") from error
        return pipeline, OutputMessages(pipeline.body.name, display_mesh(pipeline) if o.markers and o.mesh else None,
                                        o.marker_sigma, o.markers)

    def run(self, out: McapBagWriter, pipeline: HumanPipeline, outputs: OutputMessages) -> None:
        o = self.options
        self.first_pass()
        copied = self.connections(*self.tf_topics, self.gt_topic)
        frames = self.connections(self.frame_topic)
        total = sum(c.msgcount for c in frames)
        last_stamp: float | None = None
        with tqdm(total=total, desc="replay", unit="frame", disable=not o.progress, leave=False) as bar:
            for connection, timestamp, raw in self.messages(copied + frames):
                if connection.topic != self.frame_topic:
                    self.copy(out, connection, timestamp, raw)
                    continue
                bar.update()
                self.summary.frames += 1
                msg = self.decode(raw, connection.msgtype)
                stamp = _stamp(msg.header)
                if last_stamp is not None and stamp < last_stamp:
                    self.summary.resets += 1
                    pipeline.reset()
                    outputs.reset()
                last_stamp = stamp
                # Outputs carry the frame's own stamp, exactly: float seconds drop the last ~100 ns of
                # an epoch stamp, and users join outputs to frames by stamp.
                exact = TimeMsg(sec=int(msg.header.stamp.sec), nanosec=int(msg.header.stamp.nanosec))
                exact_ns = exact.sec * 10**9 + exact.nanosec
                static = self.static_camera(self.camera_frame(msg), stamp)
                if static is not None:
                    out.write("/tf_static", exact_ns, tf_message(static))
                try:
                    result = self._process(pipeline, msg, stamp)
                except (ValueError, RuntimeError, np.linalg.LinAlgError) as error:  # as the node: skip, say why
                    self.summary.skipped += 1
                    self.summary.problems.append(f"frame at {stamp:.3f} failed: {error}")
                    continue
                if result is None:
                    continue
                header = Header(stamp=exact, frame_id=o.world_frame)
                published = outputs.build(header, result)
                self.summary.dropped_people += published.dropped
                out.write("/humans", exact_ns, published.humans)
                if published.markers is not None:
                    out.write("/markers", exact_ns, published.markers)
                self.summary.processed += 1

    def _process(self, pipeline: HumanPipeline, msg: object, stamp: float) -> PipelineOutput | None:
        """One frame through the pipeline as the node does; None when it has to be skipped."""
        k = self.intrinsics(stamp)
        if k is None:
            self.summary.no_camera_info += 1
            return None
        camera_frame = self.camera_frame(msg)
        try:
            world_t_cam = self.tf.lookup(self.options.world_frame, camera_frame, stamp)
        except TransformLookupError as error:
            if not self.summary.no_pose:
                self.summary.problems.append(f"no camera pose at {stamp:.3f} (first of the skipped frames): {error}")
            self.summary.no_pose += 1
            return None
        if self.summary.input == "image":
            from glopro_ros.perception.image_io import InputError, decode_image

            try:
                rgb = decode_image(msg.data, msg.width, msg.height, msg.step, msg.encoding, bool(msg.is_bigendian))
            except InputError as error:
                self.summary.skipped += 1
                self.summary.problems.append(f"image at {stamp:.3f} skipped: {error}")
                return None
            return pipeline.process_image(stamp, rgb, k, world_t_cam, camera_frame)
        from glopro_ros.ros.keypoint_input import people_from_keypoints_msg

        people, problems = people_from_keypoints_msg(msg)
        self.summary.problems.extend(problems[:1])
        return pipeline.process_keypoints(stamp, people, k, int(msg.image_width), int(msg.image_height), world_t_cam,
                                          camera_frame)

    def cdr(self, connection, raw: bytes) -> bytes:
        """The message as ROS 2 CDR: as is from a rosbag2; from ROS 1 the bytes converted (Header.seq dropped),
        since ROS 1 field names (CameraInfo's K) do not fit the ROS 2 serialiser."""
        if self.reader.is2:
            return bytes(raw)
        try:
            return bytes(self.typestore.ros1_to_cdr(raw, connection.msgtype))
        except Exception as error:  # noqa: BLE001 - as above
            raise BagReadError(f"cannot convert a ROS 1 {connection.msgtype}: {type(error).__name__}: {error}") from error

    def copy(self, out: McapBagWriter, connection, timestamp: int, raw: bytes) -> None:
        """TF and ground truth pass through unchanged (ROS 1 converted to CDR)."""
        out.write_raw(connection.topic, connection.msgtype, timestamp, self.cdr(connection, raw))


def open_bag(bag: Path, out_bag: Path) -> AnyReader:
    """An open reader of `bag`, after checking that `out_bag` does not exist yet (ReplayError otherwise)."""
    if out_bag.exists():
        raise ReplayError(EXIT_USAGE, f"output bag {out_bag} exists; remove it or choose another name")
    if not bag.exists():
        raise ReplayError(EXIT_UNREADABLE, f"input bag {bag} does not exist")
    try:
        reader = AnyReader([bag], default_typestore=glopro_typestore())
        reader.open()
    except Exception as error:  # noqa: BLE001 - rosbags raises several kinds for damaged files; all mean "unreadable"
        ros1 = bag.is_file() and bag.suffix not in (".bag", ".mcap", ".db3")
        hint = " (rosbags reads a file as a ROS 1 bag only with the .bag suffix)" if ros1 else ""
        raise ReplayError(EXIT_UNREADABLE, f"cannot read {bag} as a ROS 1 or ROS 2 bag: {error}{hint}") from error
    return reader


def replay_bag(bag: Path, out_bag: Path, options: ReplayOptions) -> ReplaySummary:
    """Replay `bag` into `out_bag`; raises ReplayError (with its exit code) after writing what it could."""
    reader = open_bag(bag, out_bag)
    try:
        replay = Replay(reader, options)
        pipeline, outputs = replay.build()
        with McapBagWriter(out_bag) as out:
            try:
                replay.run(out, pipeline, outputs)
            except BagReadError as error:
                replay.summary.topics = dict(out.counts)
                raise ReplayError(EXIT_TRUNCATED, f"reading {bag} failed after {replay.summary.frames} frames "
                                  f"({error}); {out_bag} holds the frames before") from error
            replay.summary.topics = dict(out.counts)
        return replay.summary
    finally:
        reader.close()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="glopro replay", description=__doc__.split("\n\n")[0], epilog=EXIT_CODES)
    parser.add_argument("bag", type=Path, help="input bag: rosbag2 folder or file (MCAP, sqlite3) or ROS 1 .bag")
    parser.add_argument("--out", type=Path, required=True, help="output MCAP bag folder (must not exist)")
    parser.add_argument("--input", choices=("auto", "keypoints", "image"), default="auto",
                        help="frames to feed: auto takes keypoints when the bag has them, else images")
    parser.add_argument("--world-frame", default="map", help="output frame (TF must connect it to the camera)")
    parser.add_argument("--camera-frame", default="", help="camera optical frame; empty: each frame header's frame_id")
    parser.add_argument("--keypoints-topic", default="", help="Keypoints2DArray topic (default: the only one)")
    parser.add_argument("--image-topic", default="", help="sensor_msgs/Image topic (default: the only one)")
    parser.add_argument("--camera-info-topic", default="", help="CameraInfo topic (default: the only one)")
    parser.add_argument("--ground-truth-topic", default="/ground_truth", help="HumanStateArray copied through")
    parser.add_argument("--filter-variant", choices=("glopro", "glopro_nores", "cv"), default=PipelineConfig.filter_variant)
    parser.add_argument("--body-model-path", default="", help="SMPL-layout model file; empty: built-in default body")
    parser.add_argument("--regressor-checkpoint", default="", help="image regressor (TorchScript); empty: keypoint fit")
    parser.add_argument("--max-people", type=int, default=10)
    parser.add_argument("--motion-rate", type=float, default=30.0, help="Hz of the motion model's steps")
    parser.add_argument("--no-markers", action="store_true", help="do not write /markers")
    parser.add_argument("--no-mesh", action="store_true", help="markers without the body mesh (faster)")
    parser.add_argument("--static-camera-pose", type=_pose, metavar='"X Y Z QX QY QZ QW"',
                        help="fixed camera pose in --world-frame, for bags without TF (e.g. \"0 0 0 0 0 0 1\")")
    parser.add_argument("--via-dds", action="store_true",
                        help="play the bag lock-step to the glopro node (a child process) over DDS and record its output")
    parser.add_argument("--frame-timeout", type=float, default=10.0,
                        help="--via-dds: seconds to wait for the node's output of a frame before counting it lost")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def _pose(text: str) -> tuple[float, ...]:
    """argparse type of --static-camera-pose: seven finite numbers with a non-zero quaternion."""
    try:
        values = tuple(float(v) for v in text.replace(",", " ").split())
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not numbers: {text!r}") from error
    if len(values) != 7 or not np.all(np.isfinite(values)) or np.linalg.norm(values[3:]) < 1e-6:
        raise argparse.ArgumentTypeError(f"need 7 finite numbers 'x y z qx qy qz qw' (non-zero quaternion), got {text!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    options = ReplayOptions(
        input=args.input, world_frame=args.world_frame, camera_frame=args.camera_frame,
        keypoints_topic=args.keypoints_topic, image_topic=args.image_topic, camera_info_topic=args.camera_info_topic,
        ground_truth_topic=args.ground_truth_topic, filter_variant=args.filter_variant,
        body_model_path=args.body_model_path, regressor_checkpoint=args.regressor_checkpoint,
        max_people=args.max_people, motion_rate=args.motion_rate, markers=not args.no_markers,
        mesh=not args.no_mesh, progress=not args.quiet, static_camera_pose=args.static_camera_pose,
        frame_timeout=args.frame_timeout)
    try:
        if args.via_dds:
            from glopro_ros.tools.dds_replay import replay_bag_via_dds

            summary = replay_bag_via_dds(args.bag, args.out, options)
        else:
            summary = replay_bag(args.bag, args.out, options)
    except ReplayError as error:
        print(f"glopro replay: {error}", file=sys.stderr)
        return error.code
    for problem in summary.problems[:10]:
        print(f"glopro replay: note: {problem}", file=sys.stderr)
    if not summary.has_ground_truth:
        print(f"glopro replay: note: no {options.ground_truth_topic} in the input; 'glopro evaluate' needs it",
              file=sys.stderr)
    print(f"wrote {args.out}: {summary.processed}/{summary.frames} {summary.input} frames processed "
          f"({summary.no_pose} without camera pose, {summary.no_camera_info} without CameraInfo, {summary.skipped} "
          f"skipped, {summary.dropped_people} invalid people dropped, {summary.resets} resets"
          + (f", {summary.lost} lost over DDS" if args.via_dds else "") + "); "
          + ", ".join(f"{t} {n}" for t, n in sorted(summary.topics.items())))
    if summary.frames and not summary.processed:
        print("glopro replay: no frame was processed (see the counts above)", file=sys.stderr)
        return EXIT_MISSING_TOPIC
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
