"""The one GloPro pipeline, shared by the ROS node and offline replay.

Per image: perception (image -> people -> Gaussian SMPL measurements in the camera frame), the
camera's world pose (from TF or the bag), the multi-person GloPro tracker in the world frame, and
propagation of each posterior to 24 joints with covariances. ROS-free: the node and the replay
tool only convert messages in and out, so a bag gives the same answer through DDS or offline.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property, partial

import numpy as np
import torch

from glopro_ros.core.body_model import BodyModel
from glopro_ros.core.fusion import Measurement, camera_to_world, load_filter, to_gaussian_state
from glopro_ros.core.gaussian_state import BETAS, ROOT_POSITION, ROOT_THETA, GaussianBodyState
from glopro_ros.core.propagation import PointsGaussian, propagate_joints
from glopro_ros.core.so3 import exp_so3, log_so3
from glopro_ros.core.tracker import MultiPersonTracker, TrackerConfig
from glopro_ros.perception.keypoints import PersonKeypoints
from glopro_ros.perception.lifting import LiftResult
from glopro_ros.perception.lifting_process import lift_people


@dataclass(frozen=True)
class PipelineConfig:
    """Everything the node exposes as parameters (see config/glopro.yaml for their meaning)."""

    world_frame: str = "map"
    device: str = "auto"
    body_model_path: str = ""
    # "glopro_nores", "glopro" (plus the fusion checkpoint's learned residual, where it has one: the
    # committed one has none, no fitted residual lowered the closed-loop validation error) or "cv"
    # (baseline); docs/results.md.
    filter_variant: str = "glopro_nores"
    regressor_checkpoint: str = ""
    max_people: int = 10
    # BlazePose inferences run at once (threads; tflite releases the GIL): 5 people's landmarks 119 -> 68 ms a
    # frame on this 2-core CPU, identical keypoints.
    inference_threads: int = 2
    # BlazePose landmark inferences per image for people tracked a few frames (0: no limit, what offline replay
    # uses): with more people they take turns, the others coasting in the tracker for a frame. The node's default
    # is 2, one round of its 2 inference threads: 5 people from images 12 -> 15 Hz, p95 latency 150 -> 78 ms
    # on the 2-core benchmark machine (docs/benchmarks.md).
    max_landmarks: int = 0
    fps: float = 30.0
    # m, isotropic std added to every measured root position: the image model's stated covariance
    # misses model errors (lifted keypoints' root position ANEES/dim 1.7-5.9 in keypoint_player scenes,
    # mostly an overconfident height), and a person measured outside its track's gate comes back as a
    # second, new track (10 s, 5 people: 9 track ids without the floor, 5 with it).
    position_std_floor: float = 0.05


@dataclass
class PipelineOutput:
    """People tracked at one image stamp, in ``state.frame_id`` (the world frame)."""

    stamp: float
    state: GaussianBodyState
    joints: PointsGaussian
    track_ids: np.ndarray
    status: np.ndarray  # HumanState.STATUS_* values (TrackStatus shares them)
    existence: np.ndarray
    last_observed: np.ndarray
    twist: np.ndarray  # (N, 6) linear, angular velocity in the world frame
    twist_cov: np.ndarray  # (N, 6, 6)
    lost_ids: list[int]
    pose_vertices: Callable[[], np.ndarray] | None = field(default=None, repr=False, compare=False)
    messages: list[str] = field(default_factory=list)

    @cached_property
    def vertices(self) -> np.ndarray | None:
        """(N, len(display vertex ids), 3), see set_mesh_vertices; posed on first use, so frames without
        markers (marker_rate) do not pay for them."""
        return None if self.pose_vertices is None else self.pose_vertices()


def measurement_from_state(state: GaussianBodyState) -> Measurement:
    """The filter's block-diagonal measurement from a perception GaussianBodyState."""
    cov = state.cov
    pose_blocks = torch.stack([cov[:, 10 + 3 * j:13 + 3 * j, 10 + 3 * j:13 + 3 * j] for j in range(23)], 1)
    return Measurement(state.root_position, cov[:, ROOT_POSITION, ROOT_POSITION], state.root_orientation,
                       cov[:, ROOT_THETA, ROOT_THETA], exp_so3(state.body_pose), pose_blocks,
                       state.betas, cov[:, BETAS, BETAS])


class HumanPipeline:
    """Perception (optional: not needed for 2D keypoint input with lifting) + tracker + propagation."""

    def __init__(self, config: PipelineConfig, with_images: bool = True) -> None:
        from glopro_ros.perception.lifting import KeypointLifter
        from glopro_ros.perception.pipeline import PerceptionStage

        if not config.position_std_floor >= 0.0:
            raise ValueError(f"position_std_floor must be >= 0 m (is {config.position_std_floor})")
        self.config = config
        self.body = BodyModel(config.body_model_path or None, device="cpu")
        self.lifter = KeypointLifter(self.body)
        self.perception = (PerceptionStage.from_params(config.regressor_checkpoint, config.device,
                                                       config.body_model_path, config.max_people,
                                                       inference_threads=config.inference_threads,
                                                       max_landmarks=config.max_landmarks)
                           if with_images else None)
        self.tracker = MultiPersonTracker(load_filter(config.filter_variant), TrackerConfig(fps=config.fps))
        self._position_floor = config.position_std_floor**2 * torch.eye(3, dtype=torch.float64)
        self._vertex_ids = torch.zeros(0, dtype=torch.long)
        self.reset()

    def set_mesh_vertices(self, vertex_ids: np.ndarray) -> None:
        """Also pose these mesh vertices for each person (for display); empty: none."""
        self._vertex_ids = torch.as_tensor(np.asarray(vertex_ids), dtype=torch.long)

    def reset(self) -> None:
        """Forget all people (time went backwards, or a new sequence)."""
        self.tracker.reset()
        self._last_seen: dict[int, float] = {}
        self._previous: dict[int, tuple[float, np.ndarray, np.ndarray, np.ndarray]] = {}

    def process_image(self, stamp: float, rgb: np.ndarray, k: np.ndarray, world_t_cam: np.ndarray,
                      camera_frame: str) -> PipelineOutput:
        """One RGB image with intrinsics K and the camera's pose in the world at its stamp."""
        if self.perception is None:
            raise RuntimeError("pipeline built without image perception (with_images=False)")
        seen = self.perception.process(rgb, k, camera_frame)
        return self.process_measurements(stamp, seen.state, world_t_cam, seen.messages)

    def process_keypoints(self, stamp: float, people: list[PersonKeypoints], k: np.ndarray, width: int,
                          height: int, world_t_cam: np.ndarray, camera_frame: str) -> PipelineOutput:
        """2D keypoints from the user's detector (BlazePose-33 layout), lifted like our own."""
        return self.process_lifted(stamp, lift_people(self.lifter, people, k, width, height), world_t_cam,
                                   camera_frame)

    def process_lifted(self, stamp: float, outcomes: list[LiftResult | ValueError], world_t_cam: np.ndarray,
                       camera_frame: str) -> PipelineOutput:
        """lift_people's outcomes (here, or in the node's LiftingProcess) -> tracker; failed people are said."""
        fits = [fit for fit in outcomes if not isinstance(fit, ValueError)]
        messages = [f"keypoint person {i} dropped: {fit}" for i, fit in enumerate(outcomes) if isinstance(fit, ValueError)]
        return self.process_measurements(stamp, self.lifter.to_state(fits, camera_frame), world_t_cam, messages)

    def process_measurements(self, stamp: float, measured: GaussianBodyState, world_t_cam: np.ndarray,
                             messages: list[str] | None = None) -> PipelineOutput:
        """Camera-frame Gaussians -> world -> tracker -> joints."""
        world = camera_to_world(measurement_from_state(measured), torch.as_tensor(world_t_cam, dtype=torch.float64)[None])
        world.root_pos_cov = world.root_pos_cov + self._position_floor
        before = set(int(i) for i in self.tracker.ids)
        out = self.tracker.step(stamp, world)
        ids = out.ids.astype(int)
        for track_id, det in zip(ids, out.detection):
            if det >= 0:
                self._last_seen[int(track_id)] = stamp
        lost = sorted(before - set(ids.tolist()))
        for track_id in lost:
            self._last_seen.pop(track_id, None)
            self._previous.pop(track_id, None)
        state = (to_gaussian_state(out.state, self.config.world_frame) if out.state is not None and len(ids)
                 else self.lifter.to_state([], self.config.world_frame))
        joints = propagate_joints(self.body, state)
        twist, twist_cov = self._twist(stamp, ids, state)
        hits = self.tracker.hits.astype(float)
        misses = self.tracker.misses.astype(float)
        existence = hits / (hits + misses + 1.0)  # grows with detections, decays while unobserved
        pose_vertices = partial(self._pose_vertices, state, self._vertex_ids) if len(self._vertex_ids) and len(ids) else None
        return PipelineOutput(stamp, state, joints, ids, out.status.astype(int), existence,
                              np.array([self._last_seen.get(int(i), stamp) for i in ids]), twist, twist_cov,
                              lost, pose_vertices, list(messages or []))

    def _pose_vertices(self, state: GaussianBodyState, vertex_ids: torch.Tensor) -> np.ndarray:
        return self.body.forward_vertex_subset(state.betas, exp_so3(state.body_pose), state.root_orientation,
                                               state.root_position, vertex_ids).numpy()

    def _twist(self, stamp: float, ids: np.ndarray, state: GaussianBodyState) -> tuple[np.ndarray, np.ndarray]:
        """Finite-difference pelvis velocity between consecutive outputs of each track, with the
        covariance of the difference of two (assumed independent) posteriors."""
        n = len(ids)
        twist, cov = np.zeros((n, 6)), np.tile(np.eye(6) * 1e3, (n, 1, 1))  # unknown until 2 outputs
        position = state.root_position.numpy()
        rotation = state.root_orientation.numpy()
        root_cov = state.cov[:, 79:, 79:].numpy()  # [theta, position]
        rows = [(i, self._previous[t]) for i, t in enumerate(ids.tolist())
                if t in self._previous and stamp > self._previous[t][0]]
        if rows:  # one log_so3 for everyone: it is a torch call
            index = [i for i, _ in rows]
            dt = np.array([stamp - previous[0] for _, previous in rows])[:, None]
            before_r = np.stack([previous[2] for _, previous in rows])
            delta = log_so3(torch.as_tensor(np.swapaxes(before_r, 1, 2) @ rotation[index])).numpy()
            twist[index, :3] = (position[index] - np.stack([previous[1] for _, previous in rows])) / dt
            twist[index, 3:] = (before_r @ delta[..., None])[..., 0] / dt
            summed = root_cov[index] + np.stack([previous[3] for _, previous in rows])
            cov[index, :3, :3] = summed[:, 3:, 3:] / dt[..., None] ** 2
            cov[index, 3:, 3:] = rotation[index] @ summed[:, :3, :3] @ np.swapaxes(rotation[index], 1, 2) / dt[..., None] ** 2
        for i, track_id in enumerate(ids.tolist()):
            self._previous[track_id] = (stamp, position[i], rotation[i], root_cov[i])
        return twist, cov
