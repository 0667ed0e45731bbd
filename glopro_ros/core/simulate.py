"""Scenario simulator: real mocap people seen by a moving robot camera, with SLAM drift and a noisy image model.

Filters are trained and evaluated on these sequences, so everything the filter may not know (true
camera pose, outliers, ground truth) is kept apart from what it gets (SLAM pose, measurements with
their stated covariances). Deterministic from a seed. World: REP-103 (Z up); camera: optical frame
(z forward, x right, y down). Measurements are in the camera frame, like an image model's output.

Stated noise model (per person and frame, before outliers), all covariances reported to the filter:
- root position (camera frame): std sigma_px * z / f on x and y, depth_rel_sigma * z on depth,
  times a per-frame confidence factor (log-normal); depth is far less certain than image position;
- root orientation (camera frame): isotropic std rot_sigma rad, right perturbation R exp(n);
- body pose: per-joint isotropic std pose_sigma rad (x 1.5 for the distal joints), right perturbation;
- betas: std betas_sigma each;
- outliers with probability outlier_prob: the error is drawn with outlier_scale times the std while
  the stated covariance is unchanged; missed detections with probability miss_prob; occlusion
  intervals (no measurement) and frames outside the image.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation

from glopro_ros.core.mocap import SmplMotion

DISTAL_JOINTS = np.array([6, 7, 9, 10, 19, 20, 21, 22])  # body-pose indices (joint - 1) of feet, wrists, hands
# Optical frame axes in the robot base frame (x forward, y left, z up): columns x right, y down, z forward.
BASE_R_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


@dataclass(frozen=True)
class SimConfig:
    fps: float = 30.0
    duration: float = 10.0  # s
    num_people: int = 1
    width: int = 640
    height: int = 480
    focal: float = 525.0  # px
    camera_height: float = 1.2  # m
    # Robot motion: segments of drive / turn / stop, head pan towards the people plus a scan.
    max_speed: float = 0.6  # m/s
    max_turn_rate: float = 0.5  # rad/s
    pan_scan: float = 0.25  # rad amplitude of the head's scanning motion
    # SLAM: drift grows with distance driven and angle turned; per-frame jitter on top.
    drift_per_metre: float = 0.005  # m std per sqrt(m)
    drift_yaw_per_rad: float = 0.003  # rad std per sqrt(rad) turned
    slam_jitter_pos: float = 0.003  # m
    slam_jitter_rot: float = 0.002  # rad
    # Image model noise (see module docstring).
    sigma_px: float = 6.0
    depth_rel_sigma: float = 0.06
    rot_sigma: float = 0.08
    pose_sigma: float = 0.10
    betas_sigma: float = 0.3
    confidence_spread: float = 0.3  # log-normal std of the per-frame std factor
    outlier_prob: float = 0.02
    outlier_scale: float = 6.0
    miss_prob: float = 0.05
    occlusions_per_person: float = 0.5  # expected number of occlusion intervals per person
    occlusion_duration: tuple[float, float] = (1.0, 2.0)  # s
    min_depth: float = 0.5  # m
    placement_distance: tuple[float, float] = (2.5, 6.0)  # m from the start of the robot
    betas_std: float = 0.5  # true body shapes ~ N(0, betas_std^2)


@dataclass
class SimSequence:
    """Ground truth, measurements and camera poses; person axis P, frame axis T; NaN where absent."""

    config: SimConfig
    seed: int
    stamps: np.ndarray  # (T,) s
    intrinsics: np.ndarray  # (3, 3)
    cam_true: np.ndarray  # (T, 4, 4) world_T_camera (optical frame)
    cam_slam: np.ndarray  # (T, 4, 4) what SLAM reports
    slam_cov: np.ndarray  # (6, 6) stated SLAM covariance [position, rotation (world, left)]
    person_ids: np.ndarray  # (P,)
    clip_names: list[str]
    present: np.ndarray  # (T, P) bool: the person exists in the scene
    gt_root_pos: np.ndarray  # (T, P, 3) world pelvis position
    gt_root_rot: np.ndarray  # (T, P, 3, 3)
    gt_body_pose: np.ndarray  # (T, P, 23, 3)
    gt_betas: np.ndarray  # (P, 10)
    observed: np.ndarray  # (T, P) bool: a measurement exists
    occluded: np.ndarray  # (T, P) bool: inside an occlusion interval
    outlier: np.ndarray  # (T, P) bool
    meas_root_pos: np.ndarray  # (T, P, 3) camera frame
    meas_root_pos_cov: np.ndarray  # (T, P, 3, 3)
    meas_root_rot: np.ndarray  # (T, P, 3, 3) camera frame
    meas_root_rot_cov: np.ndarray  # (T, P, 3, 3)
    meas_body_pose: np.ndarray  # (T, P, 23, 3)
    meas_body_pose_cov: np.ndarray  # (T, P, 23, 3, 3)
    meas_betas: np.ndarray  # (T, P, 10)
    meas_betas_cov: np.ndarray  # (T, P, 10, 10)
    extras: dict = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return self.stamps.shape[0]

    @property
    def num_people(self) -> int:
        return self.person_ids.shape[0]


def _rot_z(yaw: np.ndarray) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    o, z = np.ones_like(yaw), np.zeros_like(yaw)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2)


def _robot_trajectory(cfg: SimConfig, rng: np.random.Generator, T: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Base x, y, yaw per frame and the distance/angle increments: drive, turn, stop segments."""
    dt = 1.0 / cfg.fps
    v = np.zeros(T)
    w = np.zeros(T)
    t = 0
    while t < T:
        n = int(rng.uniform(1.0, 3.0) * cfg.fps)
        kind = rng.choice(["drive", "turn", "stop", "drive_turn"], p=[0.35, 0.2, 0.2, 0.25])
        if kind in ("drive", "drive_turn"):
            v[t : t + n] = rng.uniform(0.2, cfg.max_speed)
        if kind in ("turn", "drive_turn"):
            w[t : t + n] = rng.uniform(-cfg.max_turn_rate, cfg.max_turn_rate)
        t += n
    # Smooth the commands like a real base's acceleration limits (~0.5 s).
    k = np.ones(int(0.5 * cfg.fps)) / int(0.5 * cfg.fps)
    v = np.convolve(v, k, mode="same")
    w = np.convolve(w, k, mode="same")
    yaw = np.cumsum(w) * dt
    x = np.cumsum(v * np.cos(yaw)) * dt
    y = np.cumsum(v * np.sin(yaw)) * dt
    return np.stack([x, y, yaw], -1), np.abs(v) * dt, np.abs(w) * dt


def _place_clip(clip: SmplMotion, yaw: float, origin_xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotate a clip about z by yaw and move its first root position to origin_xy (height kept)."""
    rz = _rot_z(np.array(yaw))
    pos = (clip.root_pos - clip.root_pos[0] * [1, 1, 0]) @ rz.T + [origin_xy[0], origin_xy[1], 0.0]
    return pos, rz @ clip.root_rot


def _sample_occlusions(cfg: SimConfig, rng: np.random.Generator, T: int) -> np.ndarray:
    occ = np.zeros(T, dtype=bool)
    for _ in range(rng.poisson(cfg.occlusions_per_person)):
        n = int(rng.uniform(*cfg.occlusion_duration) * cfg.fps)
        start = int(rng.integers(int(cfg.fps), max(int(cfg.fps) + 1, T - n)))
        occ[start : start + n] = True
    return occ


def simulate(clips: list[SmplMotion], config: SimConfig, seed: int) -> SimSequence:
    """Simulate one sequence: `config.num_people` people, each a random clip from `clips` (at config.fps)."""
    cfg = config
    if not clips:
        raise ValueError("simulate needs at least one mocap clip")
    if any(abs(c.fps - cfg.fps) > 1e-6 for c in clips):
        raise ValueError(f"clips must be resampled to config.fps={cfg.fps}")
    rng = np.random.default_rng(seed)
    T, P = int(round(cfg.duration * cfg.fps)), cfg.num_people
    dt = 1.0 / cfg.fps

    base, dist_inc, ang_inc = _robot_trajectory(cfg, rng, T)

    # People: random clip, time offset inside the clip, placement ahead of the robot's start, heading.
    present = np.zeros((T, P), dtype=bool)
    gt_pos = np.full((T, P, 3), np.nan)
    gt_rot = np.full((T, P, 3, 3), np.nan)
    gt_pose = np.full((T, P, 23, 3), np.nan)
    names = []
    for p in range(P):
        clip = clips[int(rng.integers(len(clips)))]
        names.append(clip.name)
        clip_start = int(rng.integers(0, max(1, clip.num_frames - T // 2)))
        scene_start = int(rng.integers(0, T // 4)) if p > 0 else 0
        n = min(T - scene_start, clip.num_frames - clip_start)
        dist = rng.uniform(*cfg.placement_distance)
        bearing = rng.uniform(-0.5, 0.5)
        pos, rot = _place_clip(clip, rng.uniform(-np.pi, np.pi), dist * np.array([np.cos(bearing), np.sin(bearing)]))
        sl = slice(scene_start, scene_start + n)
        present[sl, p] = True
        gt_pos[sl, p] = pos[clip_start : clip_start + n]
        gt_rot[sl, p] = rot[clip_start : clip_start + n]
        gt_pose[sl, p] = clip.body_pose[clip_start : clip_start + n]
    gt_betas = rng.normal(0.0, cfg.betas_std, (P, 10))

    # Head pan: towards the people's mean position, plus a slow scan.
    count = present.sum(1)[:, None]
    centre = np.where(present[..., None], gt_pos, 0.0).sum(1)[:, :2] / np.maximum(count, 1)
    centre = np.where(count > 0, centre, base[:, :2] + [1.0, 0.0])
    to_people = np.arctan2(centre[:, 1] - base[:, 1], centre[:, 0] - base[:, 0]) - base[:, 2]
    pan = np.clip(np.angle(np.exp(1j * to_people)), -1.5, 1.5)
    pan = np.convolve(np.pad(pan, 15, mode="edge"), np.ones(31) / 31, mode="valid")
    pan += cfg.pan_scan * np.sin(2 * np.pi * np.arange(T) * dt / rng.uniform(4.0, 8.0) + rng.uniform(0, 2 * np.pi))
    cam_true = np.tile(np.eye(4), (T, 1, 1))
    cam_true[:, :3, :3] = _rot_z(base[:, 2] + pan) @ BASE_R_OPTICAL
    cam_true[:, :3, 3] = np.column_stack([base[:, :2], np.full(T, cfg.camera_height)])

    # SLAM: random-walk drift (position and yaw) driven by motion, plus white jitter.
    drift_xy = np.cumsum(rng.normal(0.0, 1.0, (T, 2)) * cfg.drift_per_metre * np.sqrt(dist_inc)[:, None], 0)
    drift_yaw = np.cumsum(rng.normal(0.0, 1.0, T) * cfg.drift_yaw_per_rad * np.sqrt(ang_inc + 0.2 * dist_inc))
    jit_p = rng.normal(0.0, cfg.slam_jitter_pos, (T, 3))
    jit_r = Rotation.from_rotvec(rng.normal(0.0, cfg.slam_jitter_rot, (T, 3))).as_matrix()
    cam_slam = cam_true.copy()
    cam_slam[:, :3, :3] = jit_r @ _rot_z(drift_yaw) @ cam_true[:, :3, :3]
    cam_slam[:, :3, 3] += np.column_stack([drift_xy, np.zeros(T)]) + jit_p
    slam_cov = np.diag([cfg.slam_jitter_pos**2] * 3 + [cfg.slam_jitter_rot**2] * 3)

    # Visibility: present, in front of the camera and inside the image, not occluded, not missed.
    r_wc, t_wc = cam_true[:, None, :3, :3], cam_true[:, None, :3, 3]
    p_cam = np.einsum("tpji,tpj->tpi", np.broadcast_to(r_wc, (T, P, 3, 3)), gt_pos - t_wc)
    z = p_cam[..., 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        u = cfg.focal * p_cam[..., 0] / z + cfg.width / 2
        v = cfg.focal * p_cam[..., 1] / z + cfg.height / 2
        in_image = (z > cfg.min_depth) & (u >= 0) & (u < cfg.width) & (v >= 0) & (v < cfg.height)
    occluded = np.stack([_sample_occlusions(cfg, rng, T) for _ in range(P)], 1) & present
    missed = rng.random((T, P)) < cfg.miss_prob
    observed = present & in_image & ~occluded & ~missed
    outlier = observed & (rng.random((T, P)) < cfg.outlier_prob)

    # Measurements in the camera frame with stated covariances; outliers get a scaled error.
    conf = np.exp(rng.normal(0.0, cfg.confidence_spread, (T, P)))
    err_scale = np.where(outlier, cfg.outlier_scale, 1.0)
    zc = np.where(observed, z, 1.0)
    std_pos = np.stack([cfg.sigma_px * zc / cfg.focal] * 2 + [cfg.depth_rel_sigma * zc], -1) * conf[..., None]
    pos_cov = np.einsum("tpi,ij->tpij", std_pos**2, np.eye(3))
    meas_pos = p_cam + std_pos * err_scale[..., None] * rng.normal(size=(T, P, 3))

    rot_cam = np.einsum("tpji,tpjk->tpik", np.broadcast_to(r_wc, (T, P, 3, 3)), np.nan_to_num(gt_rot))
    std_rot = cfg.rot_sigma * conf
    noise = rng.normal(size=(T, P, 3)) * (std_rot * err_scale)[..., None]
    meas_rot = rot_cam @ Rotation.from_rotvec(noise.reshape(-1, 3)).as_matrix().reshape(T, P, 3, 3)
    rot_cov = np.einsum("tp,ij->tpij", std_rot**2, np.eye(3))

    joint_scale = np.ones(23)
    joint_scale[DISTAL_JOINTS] = 1.5
    std_pose = cfg.pose_sigma * conf[..., None] * joint_scale
    noise = rng.normal(size=(T, P, 23, 3)) * (std_pose * err_scale[..., None])[..., None]
    r_true = Rotation.from_rotvec(np.nan_to_num(gt_pose).reshape(-1, 3))
    meas_pose = (r_true * Rotation.from_rotvec(noise.reshape(-1, 3))).as_rotvec().reshape(T, P, 23, 3)
    pose_cov = np.einsum("tpj,ik->tpjik", std_pose**2, np.eye(3))

    std_b = cfg.betas_sigma * conf
    meas_betas = gt_betas[None] + rng.normal(size=(T, P, 10)) * (std_b * err_scale)[..., None]
    betas_cov = np.einsum("tp,ij->tpij", std_b**2, np.eye(10))

    def masked(x: np.ndarray) -> np.ndarray:
        return np.where(observed.reshape(observed.shape + (1,) * (x.ndim - 2)), x, np.nan)

    return SimSequence(
        config=cfg, seed=seed, stamps=100.0 + np.arange(T) * dt,
        intrinsics=np.array([[cfg.focal, 0, cfg.width / 2], [0, cfg.focal, cfg.height / 2], [0, 0, 1.0]]),
        cam_true=cam_true, cam_slam=cam_slam, slam_cov=slam_cov,
        person_ids=np.arange(P), clip_names=names, present=present,
        gt_root_pos=gt_pos, gt_root_rot=gt_rot, gt_body_pose=gt_pose, gt_betas=gt_betas,
        observed=observed, occluded=occluded, outlier=outlier,
        meas_root_pos=masked(meas_pos), meas_root_pos_cov=masked(pos_cov),
        meas_root_rot=masked(meas_rot), meas_root_rot_cov=masked(rot_cov),
        meas_body_pose=masked(meas_pose), meas_body_pose_cov=masked(pose_cov),
        meas_betas=masked(meas_betas), meas_betas_cov=masked(betas_cov),
    )
