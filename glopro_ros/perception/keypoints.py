"""Several-person BlazePose keypoints (2D + metric 3D) on a plain tflite runtime.

Detection runs the pose detector on the whole image (plus overlapping tiles for big images, where
people are small), landmarks run per person on a rotated 256x256 crop. In tracking mode the crop
of the next frame comes from the current landmarks, as in MediaPipe, and the detector only runs
when nobody is tracked, or every `redetect_every` frames while fewer than `max_people` are: this is
what keeps video frames cheap.
Inferences can run in parallel threads (`inference_threads`): the tflite runtime releases the GIL
while it runs, and one inference is compute-bound on one core. `max_landmarks` caps the landmark
inferences of a tracking frame: with more people than that, the ones waiting longest go first and
the others keep their ROI for a later frame, so a frame's cost stops growing with the crowd (new
people excepted: they are measured on their first frames).
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from glopro_ros.perception import blazepose_ops as ops
from glopro_ros.perception.model_files import model_path

LOG = logging.getLogger(__name__)
NUM_LANDMARKS = 33
DUPLICATE_IOU = 0.6  # landmark boxes overlapping more than this describe the same person
SETTLE_FRAMES = 3  # max_landmarks: a new person is measured on this many frames first (the tracker's confirm_hits)
LANDMARK_NAMES = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
    "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_pinky",
    "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb", "left_hip",
    "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "left_heel",
    "right_heel", "left_foot_index", "right_foot_index")


@dataclass
class PersonKeypoints:
    """One person's BlazePose output in image pixels and metric world landmarks.

    world: hip-centred metres with camera-aligned axes (x right, y down, z away from the camera).
    box: x0, y0, x1, y1 of the landmarks, not clipped; truncated: some landmarks lie off-image.
    """

    landmarks: np.ndarray  # (33, 2) pixels
    visibility: np.ndarray  # (33,) in 0..1
    world: np.ndarray  # (33, 3) metres
    box: np.ndarray  # (4,)
    score: float
    truncated: bool
    roi: ops.Roi


def _load_interpreter(path: Path, num_threads: int):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("BlazePose needs the tflite runtime: pip install ai-edge-litert") from exc
    interp = Interpreter(model_path=str(path), num_threads=num_threads)
    interp.allocate_tensors()
    return interp


@dataclass(frozen=True)
class _Tracked:
    """A tracked person's crop for the next frame, the landmark box it gave last, and for max_landmarks the
    frames since its last landmarks and how many frames it has been measured."""

    roi: ops.Roi
    box: np.ndarray
    waited: int
    measured: int


@dataclass(frozen=True)
class _Models:
    """One detector and one landmark interpreter: what one thread runs (tflite interpreters are not
    thread-safe)."""

    det: object
    lmk: object


class BlazePoseKeypoints:
    """BlazePose (full) detector + landmark models for several people per image.

    tracking=True treats successive calls as video frames of one camera; call reset() on a cut.
    num_threads: tflite threads per model; one is fastest on a shared 2-core CPU (see
    docs/benchmarks.md), more help on idle many-core machines. inference_threads: inferences that
    run at the same time, each thread on its own interpreters (same results: same models, same
    inputs): the detector's regions, the people's landmark crops, and on a re-detection frame the
    tracked people's landmarks beside the detector. Independent inferences parallelise better than
    one inference's layers (num_threads). max_landmarks (tracking mode; 0: no limit): landmark
    inferences per frame for people tracked SETTLE_FRAMES frames or more, longest-waiting first (new people
    always run); a person left out this frame is not returned (its track coasts) and keeps its ROI.
    """

    def __init__(self, model_dir: Path | None = None, max_people: int = 10,
                 min_detection_score: float = 0.5, min_presence: float = 0.5,
                 tracking: bool = False, redetect_every: int = 10, tiles: bool = True,
                 num_threads: int = 1, inference_threads: int = 1, max_landmarks: int = 0) -> None:
        if max_landmarks < 0:
            raise ValueError(f"max_landmarks must be >= 0 (0: no limit), is {max_landmarks}")
        paths = model_path("pose_detection.tflite", model_dir), model_path("pose_landmark_full.tflite", model_dir)
        models = [_Models(*(_load_interpreter(p, num_threads) for p in paths)) for _ in range(max(1, inference_threads))]
        self._models, spare = models[0], models[1:]  # this thread's, and one set per pool thread
        self._pool: ThreadPoolExecutor | None = None
        if spare:
            self._local = threading.local()
            self._pool = ThreadPoolExecutor(len(spare), thread_name_prefix="blazepose",
                                            initializer=lambda: setattr(self._local, "models", spare.pop()))
        det, lmk = self._models.det, self._models.lmk
        self._det_in = det.get_input_details()[0]["index"]
        det_out = {d["name"]: d["index"] for d in det.get_output_details()}
        self._det_boxes, self._det_scores = det_out["Identity"], det_out["Identity_1"]
        self._lmk_in = lmk.get_input_details()[0]["index"]
        lmk_out = {d["name"]: d["index"] for d in lmk.get_output_details()}
        self._lmk_raw, self._lmk_flag = lmk_out["Identity"], lmk_out["Identity_1"]
        self._lmk_world = lmk_out["Identity_4"]
        self.max_people = max_people
        self.min_detection_score = min_detection_score
        self.min_presence = min_presence
        self.tracking = tracking
        self.redetect_every = max(1, redetect_every)
        self.tiles = tiles
        self.max_landmarks = max_landmarks
        self._tracked: list[_Tracked] = []
        self._frame = 0

    def reset(self) -> None:
        """Forget tracked people (new camera, scene cut)."""
        self._tracked, self._frame = [], 0

    def __call__(self, rgb: np.ndarray) -> list[PersonKeypoints]:
        """People in an HxWx3 uint8 RGB image, most confident first."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 RGB image, got {rgb.shape} {rgb.dtype}")
        tracked = list(self._tracked) if self.tracking else []
        # Re-detection looks for new people, who only take free places (below): none free, nothing to look for.
        detect = not tracked or (self._frame % self.redetect_every == 0 and len(tracked) < self.max_people)
        self._frame += 1
        # Budget: new people are measured on each of their first frames (as a new track needs to be confirmed,
        # and so the tracker meets neighbours together); the others take turns, longest-waiting first.
        young = [t for t in tracked if t.measured < SETTLE_FRAMES]
        settled = sorted((t for t in tracked if t.measured >= SETTLE_FRAMES), key=lambda t: -t.waited)
        turns = max(0, self.max_landmarks - len(young)) if self.max_landmarks else len(settled)
        run, wait = young + settled[:turns], settled[turns:]
        running = self._start(self._landmarks, rgb, [t.roi for t in run])  # needs no detector: runs beside it
        new = self._new_rois(rgb, [t.roi for t in tracked]) if detect else []
        if tracked:  # new people take free places, tracked ones keep theirs; a cold start measures every detection
            new = new[: max(0, self.max_people - len(tracked))]
        found = running() + self._start(self._landmarks, rgb, new)()
        measured = [t.measured for t in run] + [0] * len(new)
        people = [(p, m + 1) for p, m in zip(found, measured) if p is not None]
        people = self._dedupe(people)[: self.max_people]
        if self.tracking:
            self._keep(people, [replace(t, waited=t.waited + 1) for t in wait])
        return [p for p, _ in people]

    def _keep(self, people: list[tuple[PersonKeypoints, int]], waiting: list[_Tracked]) -> None:
        """Next frame's people: the ones found now, then the waiting ones that are not one of them (by their
        last landmark box, as _dedupe), up to max_people."""
        if people:
            boxes = np.array([p.box for p, _ in people])
            waiting = [t for t in waiting if ops.iou(t.box[None], boxes).max() <= DUPLICATE_IOU]
        found = [_Tracked(p.roi, p.box, 0, m) for p, m in people]
        self._tracked = found + waiting[: self.max_people - len(found)]

    def _start(self, fn: Callable, rgb: np.ndarray, items: list) -> Callable[[], list]:
        """fn(rgb, item, models) for every item, shared by this thread and the pool's: this thread runs the first
        at once (a lone inference never waits for a thread switch) and, when collecting, takes the ones not yet
        started from the back while the pool works from the front; returns what collects the results, in order."""
        if self._pool is None:
            results = [fn(rgb, item, self._models) for item in items]
            return lambda: results
        futures = [self._pool.submit(lambda item=item: fn(rgb, item, self._local.models)) for item in items[1:]]
        first = [fn(rgb, item, self._models) for item in items[:1]]

        def collect() -> list:
            mine = {i: fn(rgb, items[i + 1], self._models) for i in reversed(range(len(futures))) if futures[i].cancel()}
            return first + [mine[i] if i in mine else f.result() for i, f in enumerate(futures)]
        return collect

    def detect_rois(self, rgb: np.ndarray) -> list[tuple[ops.Roi, float]]:
        """Person ROIs and detector scores from the detector alone (whole image and tiles)."""
        h, w = rgb.shape[:2]
        found = [f for region in self._start(self._detect_region, rgb, self._regions(w, h))() for f in region]
        if not found:
            return []
        boxes = np.array([f[0] for f in found])
        kps = np.array([f[1] for f in found])
        scores = np.array([f[2] for f in found])
        merged = ops.weighted_nms(boxes, kps, scores, threshold=0.3)
        return [(ops.roi_from_points(k[0], k[1]), s) for _, k, s in merged]

    def _regions(self, w: int, h: int) -> list[tuple[int, int, int, int]]:
        regions = [(0, 0, w, h)]
        side = min(w, h)
        if self.tiles and max(w, h) >= 1.3 * side and side >= 2 * ops.DET_SIZE:
            n = int(np.ceil(2 * max(w, h) / side)) - 1  # half-overlapping squares
            for start in np.linspace(0, max(w, h) - side, n).round().astype(int):
                regions.append((start, 0, side, side) if w > h else (0, start, side, side))
        return regions

    def _detect_region(self, rgb: np.ndarray, region: tuple[int, int, int, int],
                       models: _Models) -> list[tuple[np.ndarray, np.ndarray, float]]:
        x0, y0, rw, rh = region
        scale, pad_x, pad_y = ops.letterbox(rw, rh)
        m = np.array([[scale, 0, pad_x - scale * x0], [0, scale, pad_y - scale * y0]])
        inp = cv2.warpAffine(rgb, m, (ops.DET_SIZE, ops.DET_SIZE), flags=cv2.INTER_LINEAR)
        det = models.det
        det.set_tensor(self._det_in, (inp[None].astype(np.float32) / 127.5) - 1.0)
        det.invoke()
        boxes, kps, scores = ops.decode_detections(det.get_tensor(self._det_boxes)[0],
                                                   det.get_tensor(self._det_scores)[0],
                                                   self.min_detection_score)
        to_px = np.array([pad_x, pad_y])
        boxes = (boxes.reshape(-1, 2, 2) * ops.DET_SIZE - to_px) / scale + np.array([x0, y0])
        kps = (kps * ops.DET_SIZE - to_px) / scale + np.array([x0, y0])
        return [(b.reshape(4), k, float(s)) for b, k, s in zip(boxes, kps, scores)]

    def _new_rois(self, rgb: np.ndarray, tracked: list[ops.Roi]) -> list[ops.Roi]:
        """Detector ROIs that do not duplicate an already tracked person."""
        found = [r for r, _ in self.detect_rois(rgb)]
        if not tracked or not found:
            return found
        overlap = ops.iou(np.array([r.box() for r in found]), np.array([r.box() for r in tracked]))
        return [r for r, o in zip(found, overlap.max(1)) if o < 0.5]

    def _landmarks(self, rgb: np.ndarray, roi: ops.Roi, models: _Models) -> PersonKeypoints | None:
        """One person's landmarks from the crop `roi`."""
        lmk = models.lmk
        side = ops.LMK_SIZE
        a = roi.crop_to_image(side)
        crop = cv2.warpAffine(rgb, a, (side, side), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_CONSTANT)
        lmk.set_tensor(self._lmk_in, crop[None].astype(np.float32) / 255.0)
        lmk.invoke()
        score = float(lmk.get_tensor(self._lmk_flag).reshape(()))
        if score < self.min_presence:
            return None
        raw = lmk.get_tensor(self._lmk_raw).reshape(39, 5)
        pts = raw[:, :2] @ a[:, :2].T + a[:, 2]
        world = lmk.get_tensor(self._lmk_world).reshape(39, 3)[:NUM_LANDMARKS].copy()
        world[:, :2] = world[:, :2] @ a[:, :2].T * (side / roi.size)  # undo the crop rotation
        lm = pts[:NUM_LANDMARKS]
        h, w = rgb.shape[:2]
        box = np.concatenate([lm.min(0), lm.max(0)])
        off = (lm[:, 0] < 0) | (lm[:, 0] >= w) | (lm[:, 1] < 0) | (lm[:, 1] >= h)
        return PersonKeypoints(
            landmarks=lm, visibility=ops.sigmoid(raw[:NUM_LANDMARKS, 3]), world=world, box=box,
            score=score, truncated=bool(off.any()), roi=ops.roi_from_points(pts[33], pts[34]))

    @staticmethod
    def _dedupe(people: list[tuple[PersonKeypoints, int]]) -> list[tuple[PersonKeypoints, int]]:
        """Drop landmark sets (with their measured count) that describe the same person twice (from two ROIs)."""
        kept: list[tuple[PersonKeypoints, int]] = []
        for p, m in sorted(people, key=lambda x: -x[0].score):
            if kept and ops.iou(p.box[None], np.array([k.box for k, _ in kept])).max() > DUPLICATE_IOU:
                continue
            kept.append((p, m))
        return kept
