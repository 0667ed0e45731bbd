"""The keypoint fit: exact kinematics and Jacobians, recovery of a known body, honest spread."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from glopro_ros.core.body_model import BodyModel
from glopro_ros.core.gaussian_state import ROOT_POSITION
from glopro_ros.perception.lifting import N_STATE, KeypointLifter, default_pose_prior
from glopro_ros.perception.rotations import exp_rotvec
from glopro_ros.perception.smpl_correspondence import SMPL_JOINTS, BodyTargets

K = np.array([[525.0, 0, 320], [0, 525.0, 240], [0, 0, 1]])


@pytest.fixture(scope="module")
def lifter() -> KeypointLifter:
    return KeypointLifter(BodyModel(device="cpu"))


def _person(seed: int):
    rng = np.random.default_rng(seed)
    betas = rng.normal(0, 0.5, 10)
    local = exp_rotvec(default_pose_prior()[0]) @ exp_rotvec(rng.normal(0, 0.25, (23, 3)))
    # facing the camera (SMPL y up -> camera y down), 2.5 m away
    root = exp_rotvec(np.array([np.pi, 0, 0])) @ exp_rotvec(rng.normal(0, 0.2, 3))
    return betas, local, root, np.array([0.2, 0.1, 2.5])


def _joints(lifter: KeypointLifter, betas, local, root, pos) -> np.ndarray:
    """One person's joints (24, 3) through the batched kinematics."""
    return lifter._forward(betas[None], local[None], root[None], pos[None])[0][0]


def _targets(joints: np.ndarray, conf: float = 0.95) -> BodyTargets:
    pts = joints[SMPL_JOINTS]
    uv = pts @ K.T
    return BodyTargets(uv=uv[:, :2] / uv[:, 2:], confidence=np.full(len(pts), conf),
                       world=pts - joints[[1, 2]].mean(0))


def test_forward_matches_core_body_model(lifter) -> None:
    betas, local, root, pos = _person(0)
    joints = _joints(lifter, betas, local, root, pos)
    ref, _ = lifter.body_model.forward_joints(*(torch.as_tensor(v)[None]
                                                for v in (betas, local, root, pos)))
    np.testing.assert_allclose(joints, ref[0].numpy(), atol=1e-12)


def test_analytic_jacobian_matches_finite_differences(lifter) -> None:
    betas, local, root, pos = _person(1)
    state = (betas[None], local[None], root[None], pos[None], np.zeros(1))
    joints, rots = lifter._forward(*state[:4])
    jac = lifter._jacobian(joints, rots)
    eps = 1e-6
    for i in range(N_STATE + 1):
        step = np.zeros((1, N_STATE + 1))
        step[0, i] = eps
        moved = lifter._forward(*lifter._boxplus(state, step)[:4])[0]
        np.testing.assert_allclose((moved - joints)[:, SMPL_JOINTS] / eps, jac[..., i], atol=1e-4)


def test_recovers_a_known_body_and_reprojects(lifter) -> None:
    betas, local, root, pos = _person(2)
    joints = _joints(lifter, betas, local, root, pos)
    fit = lifter.fit(_targets(joints), K)
    assert fit.reprojection_px < 5.0  # priors pull a little against noise-free keypoints
    assert np.linalg.norm(fit.root_position - pos) < 0.15
    rel = (fit.joints - fit.joints[0]) - (joints - joints[0])
    assert np.linalg.norm(rel[SMPL_JOINTS], axis=1).mean() < 0.05


def test_depth_is_less_certain_than_image_position(lifter) -> None:
    betas, local, root, pos = _person(3)
    fit = lifter.fit(_targets(_joints(lifter, betas, local, root, pos)), K)
    std = np.sqrt(np.diag(fit.cov)[ROOT_POSITION])
    assert std[2] > 3 * max(std[0], std[1])


def test_occluded_arm_is_less_certain(lifter) -> None:
    betas, local, root, pos = _person(4)
    joints = _joints(lifter, betas, local, root, pos)
    seen = lifter.fit(_targets(joints), K)
    occluded = _targets(joints)
    occluded.confidence[np.isin(SMPL_JOINTS, [18, 20, 22])] = 0.0  # left elbow, wrist, hand
    hidden = lifter.fit(occluded, K)
    elbow = slice(10 + 3 * 17, 13 + 3 * 17)  # body-pose block of joint 18 (index 17)
    # flexion (about the local y axis of SMPL's elbow) is what the wrist keypoint determines
    assert hidden.cov[elbow, elbow][1, 1] > 4 * seen.cov[elbow, elbow][1, 1]


def test_too_few_keypoints_are_refused(lifter) -> None:
    betas, local, root, pos = _person(5)
    t = _targets(_joints(lifter, betas, local, root, pos))
    t.confidence[:] = 0.0
    t.confidence[:4] = 0.9
    with pytest.raises(ValueError, match="confident keypoints"):
        lifter.fit(t, K)


def test_results_become_a_core_state(lifter) -> None:
    betas, local, root, pos = _person(6)
    fit = lifter.fit(_targets(_joints(lifter, betas, local, root, pos)), K)
    state = KeypointLifter.to_state([fit, fit], "head_rgbd_sensor_rgb_frame")
    assert state.batch_size == 2 and state.frame_id == "head_rgbd_sensor_rgb_frame"
    assert torch.linalg.eigvalsh(state.cov).min() > 0
    assert KeypointLifter.to_state([], "cam").batch_size == 0


def test_fitting_people_together_matches_one_by_one(lifter) -> None:
    """fit_many (the node's path: all people of an image in one batched solve) gives each person the
    fit it gets alone, and a refused person keeps its reason without disturbing the others."""
    people = [_targets(_joints(lifter, *_person(seed)), conf=0.6 + 0.07 * seed) for seed in range(10, 15)]
    hidden = BodyTargets(people[0].uv, np.zeros_like(people[0].confidence), people[0].world)
    together = lifter.fit_many([people[0], hidden, *people[1:]], K)
    assert isinstance(together[1], ValueError) and "confident keypoints" in str(together[1])
    for targets, fit in zip(people, [together[0], *together[2:]]):
        alone = lifter.fit(targets, K)
        assert fit.iterations == alone.iterations
        for name in ("betas", "body_pose", "root_orientation", "root_position", "cov", "joints"):
            np.testing.assert_allclose(getattr(fit, name), getattr(alone, name), rtol=1e-9, atol=1e-12, err_msg=name)
