"""BlazePose pre/post-processing in plain numpy (anchors, box decoding, NMS, rotated ROIs).

Re-implements what MediaPipe's pose graphs do around the two tflite files, so the models can run
on a bare tflite runtime with several people per image and without the mediapipe package.
Constants follow mediapipe/modules/pose_detection/pose_detection_cpu.pbtxt and pose_landmark.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DET_SIZE = 224
LMK_SIZE = 256
ROI_SCALE = 1.25  # RectTransformationCalculator scale for detection and landmark ROIs


@dataclass(frozen=True)
class Roi:
    """Square rotated region in pixels; rotation (rad) turns the crop's up onto the body axis."""

    cx: float
    cy: float
    size: float
    rotation: float

    def crop_to_image(self, side: int) -> np.ndarray:
        """2x3 affine map from crop pixels (side x side) to image pixels."""
        c, s = np.cos(self.rotation), np.sin(self.rotation)
        k = self.size / side
        rot = k * np.array([[c, -s], [s, c]])
        t = np.array([self.cx, self.cy]) - rot @ np.array([side / 2.0, side / 2.0])
        return np.hstack([rot, t[:, None]])

    def box(self) -> np.ndarray:
        """Axis-aligned x0, y0, x1, y1 of the rotated square."""
        corners = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], float) * LMK_SIZE
        pts = corners @ self.crop_to_image(LMK_SIZE)[:, :2].T + self.crop_to_image(LMK_SIZE)[:, 2]
        return np.concatenate([pts.min(0), pts.max(0)])


def ssd_anchors() -> np.ndarray:
    """(2254, 2) anchor centres (normalised) of the pose detector; anchor sizes are fixed to 1."""
    strides = [8, 16, 32, 32, 32]
    centres = []
    layer = 0
    while layer < len(strides):
        last = layer
        n_per_cell = 0
        while last < len(strides) and strides[last] == strides[layer]:
            n_per_cell += 2  # aspect ratio 1.0 plus the interpolated scale
            last += 1
        fm = int(np.ceil(DET_SIZE / strides[layer]))
        ys, xs = np.meshgrid(np.arange(fm), np.arange(fm), indexing="ij")
        cell = np.stack([(xs + 0.5) / fm, (ys + 0.5) / fm], -1).reshape(-1, 1, 2)
        centres.append(np.repeat(cell, n_per_cell, axis=1).reshape(-1, 2))
        layer = last
    return np.concatenate(centres)


ANCHORS = ssd_anchors()


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function, clipped so float32 logits cannot overflow."""
    return 1.0 / (1.0 + np.exp(-np.clip(x, -80.0, 80.0)))


def decode_detections(raw_boxes: np.ndarray, raw_scores: np.ndarray,
                      min_score: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode detector outputs to boxes (N,4 x0y0x1y1), keypoints (N,4,2), scores, in 0..1."""
    scores = sigmoid(raw_scores.reshape(-1).astype(np.float64))
    keep = scores >= min_score
    raw = raw_boxes.reshape(-1, 12)[keep] / DET_SIZE
    anchors = ANCHORS[keep]
    centre = raw[:, :2] + anchors
    half = raw[:, 2:4] / 2.0
    boxes = np.concatenate([centre - half, centre + half], 1)
    kps = raw[:, 4:12].reshape(-1, 4, 2) + anchors[:, None, :]
    return boxes, kps, scores[keep]


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU between boxes a (N,4) and b (M,4), x0y0x1y1."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), -1)
    area_a = np.prod(a[:, 2:] - a[:, :2], -1)
    area_b = np.prod(b[:, 2:] - b[:, :2], -1)
    return inter / np.maximum(area_a[:, None] + area_b[None] - inter, 1e-12)


def weighted_nms(boxes: np.ndarray, kps: np.ndarray, scores: np.ndarray,
                 threshold: float = 0.3) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """MediaPipe's WEIGHTED non-max suppression: overlapping candidates are score-averaged."""
    order = np.argsort(-scores)
    boxes, kps, scores = boxes[order], kps[order], scores[order]
    alive = np.ones(len(scores), bool)
    out = []
    for i in range(len(scores)):
        if not alive[i]:
            continue
        group = alive & (iou(boxes[i:i + 1], boxes)[0] > threshold)
        group[i] = True
        w = scores[group] / scores[group].sum()
        out.append((w @ boxes[group], np.tensordot(w, kps[group], 1), float(scores[i])))
        alive &= ~group
    return out


def roi_from_points(centre: np.ndarray, scale_point: np.ndarray) -> Roi:
    """ROI from hip centre and body-extent point (detector keypoints 0/1, landmarks 33/34)."""
    d = scale_point - centre
    rotation = np.pi / 2 - np.arctan2(-d[1], d[0])
    rotation = (rotation + np.pi) % (2 * np.pi) - np.pi
    size = 2.0 * float(np.hypot(*d)) * ROI_SCALE
    return Roi(float(centre[0]), float(centre[1]), size, float(rotation))


def letterbox(width: int, height: int) -> tuple[float, float, float]:
    """Scale and x/y padding (in detector pixels) that fit an image into the square input."""
    scale = DET_SIZE / max(width, height)
    return scale, (DET_SIZE - width * scale) / 2.0, (DET_SIZE - height * scale) / 2.0

