"""The node's pipeline on lifted keypoints: one track per person over a whole scene."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from glopro_ros.pipeline import HumanPipeline, PipelineConfig
from glopro_ros.ros.keypoint_input import people_from_keypoints_msg

sys.path.insert(0, str(Path(__file__).parent / "players"))
from keypoint_player import build_scene  # noqa: E402


def track_ids(floor: float) -> set[int]:
    """Every track id the pipeline gives over the keypoint player's 10 s, 5-person scene (seed 2, 30 Hz,
    no occlusions or misses; people walk in and out of view)."""
    scene = build_scene(5, 10.0, 30.0, 2, with_truth=False, clean=True)
    pipe = HumanPipeline(PipelineConfig(max_people=5, position_std_floor=floor), with_images=False)
    world_t_cam = scene.world_t_base @ scene.base_t_camera
    ids: set[int] = set()
    for t, msg in enumerate(scene.keypoints):
        people, _ = people_from_keypoints_msg(msg)
        out = pipe.process_keypoints(t / 30.0, people, scene.k, msg.image_width, msg.image_height, world_t_cam[t], "cam")
        ids |= set(out.track_ids.tolist())
    return ids


def test_each_person_keeps_one_track_with_the_position_floor() -> None:
    # Lifted root positions here are overconfident in height (ANEES/dim 5.9): without the floor a person
    # drifts outside its track's gate and comes back as a new track while the old one coasts.
    assert len(track_ids(PipelineConfig.position_std_floor)) == 5
    assert len(track_ids(0.0)) > 5


def test_negative_floor_is_refused() -> None:
    with pytest.raises(ValueError, match="position_std_floor"):
        HumanPipeline(PipelineConfig(position_std_floor=-0.1), with_images=False)


def test_landmark_budget_keeps_one_track_per_person(shared_data) -> None:
    """Images with max_landmarks=2 for 5 people (bench_node's group photo as a still video): new people are
    measured on their first frames, so their tracks are confirmed together; afterwards two people a frame take
    turns and the others' tracks coast. Every person keeps one track, as without the budget."""
    import cv2
    import numpy as np

    group = cv2.cvtColor(cv2.imread(str(shared_data / "images" / "group_photo.jpg")), cv2.COLOR_BGR2RGB)
    rgb = np.zeros((480, 640, 3), np.uint8)  # letterboxed to VGA as in bench/bench_perception.py
    rgb[27:453] = cv2.resize(group, (640, 426), interpolation=cv2.INTER_AREA)
    k = np.array([[640.0, 0, 320], [0, 640.0, 240], [0, 0, 1]])
    for budget in (0, 2):
        pipe = HumanPipeline(PipelineConfig(max_people=5, max_landmarks=budget))
        ids: set[int] = set()
        for t in range(20):
            out = pipe.process_image(t / 15.0, rgb, k, np.eye(4), "cam")
            ids |= set(out.track_ids.tolist())
            measured = (out.last_observed == out.stamp).sum()
            assert measured == (2 if budget and t >= 3 else 5)
        assert ids == {0, 1, 2, 3, 4} and len(out.track_ids) == 5
