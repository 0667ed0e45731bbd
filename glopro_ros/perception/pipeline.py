"""Image -> people -> keypoints -> per-person Gaussian SMPL measurement in the camera frame.

One object used by the ROS node and by offline tools alike. Bad input never raises out of
`process`: it returns an empty measurement and says why in `PerceptionOutput.messages` (the node
logs them); people whose fit would be nonsense are dropped with a message, not guessed.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from glopro_ros.core.gaussian_state import GaussianBodyState
from glopro_ros.perception.image_io import InputError, check_rgb, intrinsics_matrix
from glopro_ros.perception.keypoints import BlazePoseKeypoints, PersonKeypoints
from glopro_ros.perception.lifting import KeypointLifter, LiftResult
from glopro_ros.perception.regressor_plugin import ImageRegressor
from glopro_ros.perception.smpl_correspondence import targets_from_blazepose

LOG = logging.getLogger(__name__)


@dataclass
class PerceptionOutput:
    """Measurement for one image: `state` has one row per entry of `people` (same order)."""

    state: GaussianBodyState
    people: list[PersonKeypoints]
    fits: list[LiftResult]
    messages: list[str] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)


class PerceptionStage:
    """BlazePose keypoints + lifting (default), or a user-supplied image regressor.

    With `regressor`, BlazePose still finds the people and their boxes, and the regressor gives
    each person's Gaussian from the crop instead of the keypoint fit.
    """

    def __init__(self, keypoints: BlazePoseKeypoints | None = None,
                 lifter: KeypointLifter | None = None,
                 regressor: ImageRegressor | None = None) -> None:
        self.keypoints = keypoints or BlazePoseKeypoints()
        self.lifter = lifter or KeypointLifter()
        self.regressor = regressor

    @classmethod
    def from_params(cls, regressor_checkpoint: str = "", device: str = "auto",
                    body_model_path: str = "", max_people: int = 10,
                    tracking: bool = True, inference_threads: int = 1, max_landmarks: int = 0) -> "PerceptionStage":
        """Build from node-style parameters; an empty checkpoint means the keypoint fit."""
        from glopro_ros.core.body_model import BodyModel

        body = BodyModel(body_model_path or None, device="cpu")
        regressor = (ImageRegressor(regressor_checkpoint, device=device, body_model=body)
                     if regressor_checkpoint else None)
        return cls(BlazePoseKeypoints(max_people=max_people, tracking=tracking, inference_threads=inference_threads,
                                      max_landmarks=max_landmarks),
                   KeypointLifter(body), regressor)

    def empty(self, frame_id: str) -> GaussianBodyState:
        return KeypointLifter.to_state([], frame_id)

    def process(self, rgb: np.ndarray, k: np.ndarray | list[float] | None,
                frame_id: str) -> PerceptionOutput:
        """Run on one decoded RGB image with intrinsics K (3x3 or CameraInfo.k)."""
        try:
            rgb = check_rgb(rgb)
            kmat = intrinsics_matrix(k, rgb.shape[1], rgb.shape[0])
        except InputError as exc:
            return PerceptionOutput(self.empty(frame_id), [], [], [f"skipped image: {exc}"])
        t0 = time.perf_counter()
        detected = self.keypoints(rgb)
        t1 = time.perf_counter()
        people, fits, messages = [], [], []
        if not detected:
            messages.append("no people found")
        h, w = rgb.shape[:2]
        if self.regressor is not None:
            outcomes = []
            for person in detected:
                try:
                    outcomes.append(self.regressor.predict(rgb, person.box, kmat))
                except ValueError as exc:
                    outcomes.append(exc)
        else:
            outcomes = self.lifter.fit_many([targets_from_blazepose(p, w, h) for p in detected], kmat)
        for i, (person, fit) in enumerate(zip(detected, outcomes)):
            if isinstance(fit, ValueError):
                messages.append(f"person {i} (box {np.round(person.box).astype(int).tolist()}) "
                                f"dropped: {fit}")
                continue
            people.append(person)
            fits.append(fit)
        t2 = time.perf_counter()
        for m in messages:
            LOG.debug(m)
        return PerceptionOutput(
            KeypointLifter.to_state(fits, frame_id), people, fits, messages,
            {"keypoints": (t1 - t0) * 1e3, "lifting": (t2 - t1) * 1e3})
