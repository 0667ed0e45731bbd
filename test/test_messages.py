"""The package's messages: generated, importable, constrained as documented, and CDR round trips."""
from __future__ import annotations

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message

from glopro_ros.msg import HumanState, HumanStateArray, Keypoints2D, Keypoints2DArray
from glopro_ros.ros.demo_exchange import example_human_state, summarize


def test_joint_names_constant_lists_the_24_smpl_joints() -> None:
    names = HumanState.JOINT_NAMES.split(",")
    assert len(names) == 24 and names[0] == "pelvis" and names[-1] == "right_hand"
    assert len(set(names)) == 24


def test_status_constants_are_distinct() -> None:
    values = {HumanState.STATUS_TENTATIVE, HumanState.STATUS_CONFIRMED, HumanState.STATUS_OCCLUDED,
              HumanState.STATUS_LOST}
    assert values == {0, 1, 2, 3}


@pytest.mark.parametrize("field,size", [("betas", 10), ("betas_variance", 10), ("body_pose", 69),
                                        ("body_pose_variance", 69), ("joint_positions", 72),
                                        ("joint_covariances", 216)])
def test_fixed_size_arrays_have_documented_sizes(field: str, size: int) -> None:
    value = getattr(HumanState(), field)
    assert isinstance(value, np.ndarray) and value.dtype == np.float32 and value.shape == (size,)


def test_human_state_array_round_trips_through_cdr() -> None:
    msg = HumanStateArray()
    msg.header.frame_id = "map"
    msg.header.stamp.sec, msg.header.stamp.nanosec = 12, 345
    msg.body_model = "example"
    msg.humans = [example_human_state(i, 1.5) for i in range(3)]
    back = deserialize_message(serialize_message(msg), HumanStateArray)
    assert back == msg
    assert summarize(back) == summarize(msg)
    assert len(serialize_message(msg)) < 3000 * 3  # small enough for 30 Hz x 10 people


def test_keypoints_array_round_trips_through_cdr() -> None:
    person = Keypoints2D(score=0.75, box=[10.0, 20.0, 110.0, 320.0])
    person.keypoints = np.random.default_rng(0).uniform(0, 300, 66).astype(np.float32).tolist()
    person.confidences = [0.5] * 33  # values exact in float32
    msg = Keypoints2DArray(skeleton=Keypoints2DArray.SKELETON_BLAZEPOSE33, image_width=640,
                           image_height=480, people=[person])
    msg.header.frame_id = "camera_optical_frame"
    back = deserialize_message(serialize_message(msg), Keypoints2DArray)
    assert back == msg
    assert back.skeleton == "blazepose33" and len(back.people[0].keypoints) == 66
