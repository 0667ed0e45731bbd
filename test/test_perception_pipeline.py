"""End to end on real images and the real RGB-D bag; bad input gives no measurement and a reason."""
from __future__ import annotations

import numpy as np
import pytest
import skimage.data

from glopro_ros.perception.model_files import MODEL_FILES, default_model_dir


@pytest.fixture(scope="module")
def stage():
    missing = [n for n in MODEL_FILES if not (default_model_dir() / n).is_file()]
    if missing:
        pytest.fail(f"BlazePose model files {missing} are missing in {default_model_dir()}: "
                    "run scripts/setup.sh (or python scripts/fetch_pose_models.py) first")
    from glopro_ros.perception.pipeline import PerceptionStage
    return PerceptionStage()


def _k(w: int, h: int) -> np.ndarray:
    return np.array([[float(max(w, h)), 0, w / 2], [0, float(max(w, h)), h / 2], [0, 0, 1]])


def test_astronaut_lifted_body_reprojects(stage) -> None:
    out = stage.process(skimage.data.astronaut(), _k(512, 512), "camera")
    assert out.state.batch_size == 1 and out.state.frame_id == "camera"
    assert out.fits[0].reprojection_px < 25.0
    assert 0.3 < out.state.root_position[0, 2] < 3.0


@pytest.mark.parametrize("image,k,match", [
    (np.zeros((0, 0, 3), np.uint8), _k(640, 480), "too small"),
    (np.zeros((8, 8, 3), np.uint8), _k(640, 480), "too small"),
    (np.zeros((480, 640), np.uint8), _k(640, 480), "HxWx3"),
    (skimage.data.astronaut(), None, "intrinsics are missing"),
    (skimage.data.astronaut(), np.zeros((3, 3)), "focal"),
])
def test_bad_input_gives_empty_measurement_and_reason(stage, image, k, match) -> None:
    out = stage.process(image, k, "camera")
    assert out.state.batch_size == 0 and out.people == []
    assert any(match in m for m in out.messages)


def test_no_people_is_reported(stage) -> None:
    out = stage.process(np.full((480, 640, 3), 90, np.uint8), _k(640, 480), "camera")
    assert out.state.batch_size == 0 and "no people found" in out.messages


def test_person_cut_by_the_border_does_not_crash(stage) -> None:
    img = skimage.data.astronaut()[:, 150:]  # half her face and one shoulder outside
    out = stage.process(np.ascontiguousarray(img), _k(362, 512), "camera")
    assert out.people or out.messages  # either a body or the reason why not
    for fit in out.fits:
        assert np.isfinite(fit.cov).all() and fit.root_position[2] > 0.1


def test_hsr_pelvis_depth_matches_depth_image(stage, shared_data) -> None:
    from glopro_ros.perception.depth_check import pelvis_depth_errors
    from glopro_ros.perception.rgbd_frames import read_rgbd_frames
    frames = read_rgbd_frames(shared_data / "hsr_people_rgbd",
                              "/hero/head_rgbd_sensor/rgb/image_raw",
                              "/hero/head_rgbd_sensor/rgb/camera_info",
                              "/hero/head_rgbd_sensor/depth_registered/image",
                              max_gap_ns=500_000_000)
    assert len(frames) == 5
    rows = pelvis_depth_errors(stage, frames)
    assert len(rows) == 5
    for row in rows:
        assert abs(row.error_m) < 0.15 * row.true_m
        assert abs(row.error_m) < 3 * row.std_m  # the stated depth std covers the error
