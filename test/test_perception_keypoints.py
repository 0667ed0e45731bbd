"""BlazePose on a bare tflite runtime finds people on real photos, several per image."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data

from glopro_ros.perception import blazepose_ops as ops
from glopro_ros.perception.model_files import MODEL_FILES, default_model_dir


@pytest.fixture(scope="module")
def detector_cls():
    missing = [n for n in MODEL_FILES if not (default_model_dir() / n).is_file()]
    if missing:
        pytest.fail(f"BlazePose model files {missing} are missing in {default_model_dir()}: "
                    "run scripts/setup.sh (or python scripts/fetch_pose_models.py) first")
    from glopro_ros.perception.keypoints import BlazePoseKeypoints
    return BlazePoseKeypoints


def test_anchor_layout_matches_detector_output() -> None:
    assert ops.ANCHORS.shape == (2254, 2)
    assert ops.ANCHORS.min() > 0 and ops.ANCHORS.max() < 1


def test_roi_crop_map_round_trip() -> None:
    roi = ops.roi_from_points(np.array([100.0, 200.0]), np.array([130.0, 120.0]))
    a = roi.crop_to_image(256)
    centre = a[:, :2] @ np.array([128.0, 128.0]) + a[:, 2]
    np.testing.assert_allclose(centre, [100.0, 200.0])
    top = a[:, :2] @ np.array([128.0, 0.0]) + a[:, 2]  # crop "up" points along the body axis
    d = top - centre
    axis = np.array([30.0, -80.0]) / np.hypot(30.0, 80.0)
    assert d @ axis / np.linalg.norm(d) > 0.999


def test_astronaut_one_person_with_face_landmarks(detector_cls) -> None:
    det = detector_cls()
    people = det(skimage.data.astronaut())
    assert len(people) == 1
    p = people[0]
    assert p.landmarks.shape == (33, 2) and p.world.shape == (33, 3) and p.visibility.shape == (33,)
    nose = p.landmarks[0]
    assert 180 < nose[0] < 280 and 60 < nose[1] < 160  # her face is there in the 512x512 photo
    assert p.visibility[[0, 11, 12]].min() > 0.9
    assert p.truncated  # legs are outside the photo
    # world landmarks: metric, hip-centred, head above hips (y down)
    assert abs(p.world[[23, 24]].mean(0)).max() < 0.05
    assert -0.8 < p.world[0, 1] < -0.4


def test_group_photo_finds_most_people(detector_cls, shared_data) -> None:
    img = cv2.cvtColor(cv2.imread(str(shared_data / "images" / "group_photo.jpg")),
                       cv2.COLOR_BGR2RGB)
    people = detector_cls()(img)
    assert len(people) >= 6
    boxes = np.array([p.box for p in people])
    assert ops.iou(boxes, boxes)[~np.eye(len(boxes), dtype=bool)].max() < 0.6


def test_inference_threads_give_the_same_people(detector_cls, shared_data) -> None:
    """BlazePose inferences in parallel threads (the node's default) give what they give one after the other,
    frame by frame on a moving group photo with ROI tracking: detection, landmark ROIs, re-detection beside
    the tracked people's landmarks."""
    img = cv2.cvtColor(cv2.imread(str(shared_data / "images" / "group_photo.jpg")), cv2.COLOR_BGR2RGB)
    # max_people above the people found: re-detection keeps running (it only looks for people with a free place)
    serial = detector_cls(max_people=12, tracking=True, redetect_every=2)
    parallel = detector_cls(max_people=12, tracking=True, redetect_every=2, inference_threads=2)
    assert len(serial._regions(img.shape[1], img.shape[0])) > 1  # tiles: several detector runs per detection
    for shift in (0, 6, 12, 18):
        frame = np.ascontiguousarray(np.roll(img, shift, axis=1))
        one, two = serial(frame), parallel(frame)
        assert len(one) == len(two) >= 5 and len(serial._tracked) < 12
        for a, b in zip(one, two):
            assert a.score == b.score and a.roi == b.roi
            np.testing.assert_array_equal(a.landmarks, b.landmarks)
            np.testing.assert_array_equal(a.world, b.world)


def test_blank_image_has_no_people(detector_cls) -> None:
    assert detector_cls()(np.full((480, 640, 3), 127, np.uint8)) == []


def test_tracking_reuses_rois_and_matches_detection(detector_cls) -> None:
    img = skimage.data.astronaut()
    fresh = detector_cls()(img)[0]
    tracker = detector_cls(tracking=True, redetect_every=10)
    calls = []
    original = tracker.detect_rois
    tracker.detect_rois = lambda rgb: calls.append(1) or original(rgb)
    for _ in range(3):
        tracked = tracker(img)
    assert len(calls) == 1 and len(tracked) == 1
    seen = fresh.visibility > 0.9  # ROIs differ (landmarks vs detector): compare what is seen
    assert seen.sum() >= 10
    assert np.abs(tracked[0].landmarks[seen] - fresh.landmarks[seen]).max() < 15.0
    tracker.reset()
    tracker(img)
    assert len(calls) == 2


def test_rejects_non_rgb(detector_cls) -> None:
    with pytest.raises(ValueError, match="RGB"):
        detector_cls()(np.zeros((64, 64), np.uint8))


def test_landmark_budget_takes_turns(detector_cls, shared_data) -> None:
    """max_landmarks=2 with 5 tracked people: everyone is measured on their first three frames, then two
    landmark runs a frame, longest-waiting first, so nobody waits more than two frames. On a still image a
    person's n-th landmarks come from the same crop as without the budget: every measurement is one the
    unlimited run made."""
    img = cv2.cvtColor(cv2.imread(str(shared_data / "images" / "group_photo.jpg")), cv2.COLOR_BGR2RGB)
    unlimited = detector_cls(max_people=5, tracking=True)
    made = {p.landmarks.tobytes() for _ in range(14) for p in unlimited(img)}
    budget = detector_cls(max_people=5, tracking=True, max_landmarks=2, inference_threads=2)
    runs, detections = [], []
    landmarks, detect = budget._landmarks, budget.detect_rois
    budget._landmarks = lambda *a: runs.append(1) or landmarks(*a)
    budget.detect_rois = lambda rgb: detections.append(1) or detect(rgb)
    for frame in range(14):  # no re-detection at frame 10: no free place (max_people)
        runs.clear()
        people = budget(img)
        assert len(people) == (5 if frame < 3 else 2) and len(budget._tracked) == 5
        assert len(runs) >= 5 if frame == 0 else len(runs) == len(people)  # frame 0: every detection
        assert max(t.waited for t in budget._tracked) <= 2
        assert all(p.landmarks.tobytes() in made for p in people)
    assert len(detections) == 1  # the cold start's
    with pytest.raises(ValueError, match="max_landmarks"):
        detector_cls(max_landmarks=-1)
