"""Draw keypoints and the lifted bodies projected back into the image (debug images, docs).

Shows at a glance whether a fit agrees with its keypoints: BlazePose landmarks as dots (green
seen, orange low visibility), the fitted SMPL skeleton and mesh silhouette projected with the
camera intrinsics, and each person's pelvis depth with its 1-sigma.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

from glopro_ros.core.body_model import SMPL_PARENTS, BodyModel
from glopro_ros.perception.pipeline import PerceptionOutput
from glopro_ros.perception.rotations import exp_rotvec

COLOURS = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 190), (0, 128, 128)]


def _project(points: np.ndarray, k: np.ndarray) -> np.ndarray:
    p = points @ k.T
    return p[:, :2] / np.maximum(p[:, 2:], 1e-6)


def draw_overlay(rgb: np.ndarray, out: PerceptionOutput, k: np.ndarray,
                 body_model: BodyModel | None = None) -> np.ndarray:
    """RGB image with keypoints, projected skeletons (and mesh silhouettes given body_model)."""
    img = rgb.copy()
    scale = max(1, round(max(img.shape[:2]) / 640))
    for i, (person, fit) in enumerate(zip(out.people, out.fits)):
        colour = COLOURS[i % len(COLOURS)]
        if body_model is not None:
            verts = body_model.forward_vertices(
                torch.as_tensor(fit.betas)[None], torch.as_tensor(exp_rotvec(fit.body_pose))[None],
                torch.as_tensor(fit.root_orientation)[None],
                torch.as_tensor(fit.root_position)[None])[0].double().numpy()
            mask = np.zeros(img.shape[:2], np.uint8)
            tri = _project(verts, k)[body_model.faces].round().astype(np.int32)
            cv2.fillPoly(mask, list(tri), 255)
            shade = mask > 0
            img[shade] = (0.6 * img[shade] + 0.4 * np.array(colour)).astype(np.uint8)
        uv = _project(fit.joints, k).round().astype(int)
        for j, parent in enumerate(SMPL_PARENTS):
            if parent >= 0:
                cv2.line(img, tuple(uv[j]), tuple(uv[parent]), colour, 2 * scale, cv2.LINE_AA)
        for (u, v), vis in zip(person.landmarks.round().astype(int), person.visibility):
            cv2.circle(img, (int(u), int(v)), 2 * scale,
                       (0, 255, 0) if vis > 0.5 else (255, 140, 0), -1)
        z, std = fit.root_position[2], float(np.sqrt(fit.cov[84, 84]))
        x0, y0 = person.box[:2].round().astype(int)
        cv2.putText(img, f"z={z:.2f}+-{std:.2f}m", (max(x0, 0), max(y0 - 4, 12 * scale)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.45 * scale, colour, scale, cv2.LINE_AA)
    return img
