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


def time_msg(seconds: float) -> TimeMsg:
    nanoseconds = int(round(seconds * 1e9))
    return TimeMsg(sec=nanoseconds // 10**9, nanosec=nanoseconds % 10**9)


def is_spd(cov: np.ndarray) -> bool:
    """Finite, symmetric (to rounding) and positive definite; a (..., n, n) stack: every matrix of it
    (one batched Cholesky instead of one per joint)."""
    if not np.all(np.isfinite(cov)) or not np.allclose(cov, np.swapaxes(cov, -1, -2), rtol=1e-6, atol=1e-12):
        return False
    try:
        np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        return False
    return True


def root_pose_covariance_ros(cov: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """6x6 over [position, body-frame rotation error] -> [position, header-frame rotation error]."""
    jac = np.eye(6)
    jac[3:, 3:] = rotation
    return jac @ cov @ jac.T


def human_state_array(header: Header, body_model: str, state: GaussianBodyState, joints: PointsGaussian,
                      info: TrackInfo) -> tuple[HumanStateArray, int]:
    """The array message for N people in ``state.frame_id`` (= header.frame_id) and how many were
    dropped for non-finite values or invalid covariances."""
    if state.frame_id != header.frame_id or joints.frame_id != header.frame_id:
        raise ValueError(f"frames differ: header '{header.frame_id}', state '{state.frame_id}', "
                         f"joints '{joints.frame_id}'")
    cov = state.cov.detach().cpu().numpy()
    rotation = state.root_orientation.detach().cpu().numpy()
    position = state.root_position.detach().cpu().numpy()
    quaternion = matrix_to_quat(state.root_orientation).detach().cpu().numpy()
    betas = state.betas.detach().cpu().numpy()
    body_pose = state.body_pose.detach().cpu().numpy().reshape(-1, 69)
    joint_mean = joints.mean.detach().cpu().numpy()
    joint_cov = joints.cov.detach().cpu().numpy()
    root_index = np.r_[np.arange(ROOT_POSITION.start, ROOT_POSITION.stop), np.arange(ROOT_THETA.start, ROOT_THETA.stop)]

    msg = HumanStateArray(header=header, body_model=body_model)
    dropped = 0
    for n in range(len(info.track_ids)):
        root_cov = root_pose_covariance_ros(cov[n][np.ix_(root_index, root_index)], rotation[n])
        twist_cov = info.twist_cov[n] if info.twist_cov is not None else np.eye(6) * 1e6
        values = (position[n], quaternion[n], betas[n], body_pose[n], joint_mean[n])
        if not all(np.all(np.isfinite(v)) for v in values) or not is_spd(root_cov) or not is_spd(twist_cov) \
                or not is_spd(joint_cov[n]):
            dropped += 1
            continue
        person = HumanState(track_id=int(info.track_ids[n]), status=int(info.status[n]),
                            existence_score=float(np.clip(info.existence[n], 0.0, 1.0)),
                            last_observed=time_msg(float(info.last_observed[n])))
        pose = person.root_pose.pose
        pose.position.x, pose.position.y, pose.position.z = (float(v) for v in position[n])
        pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = (float(v) for v in quaternion[n])
        person.root_pose.covariance = root_cov.ravel()
        if info.twist is not None:
            twist = person.root_twist.twist
            twist.linear.x, twist.linear.y, twist.linear.z = (float(v) for v in info.twist[n, :3])
            twist.angular.x, twist.angular.y, twist.angular.z = (float(v) for v in info.twist[n, 3:])
        person.root_twist.covariance = np.asarray(twist_cov, dtype=float).ravel()
        person.betas = betas[n].astype(np.float32)
        person.betas_variance = np.diag(cov[n])[BETAS].astype(np.float32)
        person.body_pose = body_pose[n].astype(np.float32)
        person.body_pose_variance = np.diag(cov[n])[BODY_POSE].astype(np.float32)
        person.joint_positions = joint_mean[n].reshape(-1).astype(np.float32)
        person.joint_covariances = joint_cov[n].reshape(-1).astype(np.float32)
        msg.humans.append(person)
    return msg, dropped
