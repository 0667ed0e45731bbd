"""Check lifted pelvis depth against a registered depth image (real RGB-D frames).

The depth camera sees the body's front surface; SMPL's pelvis joint lies inside the body, about
PELVIS_BEHIND_SURFACE behind the lower-abdomen surface, so that is added to the measured depth.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from glopro_ros.perception.pipeline import PerceptionStage
from glopro_ros.perception.rgbd_frames import RgbdFrame

PELVIS_BEHIND_SURFACE = 0.10  # m
WINDOW = 5  # half-size in pixels of the median window around the pelvis


@dataclass
class DepthRow:
    frame: int
    people: int
    estimate_m: float  # pelvis z of the closest person
    std_m: float  # its stated standard deviation
    surface_m: float  # median registered depth around the projected pelvis
    true_m: float  # surface + PELVIS_BEHIND_SURFACE
    error_m: float  # estimate - true
    reprojection_px: float


def pelvis_depth_errors(stage: PerceptionStage, frames: list[RgbdFrame]) -> list[DepthRow]:
    """One row per frame with depth and at least one lifted person (the tallest in the image)."""
    rows = []
    for i, frame in enumerate(frames):
        if frame.depth is None:
            continue
        out = stage.process(frame.rgb, frame.k, frame.frame_id)
        if not out.fits:
            continue
        j = int(np.argmax([p.box[3] - p.box[1] for p in out.people]))
        fit = out.fits[j]
        p = fit.root_position
        u, v = np.round((frame.k @ p / p[2])[:2]).astype(int)
        h, w = frame.depth.shape
        win = frame.depth[max(v - WINDOW, 0):min(v + WINDOW + 1, h),
                          max(u - WINDOW, 0):min(u + WINDOW + 1, w)]
        if win.size == 0 or np.isnan(win).all():
            continue
        surface = float(np.nanmedian(win))
        true = surface + PELVIS_BEHIND_SURFACE
        rows.append(DepthRow(i, len(out.fits), float(p[2]), float(np.sqrt(fit.cov[84, 84])),
                             surface, true, float(p[2]) - true, fit.reprojection_px))
    return rows
