"""Core Gaussian body states <-> glopro_ros messages, with the checks that keep outputs clean.

Nothing non-finite and no covariance that is not symmetric positive definite is ever published:
such a person is dropped from the message and counted. The core's root-orientation covariance is
in the body frame (right perturbation R = R_mean exp(e)); ROS's PoseWithCovariance convention is
about the header frame's axes (R = exp(e') R_mean), so e' = R_mean e and the blocks rotate.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from builtin_interfaces.msg import Time as TimeMsg
from std_msgs.msg import Header

from glopro_ros.core.gaussian_state import BETAS, BODY_POSE, ROOT_POSITION, ROOT_THETA, GaussianBodyState
from glopro_ros.core.propagation import PointsGaussian
from glopro_ros.core.so3 import matrix_to_quat
from glopro_ros.msg import HumanState, HumanStateArray


@dataclass(frozen=True)
class TrackInfo:
    """Per-person bookkeeping that is not part of the Gaussian state (all arrays of length N)."""

    track_ids: np.ndarray
    status: np.ndarray  # HumanState.STATUS_* values
    existence: np.ndarray  # in [0, 1]
    last_observed: np.ndarray  # seconds
    twist: np.ndarray | None = None  # (N, 6): linear, angular velocity in the output frame
    twist_cov: np.ndarray | None = None  # (N, 6, 6)


_ROOT_INDEX = np.r_[ROOT_POSITION, ROOT_THETA]  # the flat state's root entries in PoseWithCovariance's order


def time_msg(seconds: float) -> TimeMsg:
    nanoseconds = int(round(seconds * 1e9))
    return TimeMsg(sec=nanoseconds // 10**9, nanosec=nanoseconds % 10**9)


def _per_person(mask: np.ndarray) -> np.ndarray:
    """(N, ...) booleans -> (N,): whether all of each person's are true."""
    return mask.all(axis=tuple(range(1, mask.ndim)))


def _factorises(cov: np.ndarray) -> bool:
    try:
        np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        return False
    return True


def spd_people(cov: np.ndarray) -> np.ndarray:
    """Which people of a (N, ..., n, n) stack have only finite, symmetric (to rounding) and positive
    definite matrices.

    One Cholesky over everyone's matrices; only when it fails is each person factorised alone, to
    find whom to drop."""
    ok = _per_person(np.isfinite(cov))
    finite = cov[ok]
    # np.isclose(finite, transpose, rtol=1e-6, atol=1e-12) for finite values, without its ~20 us of
    # argument handling per call.
    transpose = np.swapaxes(finite, -1, -2)
    ok[ok] = _per_person(np.abs(finite - transpose) <= 1e-12 + 1e-6 * np.abs(transpose))
    if not _factorises(cov[ok]):
        ok[ok] = [_factorises(c) for c in cov[ok]]
    return ok


def root_pose_covariance_ros(cov: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """(N, 6, 6) over [position, body-frame rotation error] -> [position, header-frame rotation error]."""
    jac = np.tile(np.eye(6), (len(cov), 1, 1))
    jac[:, 3:, 3:] = rotation
    return jac @ cov @ np.swapaxes(jac, -1, -2)


def human_state_array(header: Header, body_model: str, state: GaussianBodyState, joints: PointsGaussian,
                      info: TrackInfo) -> tuple[HumanStateArray, int]:
    """The array message for N people in ``state.frame_id`` (= header.frame_id) and how many were
    dropped for non-finite values or invalid covariances.

    Checks and conversions run on all people at once (a per-person loop of small numpy calls took
    about 0.3 ms a person); the loop only builds each kept person's message."""
    if state.frame_id != header.frame_id or joints.frame_id != header.frame_id:
        raise ValueError(f"frames differ: header '{header.frame_id}', state '{state.frame_id}', "
                         f"joints '{joints.frame_id}'")
    msg = HumanStateArray(header=header, body_model=body_model)
    n = len(info.track_ids)
    if n == 0:
        return msg, 0
    cov = state.cov.detach().cpu().numpy()
    position = state.root_position.detach().cpu().numpy()
    quaternion = matrix_to_quat(state.root_orientation).detach().cpu().numpy()
    betas = state.betas.detach().cpu().numpy()
    body_pose = state.body_pose.detach().cpu().numpy().reshape(n, 69)
    joint_mean = joints.mean.detach().cpu().numpy().reshape(n, -1)
    joint_cov = joints.cov.detach().cpu().numpy()
    root_cov = root_pose_covariance_ros(cov[:, _ROOT_INDEX[:, None], _ROOT_INDEX],
                                        state.root_orientation.detach().cpu().numpy())
    twist_cov = (np.asarray(info.twist_cov, dtype=float) if info.twist_cov is not None
                 else np.broadcast_to(np.eye(6) * 1e6, (n, 6, 6)))
    # The twist covariance is checked as published (float64), stacked with the root's: one check for both.
    keep = spd_people(np.stack((root_cov, twist_cov), axis=1)) & spd_people(joint_cov)
    keep &= _per_person(np.isfinite(np.concatenate((position, quaternion, betas, body_pose, joint_mean), axis=1)))

    variance = np.diagonal(cov, axis1=1, axis2=2)
    arrays = {"betas": betas, "betas_variance": variance[:, BETAS], "body_pose": body_pose,
              "body_pose_variance": variance[:, BODY_POSE], "joint_positions": joint_mean,
              "joint_covariances": joint_cov.reshape(n, -1)}
    arrays = {name: values.astype(np.float32) for name, values in arrays.items()}
    root_cov, twist_cov = root_cov.reshape(n, 36), twist_cov.reshape(n, 36)
    xyz, xyzw = position.tolist(), quaternion.tolist()
    existence = np.clip(info.existence, 0.0, 1.0).tolist()
    twist = None if info.twist is None else info.twist.tolist()
    for i in np.flatnonzero(keep):
        # The arrays as constructor arguments spare their default zeros; sub-messages are built by the
        # constructor whatever it is given, so they are filled in place.
        person = HumanState(track_id=int(info.track_ids[i]), status=int(info.status[i]), existence_score=existence[i],
                            last_observed=time_msg(float(info.last_observed[i])),
                            **{name: values[i] for name, values in arrays.items()})
        pose = person.root_pose.pose
        pose.position.x, pose.position.y, pose.position.z = xyz[i]
        pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = xyzw[i]
        person.root_pose.covariance = root_cov[i]
        if twist is not None:
            velocity = person.root_twist.twist
            velocity.linear.x, velocity.linear.y, velocity.linear.z, \
                velocity.angular.x, velocity.angular.y, velocity.angular.z = twist[i]
        person.root_twist.covariance = twist_cov[i]
        msg.humans.append(person)
    return msg, n - len(msg.humans)
