"""TransformBuffer follows tf2's contract: chaining, interpolation, static edges, extrapolation limits."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from glopro_ros.core.tf_buffer import ExtrapolationError, TransformBuffer, TransformLookupError


def _matrix(translation: list[float], rotation: Rotation) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = rotation.as_matrix(), translation
    return m


@pytest.fixture()
def robot() -> TransformBuffer:
    """map -> odom (static) -> base_link (moving: drives 1 m and turns 90 deg in 1 s) -> camera (static)."""
    buffer = TransformBuffer(cache_time=5.0, max_extrapolation=0.05)
    buffer.set_transform("map", "odom", 0.0, [1.0, 2.0, 0.0], [0, 0, 0, 1], static=True)
    buffer.set_transform("odom", "base_link", 0.0, [0.0, 0.0, 0.0], [0, 0, 0, 1])
    buffer.set_transform("odom", "base_link", 1.0, [1.0, 0.0, 0.0], Rotation.from_euler("z", 90, degrees=True).as_quat())
    camera_rotation = Rotation.from_euler("xyz", [-90, 0, -90], degrees=True)  # optical: z forward
    buffer.set_transform("base_link", "camera", 0.0, [0.2, 0.0, 1.2], camera_rotation.as_quat(), static=True)
    return buffer


def test_chained_interpolated_lookup_matches_product_of_edges(robot: TransformBuffer) -> None:
    t = 0.25
    map_odom = _matrix([1.0, 2.0, 0.0], Rotation.identity())
    odom_base = _matrix([t, 0.0, 0.0], Rotation.from_euler("z", 90 * t, degrees=True))  # lerp + slerp
    base_camera = _matrix([0.2, 0.0, 1.2], Rotation.from_euler("xyz", [-90, 0, -90], degrees=True))
    expected = map_odom @ odom_base @ base_camera
    assert np.allclose(robot.lookup("map", "camera", t), expected, atol=1e-9)
    assert np.allclose(robot.lookup("camera", "map", t), np.linalg.inv(expected), atol=1e-9)
    assert np.allclose(robot.lookup("camera", "camera", t), np.eye(4))


def test_optical_frame_looks_along_base_x(robot: TransformBuffer) -> None:
    camera_in_base = robot.lookup("base_link", "camera", 0.0)
    assert np.allclose(camera_in_base[:3, :3] @ [0, 0, 1], [1, 0, 0], atol=1e-9)  # z forward
    assert np.allclose(camera_in_base[:3, :3] @ [0, 1, 0], [0, 0, -1], atol=1e-9)  # y down


def test_extrapolation_within_limit_holds_the_end_sample_beyond_it_fails(robot: TransformBuffer) -> None:
    assert np.allclose(robot.lookup("odom", "base_link", 1.04), robot.lookup("odom", "base_link", 1.0))
    with pytest.raises(ExtrapolationError, match="outside the buffered"):
        robot.lookup("map", "camera", 1.2)
    with pytest.raises(ExtrapolationError):
        robot.lookup("map", "camera", -0.5)


def test_unknown_and_disconnected_frames_raise_with_reason(robot: TransformBuffer) -> None:
    with pytest.raises(TransformLookupError, match="does not exist"):
        robot.lookup("map", "nowhere", 0.0)
    robot.set_transform("other_map", "other_robot", 0.0, [0, 0, 0], [0, 0, 0, 1])
    with pytest.raises(TransformLookupError, match="not connected"):
        robot.lookup("map", "other_robot", 0.0)


def test_history_is_bounded_by_cache_time() -> None:
    buffer = TransformBuffer(cache_time=1.0)
    for k in range(50):
        buffer.set_transform("odom", "base_link", 0.1 * k, [0.1 * k, 0, 0], [0, 0, 0, 1])
    assert np.isclose(buffer.lookup("odom", "base_link", 4.55)[0, 3], 4.55)
    with pytest.raises(ExtrapolationError):
        buffer.lookup("odom", "base_link", 1.0)


def test_out_of_order_samples_are_sorted_and_reparenting_replaces_the_edge() -> None:
    buffer = TransformBuffer()
    buffer.set_transform("odom", "base_link", 1.0, [1, 0, 0], [0, 0, 0, 1])
    buffer.set_transform("odom", "base_link", 0.0, [0, 0, 0], [0, 0, 0, 1])
    assert np.isclose(buffer.lookup("odom", "base_link", 0.5)[0, 3], 0.5)
    buffer.set_transform("map", "base_link", 0.0, [5, 0, 0], [0, 0, 0, 1], static=True)
    assert np.isclose(buffer.lookup("map", "base_link", 0.5)[0, 3], 5.0)
    with pytest.raises(TransformLookupError):
        buffer.lookup("odom", "base_link", 0.5)


def test_clear_forgets_moving_transforms_keeps_static_and_bad_input_is_rejected(robot: TransformBuffer) -> None:
    camera_in_base = robot.lookup("base_link", "camera", 0.5)
    robot.clear()
    assert robot.frames() == {"map", "odom", "base_link", "camera"}  # static edges survive (as in tf2)
    np.testing.assert_allclose(robot.lookup("base_link", "camera", 7.0), camera_in_base)
    with pytest.raises(TransformLookupError):
        robot.lookup("odom", "base_link", 0.5)  # the moving edge is gone
    robot.set_transform("odom", "base_link", 0.0, [3.0, 0.0, 0.0], [0, 0, 0, 1])
    assert robot.lookup("map", "camera", 0.0)[0, 3] == pytest.approx(1.0 + 3.0 + 0.2)
    with pytest.raises(ValueError, match="non-finite"):
        robot.set_transform("odom", "base_link", 0.0, [np.nan, 0, 0], [0, 0, 0, 1])
    with pytest.raises(ValueError, match="zero quaternion"):
        robot.set_transform("odom", "base_link", 0.0, [0, 0, 0], [0, 0, 0, 0])
    with pytest.raises(ValueError, match="invalid frame names"):
        robot.set_transform("odom", "odom", 0.0, [0, 0, 0], [0, 0, 0, 1])
