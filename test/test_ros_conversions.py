"""Core states -> HumanStateArray and RViz markers: conventions, checks, and what reaches RViz."""
from __future__ import annotations

import copy
from dataclasses import fields

import numpy as np
import pytest
import torch
from rclpy.serialization import deserialize_message, serialize_message
from scipy.spatial.transform import Rotation
from std_msgs.msg import Header
from visualization_msgs.msg import Marker, MarkerArray

from glopro_ros.core.body_model import SMPL_PARENTS, BodyModel
from glopro_ros.core.gaussian_state import GaussianBodyState
from glopro_ros.core.propagation import PointsGaussian, propagate_joints
from glopro_ros.msg import HumanState
from glopro_ros.ros.conversions import TrackInfo, human_state_array, time_msg
from glopro_ros.ros.markers import MeshDecimation, PeopleMarkers, ellipsoid_pose, track_color
from glopro_ros.ros.outputs import MarkerRate


@pytest.fixture(scope="module")
def model() -> BodyModel:
    return BodyModel(device="cpu")


def _state(n: int, seed: int = 3) -> GaussianBodyState:
    rng = np.random.default_rng(seed)
    rotations = Rotation.from_euler("z", rng.uniform(-np.pi, np.pi, (n, 1))).as_matrix() @ \
        Rotation.from_euler("x", 90, degrees=True).as_matrix()  # SMPL y up -> map z up
    return GaussianBodyState.from_blocks(
        betas=rng.normal(0, 0.5, (n, 10)), betas_cov=np.full((n, 10), 0.1),
        body_pose=rng.normal(0, 0.1, (n, 23, 3)), body_pose_cov=np.full((n, 23, 3), 0.01),
        root_orientation=rotations, root_position=rng.uniform(-3, 3, (n, 3)),
        root_cov=np.tile([0.04, 0.01, 0.02, 0.05, 0.002, 0.01], (n, 1)), frame_id="map")


def _info(n: int) -> TrackInfo:
    return TrackInfo(track_ids=np.arange(n) + 7, status=np.full(n, HumanState.STATUS_CONFIRMED),
                     existence=np.full(n, 0.75), last_observed=np.full(n, 12.5))


def test_message_carries_state_joints_and_ros_covariance_convention(model: BodyModel) -> None:
    state = _state(3)
    joints = propagate_joints(model, state)
    msg, dropped = human_state_array(Header(frame_id="map"), model.name, state, joints, _info(3))
    assert dropped == 0 and [h.track_id for h in msg.humans] == [7, 8, 9]
    person, r = msg.humans[1], state.root_orientation[1].numpy()
    q = person.root_pose.pose.orientation
    assert np.allclose(Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix(), r, atol=1e-6)
    assert np.allclose(person.joint_positions.reshape(24, 3), joints.mean[1].numpy(), atol=1e-5)
    assert np.allclose(person.joint_positions[:3], [person.root_pose.pose.position.x,
                                                    person.root_pose.pose.position.y,
                                                    person.root_pose.pose.position.z], atol=1e-5)
    # Sampled body-frame errors e (R = R_mean exp(e)) re-expressed about the map axes
    # (R = exp(e') R_mean) have the covariance the message states.
    body_cov = np.diag([0.05, 0.002, 0.01])
    e = np.random.default_rng(0).multivariate_normal(np.zeros(3), body_cov, 20000)
    e_map = Rotation.from_matrix(r @ Rotation.from_rotvec(e).as_matrix() @ r.T).as_rotvec()
    msg_cov = np.asarray(person.root_pose.covariance).reshape(6, 6)
    assert np.allclose(np.cov(e_map.T), msg_cov[3:, 3:], atol=2e-3)
    assert np.allclose(np.diag(msg_cov)[:3], [0.04, 0.01, 0.02])
    assert np.allclose(person.betas_variance, 0.1) and np.allclose(person.body_pose_variance, 0.01)
    assert person.last_observed.sec == 12 and person.last_observed.nanosec == 500_000_000


def test_non_finite_people_are_dropped_and_counted(model: BodyModel) -> None:
    state = _state(2)
    joints = propagate_joints(model, state)
    joints.mean[0, 5, 1] = float("nan")
    msg, dropped = human_state_array(Header(frame_id="map"), model.name, state, joints, _info(2))
    assert dropped == 1 and [h.track_id for h in msg.humans] == [8]
    joints.mean[0, 5, 1] = 0.0
    joints.cov[1, 7] = -joints.cov[1, 7]  # one joint's covariance of the other person negative definite
    msg, dropped = human_state_array(Header(frame_id="map"), model.name, state, joints, _info(2))
    assert dropped == 1 and [h.track_id for h in msg.humans] == [7]
    with pytest.raises(ValueError, match="frames differ"):
        human_state_array(Header(frame_id="odom"), model.name, state, joints, _info(2))


def _alone(state: GaussianBodyState, joints: PointsGaussian, info: TrackInfo, i: int) -> tuple:
    """Person i's arguments alone, the tensors as they are (GaussianBodyState's constructor would
    validate them again, which rounds)."""
    state_i = copy.copy(state)
    for name in ("betas", "body_pose", "root_orientation", "root_position", "cov"):
        object.__setattr__(state_i, name, getattr(state, name)[i:i + 1])
    values = (getattr(info, f.name) for f in fields(info))
    info_i = TrackInfo(*(None if v is None else v[i:i + 1] for v in values))
    return state_i, PointsGaussian(joints.mean[i:i + 1], joints.cov[i:i + 1], joints.frame_id), info_i


def test_people_checked_together_give_the_messages_of_each_alone(model: BodyModel) -> None:
    """All people are checked and converted at once: one with an indefinite joint covariance and one
    with a NaN joint are dropped and counted, and every other person's message is the one built
    for them alone."""
    n, rng = 5, np.random.default_rng(4)
    state = _state(n)
    joints = propagate_joints(model, state)
    joints.cov[1, 7] = -joints.cov[1, 7]
    joints.mean[3, 5, 1] = float("nan")
    a = rng.normal(0, 0.1, (n, 6, 6))
    info = TrackInfo(track_ids=np.arange(n) + 7, status=np.array([0, 1, 2, 1, 1]),
                     existence=np.array([0.2, 0.5, 1.3, 0.9, -0.1]), last_observed=np.linspace(10, 11, n),
                     twist=rng.normal(0, 1, (n, 6)), twist_cov=a @ np.swapaxes(a, 1, 2) + 0.01 * np.eye(6))
    header = Header(frame_id="map", stamp=time_msg(11.0))
    msg, dropped = human_state_array(header, model.name, state, joints, info)
    assert dropped == 2 and [h.track_id for h in msg.humans] == [7, 9, 11]
    for i, person in zip([0, 2, 4], msg.humans):
        alone, alone_dropped = human_state_array(header, model.name, *_alone(state, joints, info, i))
        assert alone_dropped == 0 and alone.humans == [person], i
    for i in (1, 3):
        alone, alone_dropped = human_state_array(header, model.name, *_alone(state, joints, info, i))
        assert alone_dropped == 1 and not alone.humans, i


def test_ellipsoid_axes_and_diameters_follow_the_covariance() -> None:
    axes = Rotation.from_euler("xyz", [10, 20, 30], degrees=True).as_matrix()
    cov = axes @ np.diag([0.01, 0.04, 0.09]) @ axes.T
    diameters, quaternion = ellipsoid_pose(cov, sigma=2.0)
    rotation = Rotation.from_quat(quaternion).as_matrix()
    assert np.allclose(rotation @ np.diag((diameters / 4.0) ** 2) @ rotation.T, cov, atol=1e-12)
    assert np.allclose(sorted(diameters), [0.4, 0.8, 1.2])
    # All joints at once give what each gives alone (a reflection is turned into a rotation).
    covs = np.stack([cov, np.diag([0.04, 0.01, 0.09]), axes @ np.diag([0.09, 0.01, 0.04]) @ axes.T])
    batch_diameters, batch_quaternions = ellipsoid_pose(covs[None], sigma=2.0)
    for c, d, q in zip(covs, batch_diameters[0], batch_quaternions[0]):
        single_d, single_q = ellipsoid_pose(c, sigma=2.0)
        assert np.allclose(d, single_d) and np.allclose(q, single_q)
        assert np.isclose(np.linalg.det(Rotation.from_quat(q).as_matrix()), 1.0)


def test_markers_show_mesh_skeleton_ellipsoids_and_ids(model: BodyModel) -> None:
    state = _state(2)
    joints = propagate_joints(model, state)
    vertices = model.forward_vertices(state.betas, state.body_pose, state.root_orientation, state.root_position)
    mesh = MeshDecimation.from_mesh(model.forward_vertices(*(torch.zeros(1, 10), torch.zeros(1, 23, 3),
                                                            torch.eye(3)[None], torch.zeros(1, 3)))[0].numpy(),
                                    model.faces)
    assert 500 < len(mesh.faces) < len(model.faces) and mesh.faces.max() < len(mesh.vertex_index)
    markers = PeopleMarkers(SMPL_PARENTS, mesh)(Header(frame_id="map"), np.array([7, 8]), np.array([0.9, 0.3]),
                                                joints.mean.numpy(), joints.cov.numpy(), vertices.detach().numpy())
    assert markers.markers[0].action == Marker.DELETEALL
    by_ns: dict[str, list[Marker]] = {}
    for m in markers.markers[1:]:
        by_ns.setdefault(m.ns, []).append(m)
    assert {ns: len(ms) for ns, ms in by_ns.items()} == {"mesh": 2, "skeleton": 2, "uncertainty": 48, "id": 2}
    assert all(len(m.points) == 3 * len(mesh.faces) for m in by_ns["mesh"])
    # RViz reads a TRIANGLE_LIST as consecutive corner triples: the message must carry the faces' corners.
    wire = deserialize_message(serialize_message(markers), MarkerArray)
    for n, m in enumerate(m for m in wire.markers if m.ns == "mesh"):
        corners = np.array([[p.x, p.y, p.z] for p in m.points])
        np.testing.assert_allclose(corners, vertices[n].detach().numpy()[mesh.vertex_index][mesh.faces].reshape(-1, 3),
                                   atol=1e-12)
    assert all(len(m.points) == 2 * 23 for m in by_ns["skeleton"])
    assert [m.text for m in by_ns["id"]] == ["7", "8"]
    assert by_ns["mesh"][0].color.a == pytest.approx(0.9) and by_ns["mesh"][1].color.a == pytest.approx(0.3)
    assert track_color(7, 1.0) == by_ns["skeleton"][0].color
    assert len({m.id for m in by_ns["uncertainty"]}) == 48


def _display_mesh(model: BodyModel) -> MeshDecimation:
    return MeshDecimation.from_mesh(model.forward_vertices(*(torch.zeros(1, 10), torch.zeros(1, 23, 3),
                                                             torch.eye(3)[None], torch.zeros(1, 3)))[0].numpy(),
                                    model.faces)


def _marker_frame(model: BodyModel, seed: int, ids: list[int]) -> tuple:
    """PeopleMarkers arguments for random people with these track ids."""
    state = _state(len(ids), seed)
    joints = propagate_joints(model, state)
    vertices = model.forward_vertices(state.betas, state.body_pose, state.root_orientation, state.root_position)
    header = Header(frame_id="map", stamp=time_msg(float(seed)))
    return (header, np.array(ids, dtype=int), np.linspace(0.3, 0.9, len(ids)), joints.mean.numpy(), joints.cov.numpy(),
            vertices.detach().numpy())


def test_markers_reused_between_frames_equal_fresh_ones(model: BodyModel) -> None:
    """PeopleMarkers keeps each track's message objects: a frame after others (people moved, one gone,
    one new) decodes to exactly what a fresh builder gives for it."""
    mesh = _display_mesh(model)
    reused = PeopleMarkers(SMPL_PARENTS, mesh)
    for seed, ids in ((1, [3, 4, 5]), (2, [3, 4, 5]), (3, [4, 6])):
        frame = _marker_frame(model, seed, ids)
        got = deserialize_message(serialize_message(reused(*frame)), MarkerArray)
        fresh = deserialize_message(serialize_message(PeopleMarkers(SMPL_PARENTS, mesh)(*frame)), MarkerArray)
        assert got == fresh, seed


@pytest.mark.parametrize("lifetime_s", [1.0, 0.5])
def test_serialized_markers_decode_to_the_same_message(model: BodyModel, lifetime_s: float) -> None:
    """The node publishes PeopleMarkers' CDR bytes (mesh corners written from numpy): over frames with people
    coming and going, a frame without mesh vertices and one without people, they decode to the message rclpy
    serialises from the Marker objects."""
    mesh = _display_mesh(model)
    serialized = PeopleMarkers(SMPL_PARENTS, mesh, lifetime_s=lifetime_s, serialized=True)
    for seed, ids in ((1, [3, 4, 5]), (2, [3, 4, 5, 9, 11]), (3, [4]), (4, []), (5, [2, 4])):
        frame = _marker_frame(model, seed, ids)
        if seed == 5:
            frame = frame[:5]  # no vertices: no mesh markers
        got = serialized(*frame)
        assert isinstance(got, bytes)
        objects = PeopleMarkers(SMPL_PARENTS, mesh, lifetime_s=lifetime_s)(*frame)
        assert deserialize_message(got, MarkerArray) == deserialize_message(serialize_message(objects), MarkerArray), seed


def test_marker_rate_picks_frames_by_stamp() -> None:
    """The first frame of each 1/rate slot of stamps gets markers: 30 Hz frames with stamp jitter
    give exactly 10 marker frames per second at 10 Hz; a jump back in time gets markers at once;
    rate 0 means every frame."""
    rng = np.random.default_rng(1)
    stamps = 100.0 + np.arange(90) / 30.0 + rng.uniform(-0.004, 0.004, 90)
    limit = MarkerRate(10.0)
    chosen = [t for t in stamps if limit.due(float(t))]
    assert len(chosen) == 30 and np.all(np.diff(chosen) > 0.05)
    assert limit.due(50.0) and not limit.due(50.01)
    every = MarkerRate(0.0)
    assert all(every.due(float(t)) for t in stamps[:5])
