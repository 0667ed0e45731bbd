"""3DPW and EMDB converters on tiny files fabricated from the documented formats (never real data)."""
from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from rosbags.highlevel import AnyReader

from glopro_ros.core.body_model import BodyModel
from glopro_ros.core.so3 import exp_so3
from glopro_ros.tools import convert_3dpw, convert_emdb
from glopro_ros.tools.bag_typestore import glopro_typestore

T = 6
F64 = dict(dtype=torch.float64)
# Y-down world (as 3DPW's): the camera at the origin looks along +z, people stand 4 m ahead.
K = np.array([[1000.0, 0.0, 540.0], [0.0, 1000.0, 960.0], [0.0, 0.0, 1.0]])
FLIP = np.diag([1.0, -1.0, -1.0])  # SMPL (y up, z forward) -> y down, facing the camera


def _people(body: BodyModel, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Poses (T, n, 72), pelvis positions (T, n, 3) and joints (T, n, 24, 3) in the y-down world."""
    rng = np.random.default_rng(0)
    poses = np.zeros((T, n, 72))
    poses[..., 3:] = 0.1 * rng.normal(size=(T, n, 69))
    poses[..., :3] = np.pi * np.array([1.0, 0.0, 0.0])  # rotation by pi about x: y up -> y down
    pelvis = np.stack([np.stack([np.linspace(-0.5, 0.5, T) + p, np.zeros(T), np.full(T, 4.0)], -1) for p in range(n)], 1)
    joints = body.forward_joints(torch.zeros(T * n, 10, **F64), exp_so3(torch.as_tensor(poses[..., 3:].reshape(-1, 23, 3), **F64)),
                                 exp_so3(torch.as_tensor(poses[..., :3].reshape(-1, 3), **F64)),
                                 torch.as_tensor(pelvis.reshape(-1, 3), **F64))[0].numpy().reshape(T, n, 24, 3)
    return poses, pelvis, joints


def _read(bag: Path) -> dict[str, list]:
    out: dict[str, list] = {}
    with AnyReader([bag], default_typestore=glopro_typestore()) as reader:
        for c, _, raw in reader.messages():
            out.setdefault(c.topic, []).append(reader.deserialize(raw, c.msgtype))
    return out


def _check_up_and_detections(msgs: dict[str, list], people_per_frame: list[int]) -> None:
    """Spines point up (+z) in map, ground truth and detections are where the camera sees them."""
    assert [len(m.humans) for m in msgs["/ground_truth"]] == people_per_frame
    for gt, kp in zip(msgs["/ground_truth"], msgs["/camera/keypoints"]):
        for h in gt.humans:
            joints = np.asarray(h.joint_positions).reshape(24, 3)
            spine = joints[12] - joints[0]
            assert spine[2] > 0.9 * np.linalg.norm(spine)
        assert len(kp.people) == len(gt.humans) and kp.skeleton == "blazepose33"
    tf = msgs["/tf"][0].transforms[0]
    assert (tf.header.frame_id, tf.child_frame_id) == ("map", "camera_optical_frame")
    # The camera looks horizontally: its optical axis (z) has no vertical component in map.
    q = tf.transform.rotation
    from scipy.spatial.transform import Rotation

    optical_z = Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix()[:, 2]
    assert abs(optical_z[2]) < 0.05


def test_3dpw_sequence_to_bag(tmp_path: Path) -> None:
    body = BodyModel(device="cpu")
    poses, pelvis, joints = _people(body, 2)
    valid = [np.ones(T, bool), np.r_[np.ones(T - 2, bool), np.zeros(2, bool)]]
    seq = {"sequence": "fabricated_00", "betas": [np.zeros(10), np.zeros(10)], "poses": [poses[:, 0], poses[:, 1]],
           "trans": [pelvis[:, 0], pelvis[:, 1]], "jointPositions": [joints[:, 0].reshape(T, 72), joints[:, 1].reshape(T, 72)],
           "cam_poses": np.tile(np.eye(4), (T, 1, 1)), "cam_intrinsics": K, "campose_valid": valid,
           "poses2d": [np.zeros((T, 3, 18))] * 2, "genders": ["m", "f"]}
    path = tmp_path / "fabricated_00.pkl"
    path.write_bytes(pickle.dumps(seq, protocol=2))
    images = tmp_path / "images"
    images.mkdir()
    for i in range(T):
        cv2.imwrite(str(images / f"image_{i:05d}.jpg"), np.full((1920, 1080, 3), 40 * (i % 5), np.uint8))
    bag = tmp_path / "bag"
    assert convert_3dpw.main([str(path), str(bag), "--images", str(images), "--image-scale", "0.25"]) == 0
    msgs = _read(bag)
    _check_up_and_detections(msgs, [2] * (T - 2) + [1] * 2)
    first = msgs["/ground_truth"][0].humans[0]
    assert first.track_id == 0
    # ground truth = 3DPW's own jointPositions turned to Z-up (bone lengths unchanged)
    gt = np.asarray(first.joint_positions).reshape(24, 3)
    assert np.allclose(np.linalg.norm(gt[1:] - gt[0], axis=1), np.linalg.norm(joints[0, 0, 1:] - joints[0, 0, 0], axis=1),
                       atol=1e-5)
    image = msgs["/camera/image_raw"][1]
    assert (image.width, image.height) == (270, 480)
    assert np.asarray(msgs["/camera/camera_info"][0].k)[0] == pytest.approx(250.0)


def test_emdb_sequence_to_bag(tmp_path: Path) -> None:
    body = BodyModel(device="cpu")
    poses, pelvis, _ = _people(body, 1)
    trans = pelvis[:, 0] - body.rest_joints(torch.zeros(1, 10))[0, 0].numpy()
    good = np.ones(T, bool)
    good[2] = False
    data = {"name": "P0_00_fabricated", "gender": "neutral", "n_frames": T, "good_frames_mask": good, "emdb1": True,
            "camera": {"intrinsics": K, "extrinsics": np.tile(np.eye(4), (T, 1, 1)), "width": 1080, "height": 1920},
            "smpl": {"poses_root": poses[:, 0, :3], "poses_body": poses[:, 0, 3:], "trans": trans, "betas": np.zeros(10)}}
    path = tmp_path / "P0_00_fabricated_data.pkl"
    path.write_bytes(pickle.dumps(data))
    bag = tmp_path / "bag"
    assert convert_emdb.main([str(path), str(bag)]) == 0
    msgs = _read(bag)
    _check_up_and_detections(msgs, [1, 1, 0, 1, 1, 1])
    assert "/camera/image_raw" not in msgs
    gt0 = msgs["/ground_truth"][0].humans[0]
    assert np.linalg.norm(np.asarray(gt0.joint_positions[:3])) == pytest.approx(np.linalg.norm(pelvis[0, 0]), abs=1e-5)


def test_converters_refuse_other_files(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    wrong = tmp_path / "wrong.pkl"
    wrong.write_bytes(pickle.dumps({"sequence": "x"}))
    assert convert_3dpw.main([str(wrong), str(tmp_path / "a")]) == convert_3dpw.EXIT_BAD_INPUT
    assert "not a 3DPW sequence file" in capsys.readouterr().err
    assert convert_emdb.main([str(wrong), str(tmp_path / "b")]) == convert_emdb.EXIT_BAD_INPUT
    assert "missing camera/extrinsics" in capsys.readouterr().err
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(b"\x00garbage")
    assert convert_3dpw.main([str(junk), str(tmp_path / "c")]) == convert_3dpw.EXIT_BAD_INPUT
    assert not any((tmp_path / n).exists() for n in "abc")
