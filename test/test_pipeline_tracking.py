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
