"""glopro_ros/Keypoints2DArray -> the perception layer's PersonKeypoints, with checks.

The lifting fits the body to 2D keypoints and BlazePose-style metric 3D landmarks, so a detection
needs the blazepose33 layout and keypoints_3d; anything else is refused with a reason.
"""
from __future__ import annotations

import numpy as np

from glopro_ros.msg import Keypoints2DArray
from glopro_ros.perception.blazepose_ops import Roi
from glopro_ros.perception.keypoints import PersonKeypoints

NUM_LANDMARKS = 33


def people_from_keypoints_msg(msg: Keypoints2DArray) -> tuple[list[PersonKeypoints], list[str]]:
    """Valid people of one message and a reason for each refused one (or the whole message)."""
    if msg.skeleton != Keypoints2DArray.SKELETON_BLAZEPOSE33:
        return [], [f"keypoints with skeleton '{msg.skeleton}' ignored: the lifting needs "
                    f"'{Keypoints2DArray.SKELETON_BLAZEPOSE33}' with keypoints_3d"]
    if msg.image_width == 0 or msg.image_height == 0:
        return [], ["keypoints ignored: image_width and image_height must be set"]
    people, problems = [], []
    for i, person in enumerate(msg.people):
        uv = np.asarray(person.keypoints, dtype=float)
        confidence = np.asarray(person.confidences, dtype=float)
        world = np.asarray(person.keypoints_3d, dtype=float)
        box = np.asarray(person.box, dtype=float)
        if uv.size != 2 * NUM_LANDMARKS or confidence.size != NUM_LANDMARKS or world.size != 3 * NUM_LANDMARKS:
            problems.append(f"keypoint person {i} ignored: expected {NUM_LANDMARKS} keypoints, confidences and "
                            f"keypoints_3d, got {uv.size // 2}, {confidence.size}, {world.size // 3}")
            continue
        if not all(np.all(np.isfinite(a)) for a in (uv, confidence, world, box)):
            problems.append(f"keypoint person {i} ignored: non-finite values")
            continue
        uv = uv.reshape(NUM_LANDMARKS, 2)
        inside = (uv[:, 0] >= 0) & (uv[:, 0] < msg.image_width) & (uv[:, 1] >= 0) & (uv[:, 1] < msg.image_height)
        size = float(max(box[2] - box[0], box[3] - box[1], 1.0))
        people.append(PersonKeypoints(
            landmarks=uv, visibility=np.clip(confidence, 0.0, 1.0), world=world.reshape(NUM_LANDMARKS, 3), box=box,
            score=float(person.score), truncated=not bool(inside.all()),
            roi=Roi(0.5 * (box[0] + box[2]), 0.5 * (box[1] + box[3]), size, 0.0)))
    return people, problems
