"""The glopro node: camera images (or 2D keypoints) + TF in, human states and RViz markers out.

Lifecycle: ``configure`` loads the models (seconds), ``activate`` starts processing. Callbacks
only keep the newest frame; one worker thread processes it, so a slow frame never builds a queue
(frames replaced before processing are counted as dropped). Camera poses come from TF at each
image's stamp (waiting at most ``tf_timeout``); a frame without a pose is skipped, never guessed.

Threads: one executor thread runs every callback (frames, CameraInfo, /tf, services, the
diagnostics timer) and the worker runs the pipeline. Both need the GIL, so the executor is the
single-threaded one: rclpy's MultiThreadedExecutor hands each callback through a thread pool, and
with the worker holding the GIL every hand-over waits, so /tf fell behind the frames and lookups
failed (bench_node, keypoints at 120 Hz: /tf 170 ms late in the median, 0.7 Hz out; single-threaded:
3 ms, 24 Hz out). For the same reason keypoint lifting, the largest share of a keypoint frame, runs in
a child process (LiftingProcess, parameter lifting_process): frame t+1 is lifted on another core
while the worker tracks frame t and publishes it, in order, one frame in flight.
"""
from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

import numpy as np
import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped, TransformStamped
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header
from tf2_msgs.msg import TFMessage
from visualization_msgs.msg import MarkerArray

from glopro_ros.core.so3 import matrix_to_quat
from glopro_ros.core.tf_buffer import TransformLookupError
from glopro_ros.msg import HumanStateArray, Keypoints2DArray
from glopro_ros.perception.keypoints import PersonKeypoints
from glopro_ros.perception.lifting import LiftResult
from glopro_ros.perception.lifting_process import LiftingProcess, lift_people
from glopro_ros.pipeline import HumanPipeline, PipelineConfig, PipelineOutput
from glopro_ros.ros.outputs import MarkerRate, OutputMessages, display_mesh
from glopro_ros.ros.tf_source import TfSource, make_tf_source, subscribe_pose_topic

# name -> (default, description); declared up front, defaults mirrored in config/glopro.yaml.
PARAMETERS: dict[str, tuple[object, str]] = {
    "input": ("image", "'image' (sensor_msgs/Image + CameraInfo) or 'keypoints' (glopro_ros/Keypoints2DArray + CameraInfo)"),
    "image_topic": ("image", "camera image topic (rgb8, bgr8, rgba8, bgra8 or mono8)"),
    "image_qos": ("sensor_data", "'sensor_data' (best effort) or 'reliable' (needs a reliable publisher); best-effort images "
                  "between processes need config/fastdds_large_data.xml (README)"),
    "camera_info_topic": ("camera_info", "CameraInfo topic of the same camera"),
    "keypoints_topic": ("keypoints", "2D keypoint detections topic (input: keypoints; skeleton blazepose33)"),
    "world_frame": ("map", "output frame of every state and marker (REP-105 map, or odom)"),
    "camera_frame": ("", "camera optical frame; empty: the image header's frame_id"),
    "tf_timeout": (0.05, "seconds to wait for the camera pose at an image stamp before skipping the frame"),
    "tf_cache_time": (10.0, "seconds of TF history kept"),
    "tf_max_extrapolation": (0.0, "seconds a lookup may go past the newest/oldest transform (holds the end value)"),
    "prefer_tf2_ros": (True, "use tf2_ros where installed; else the built-in /tf + /tf_static buffer"),
    "pose_topic": ("", "optional nav_msgs/Odometry or geometry_msgs/PoseStamped topic giving camera or base poses"),
    "pose_topic_type": ("odometry", "'odometry' or 'pose' (type of pose_topic)"),
    "pose_child_frame": ("", "frame whose pose pose_topic gives (Odometry's child_frame_id wins when set)"),
    "device": ("auto", "'auto', 'cpu' or 'cuda' for the learned models"),
    "body_model_path": ("", "SMPL-layout model file (.pkl or .npz); empty: the built-in default body"),
    "regressor_checkpoint": ("", "user image regressor checkpoint (TorchScript); empty: keypoint fit"),
    "filter_variant": (PipelineConfig.filter_variant,
                       "'glopro_nores' (no learned residual), 'glopro' (with the fusion checkpoint's residual: the committed one has none, so the same filter) or 'cv' (constant velocity); docs/results.md"),
    "max_people": (10, "most people detected per image"),
    "position_std_floor": (PipelineConfig.position_std_floor, "m, std added to every measured root position (x, y, z): covers the image model's unmodelled errors, so a person measured a little outside the stated covariance stays on its track instead of coming back as a new one"),
    "inference_threads": (PipelineConfig.inference_threads,
                          "BlazePose inferences (people's landmarks, detector regions) run at the same time (threads; 1: one after the other)"),
    "max_landmarks": (2, "BlazePose landmark inferences per image for people tracked 3 frames or more (0: no limit; "
                         "new people are always measured); with more people they take turns, longest-waiting first, "
                         "the others predicted only for that frame: keeps a crowd's frames real time (raise it on "
                         "faster machines)"),
    "lifting_process": (True, "input keypoints: lift people in a child process, on another core, while the worker "
                               "tracks the previous frame (5 people at 30 Hz need it on a 2-core CPU); false: in the "
                               "worker thread"),
    "motion_rate": (30.0, "Hz of the motion model's steps (the tracker predicts in steps of 1/motion_rate)"),
    "publish_markers": (True, "publish visualization_msgs/MarkerArray on 'markers'"),
    "marker_mesh": (True, "include the body mesh (TRIANGLE_LIST) in the markers"),
    "marker_mesh_cell": (0.06, "m; mesh markers are simplified to one vertex per cell of this size (smaller: finer, slower)"),
    "marker_sigma": (2.0, "joint uncertainty ellipsoids at this many standard deviations"),
    "marker_rate": (10.0, "Hz of frame stamps; markers for at most this many frames per second (humans: every frame); "
                    "0: every frame, else at least 1 (markers live 1 s)"),
    "publish_tf": (False, "publish a TF frame body_<id> at each person's pelvis (REP-155 style)"),
}


# image_qos -> subscription profile. Same depth: DDS hands a burst to the callback, which counts what it drops.
IMAGE_QOS: dict[str, QoSProfile] = {
    "sensor_data": qos_profile_sensor_data,
    "reliable": QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=qos_profile_sensor_data.depth,
                           reliability=ReliabilityPolicy.RELIABLE),
}


@dataclass
class Frame:
    """One input waiting for the worker: an image or a keypoint array, with its stamp."""

    stamp: Time
    msg: Image | Keypoints2DArray
    received: float  # time.monotonic() when it arrived


@dataclass
class Started:
    """A frame the worker took: its intrinsics and, for keypoints, its people and their lifting under way."""

    frame: Frame
    k: np.ndarray
    people: list[PersonKeypoints] = field(default_factory=list)
    lifted: Future[list[LiftResult | ValueError]] | None = None

    def ready(self) -> bool:
        return self.lifted is None or self.lifted.done()


class GloproNode(LifecycleNode):
    def __init__(self) -> None:
        super().__init__("glopro")
        for name, (default, text) in PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=text))
        self._pipeline: HumanPipeline | None = None
        self._tf: TfSource | None = None
        self._pending: Frame | None = None
        self._started: deque[Started] = deque()  # lifting (or lifted), waiting for the worker; one at most
        self._camera_info: CameraInfo | None = None
        self._cond = threading.Condition()
        self._active = False
        self._worker: threading.Thread | None = None
        self._last_stamp: float | None = None
        self._outputs: OutputMessages | None = None
        self._marker_rate: MarkerRate | None = None
        self.stats = {"processed": 0, "dropped": 0, "tf_failures": 0, "skipped": 0, "resets": 0,
                      "invalid_outputs": 0}
        self._latencies: list[float] = []
        self._lifting: LiftingProcess | None = None

    def p(self, name: str):
        return self.get_parameter(name).value

    # --- lifecycle -------------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        mode = self.p("input")
        if mode not in ("image", "keypoints"):
            self.get_logger().error(f"parameter input must be 'image' or 'keypoints', not {mode!r}")
            return TransitionCallbackReturn.FAILURE
        image_qos = IMAGE_QOS.get(self.p("image_qos"))
        marker_rate = float(self.p("marker_rate"))
        if image_qos is None or 0.0 < marker_rate < 1.0:
            self.get_logger().error(f"image_qos must be one of {sorted(IMAGE_QOS)} (is {self.p('image_qos')!r}) and "
                                    f"marker_rate 0 or at least 1 Hz (is {marker_rate})")
            return TransitionCallbackReturn.FAILURE
        try:
            config = PipelineConfig(world_frame=self.p("world_frame"), device=self.p("device"),
                                    body_model_path=self.p("body_model_path"), filter_variant=self.p("filter_variant"),
                                    regressor_checkpoint=self.p("regressor_checkpoint"),
                                    max_people=int(self.p("max_people")), fps=float(self.p("motion_rate")),
                                    position_std_floor=float(self.p("position_std_floor")),
                                    inference_threads=max(1, int(self.p("inference_threads"))),
                                    max_landmarks=int(self.p("max_landmarks")))
            self._pipeline = HumanPipeline(config, with_images=(mode == "image"))
            self.close_lifting()
            if mode == "keypoints" and self.p("lifting_process"):
                self._lifting = LiftingProcess(config.body_model_path)
            with_mesh = bool(self.p("publish_markers") and self.p("marker_mesh"))
            mesh = display_mesh(self._pipeline, float(self.p("marker_mesh_cell"))) if with_mesh else None
            self._outputs = OutputMessages(self._pipeline.body.name, mesh, float(self.p("marker_sigma")),
                                           bool(self.p("publish_markers")), serialized_markers=True)
            self._marker_rate = MarkerRate(marker_rate)
        except (OSError, ValueError, RuntimeError) as error:
            self.get_logger().error(f"configure failed: {error}")
            return TransitionCallbackReturn.FAILURE
        self._tf = make_tf_source(self, float(self.p("tf_cache_time")), float(self.p("tf_max_extrapolation")),
                                  bool(self.p("prefer_tf2_ros")))
        if self.p("pose_topic"):
            kind = {"odometry": Odometry, "pose": PoseStamped}.get(self.p("pose_topic_type"))
            if kind is None:
                self.get_logger().error("pose_topic_type must be 'odometry' or 'pose'")
                return TransitionCallbackReturn.FAILURE
            subscribe_pose_topic(self, self._tf, self.p("pose_topic"), kind, self.p("pose_child_frame"))
        self._humans_pub = self.create_publisher(HumanStateArray, "humans", 10)
        self._markers_pub = self.create_publisher(MarkerArray, "markers", 10)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._tf_pub = self.create_publisher(TFMessage, "/tf", 100)
        self.create_subscription(CameraInfo, self.p("camera_info_topic"), self._on_camera_info, qos_profile_sensor_data)
        if mode == "image":
            self.create_subscription(Image, self.p("image_topic"), self._on_frame, image_qos)
        else:
            self.create_subscription(Keypoints2DArray, self.p("keypoints_topic"), self._on_frame, 10)
        self.create_timer(1.0, self._publish_diagnostics)
        lifting = f", lifting in process {self._lifting.pid}" if self._lifting is not None else ""
        self.get_logger().info(f"configured: input {mode}, world frame '{self.p('world_frame')}', "
                               f"filter {self.p('filter_variant')}, body model {self._pipeline.body.name}{lifting}")
        if mode == "image" and self.p("image_qos") == "sensor_data":
            # With Fast DDS's defaults most best-effort 640x480 images from another process are lost, and
            # nothing in this process can fix it (the publisher's shared-memory segment decides).
            self.get_logger().info("best-effort images: if few arrive from another process (diagnostics: processed + "
                                   "dropped below the camera rate), start the camera driver with "
                                   "config/fastdds_large_data.xml (README, 'Images between processes') or use "
                                   "image_qos:=reliable with a reliable camera")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = True
        self._started.clear()
        self._worker = threading.Thread(target=self._work, daemon=True)
        self._worker.start()
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.stop_worker()
        return super().on_deactivate(state)

    def stop_worker(self) -> None:
        """Stop processing (the frame in hand finishes); also used at shutdown, when no lifecycle
        transition can run any more because the context is already shutting down."""
        with self._cond:
            self._active = False
            self._cond.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=5.0)

    def close_lifting(self) -> None:
        """Stop the lifting process, if any (at shutdown, or before configuring again)."""
        if self._lifting is not None:
            self._lifting.close()
            self._lifting = None

    # --- input -----------------------------------------------------------------------------------
    def _on_camera_info(self, msg: CameraInfo) -> None:
        if self._camera_info is not None and list(self._camera_info.k) != list(msg.k):
            self.get_logger().info(f"camera intrinsics changed: K = {list(msg.k)}")
        self._camera_info = msg

    def _on_frame(self, msg: Image | Keypoints2DArray) -> None:
        if not self._active:
            return
        with self._cond:
            if self._pending is not None:
                self.stats["dropped"] += 1
            self._pending = Frame(Time.from_msg(msg.header.stamp), msg, time.monotonic())
            self._feed()
            self._cond.notify_all()

    # --- processing ------------------------------------------------------------------------------
    def _feed(self) -> None:
        """With a lifting process (called under _cond): start lifting the pending frame unless one already
        waits for the worker, so the child lifts frame t+1 while the worker tracks frame t."""
        if self._lifting is not None and self._pending is not None and not self._started:
            frame, self._pending = self._pending, None
            started = self._guarded(self._start, frame)
            if started is not None:
                self._started.append(started)

    def _wake(self, _: object = None) -> None:
        with self._cond:
            self._cond.notify_all()

    def _work(self) -> None:
        """Newest frame first: frames are started (checked, and lifted in the child process) in order, one
        waiting at most, and tracked and published in that order."""
        while True:
            with self._cond:
                while self._active and not ((self._started and self._started[0].ready())
                                            or (self._lifting is None and self._pending is not None)):
                    self._cond.wait()
                if not self._active:
                    return
                frame, started = None, None
                if self._started:
                    started = self._started.popleft()
                    self._feed()
                else:
                    frame, self._pending = self._pending, None
            if frame is not None:
                started = self._guarded(self._start, frame)
            if started is not None:
                self._guarded(self._process, started)

    def _guarded(self, step: Callable, item: Frame | Started) -> Started | None:
        frame = item if isinstance(item, Frame) else item.frame
        try:
            return step(item)
        except Exception as error:  # noqa: BLE001 - the node must keep running; say what happened
            self.stats["skipped"] += 1
            self.get_logger().error(f"frame at {frame.stamp.nanoseconds * 1e-9:.3f} failed: {error}",
                                    throttle_duration_sec=2.0)
            return None

    def _start(self, frame: Frame) -> Started | None:
        """The checks that need no tracking state, and for keypoints the people (with a lifting process:
        their lifting, under way); None: the frame is skipped."""
        info = self._camera_info
        k = np.asarray(info.k if info is not None else np.zeros(9), dtype=float).reshape(3, 3)
        if not np.all(np.isfinite(k)) or k[0, 0] <= 0 or k[1, 1] <= 0:
            self.stats["skipped"] += 1
            self.get_logger().warning(f"no valid CameraInfo intrinsics (K = {k.ravel().tolist()}): skipping frames",
                                      throttle_duration_sec=5.0)
            return None
        started = Started(frame, k)
        if isinstance(frame.msg, Keypoints2DArray):
            from glopro_ros.ros.keypoint_input import people_from_keypoints_msg

            started.people, problems = people_from_keypoints_msg(frame.msg)
            for problem in problems:
                self.get_logger().warning(problem, throttle_duration_sec=5.0)
            lifting = self._lifting  # one read: the worker drops it if the child dies
            if lifting is not None:
                try:
                    started.lifted = lifting.submit(started.people, k, frame.msg.image_width, frame.msg.image_height)
                    started.lifted.add_done_callback(self._wake)
                except BrokenProcessPool as error:
                    self._lifting_stopped(error)
        return started

    def _process(self, started: Started) -> None:
        frame, k = started.frame, started.k
        log = self.get_logger()
        stamp = frame.stamp.nanoseconds * 1e-9
        if self._last_stamp is not None and stamp < self._last_stamp:
            log.warning(f"time went backwards ({self._last_stamp:.3f} -> {stamp:.3f}): resetting tracks and TF")
            self.stats["resets"] += 1
            self._pipeline.reset()
            self._tf.reset()
            self._outputs.reset()
        self._last_stamp = stamp
        camera_frame = self.p("camera_frame") or frame.msg.header.frame_id
        world = self.p("world_frame")
        try:
            world_t_cam = self._tf.lookup(world, camera_frame, frame.stamp, float(self.p("tf_timeout")))
        except TransformLookupError as error:
            self.stats["tf_failures"] += 1
            log.warning(f"no camera pose {world} <- {camera_frame} at {stamp:.3f}, frame skipped: {error}",
                        throttle_duration_sec=2.0)
            return
        if isinstance(frame.msg, Image):
            from glopro_ros.perception.image_io import InputError, decode_image

            msg = frame.msg
            try:
                rgb = decode_image(msg.data, msg.width, msg.height, msg.step, msg.encoding, bool(msg.is_bigendian))
            except InputError as error:
                self.stats["skipped"] += 1
                log.warning(f"image skipped: {error}", throttle_duration_sec=5.0)
                return
            out = self._pipeline.process_image(stamp, rgb, k, world_t_cam, camera_frame)
        else:
            out = self._pipeline.process_lifted(stamp, self._lifted(started), world_t_cam, camera_frame)
        for message in out.messages:
            log.debug(message)
        self._publish(frame, out)

    def _lifted(self, started: Started) -> list[LiftResult | ValueError]:
        """The lifting's outcomes: from the child process, or here (no process, or it died: then from now on)."""
        if started.lifted is not None:
            try:
                return started.lifted.result()
            except BrokenProcessPool as error:
                self._lifting_stopped(error)
        msg = started.frame.msg
        return lift_people(self._pipeline.lifter, started.people, started.k, msg.image_width, msg.image_height)

    def _lifting_stopped(self, error: Exception) -> None:
        self.get_logger().error(f"the lifting process stopped ({error}); lifting in the worker thread from now on")
        self._lifting = None

    def _publish(self, frame: Frame, out: PipelineOutput) -> None:
        header = Header(stamp=frame.stamp.to_msg(), frame_id=self.p("world_frame"))
        published = self._outputs.humans(header, out)
        self.stats["invalid_outputs"] += published.dropped
        self._humans_pub.publish(published.humans)  # before the markers: consumers should not wait for RViz
        self.stats["processed"] += 1
        self._latencies.append(time.monotonic() - frame.received)
        if self.p("publish_tf") and published.valid:
            self._tf_pub.publish(TFMessage(transforms=[self._body_tf(header, out, i) for i in published.valid]))
        if self._outputs.with_markers and self._marker_rate.due(frame.stamp.nanoseconds * 1e-9):
            self._markers_pub.publish(self._outputs.markers(header, out, published.valid))

    @staticmethod
    def _body_tf(header: Header, out: PipelineOutput, i: int) -> TransformStamped:
        tf = TransformStamped(header=header, child_frame_id=f"body_{int(out.track_ids[i])}")
        p = out.state.root_position[i].numpy()
        q = matrix_to_quat(out.state.root_orientation[i:i + 1])[0].numpy()
        tf.transform.translation.x, tf.transform.translation.y, tf.transform.translation.z = (float(v) for v in p)
        tf.transform.rotation.x, tf.transform.rotation.y, tf.transform.rotation.z, tf.transform.rotation.w = (
            float(v) for v in q)
        return tf

    def _publish_diagnostics(self) -> None:
        latencies, self._latencies = self._latencies, []
        status = DiagnosticStatus(name="glopro: pipeline", hardware_id="glopro_ros")
        status.level = DiagnosticStatus.OK if self._active else DiagnosticStatus.WARN
        status.message = "processing" if self._active else "inactive"
        values = {**self.stats, "rate_hz": len(latencies),
                  "latency_ms_median": float(np.median(latencies) * 1e3) if latencies else 0.0}
        status.values = [KeyValue(key=k, value=f"{v:.1f}" if isinstance(v, float) else str(v)) for k, v in values.items()]
        self._diag_pub.publish(DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()), status=[status]))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``glopro_node`` executable: configure and activate, then spin.

    The node brings itself to active so a plain ``ros2 run`` works; a lifecycle manager can still
    deactivate and reactivate it through its lifecycle services.
    """
    # One intra-op thread: the per-frame tensors are small, and more threads spin-wait against the
    # executor's threads on a small CPU (measured in bench/bench_propagation.py).
    torch.set_num_threads(1)
    rclpy.init(args=sys.argv if argv is None else argv)
    node = GloproNode()
    executor = SingleThreadedExecutor()  # not multi-threaded: see the module docstring
    executor.add_node(node)
    try:
        if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            return 1
        node.trigger_activate()
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.stop_worker()
        node.close_lifting()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
