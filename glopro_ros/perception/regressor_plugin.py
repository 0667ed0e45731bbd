"""Plug-in for a user-supplied image regressor (e.g. HMR-style) giving SMPL means and variances.

Contract of the checkpoint (a self-contained graph, so no user code has to be importable: a
torch.export program saved as .pt2, or a TorchScript file, which older torch releases still use):
- input: float32 (N, 3, S, S) RGB crops, (pixel / 255 - mean) / std, of a square box around the
  person (the person box enlarged by `box_scale`), S = `crop_size`;
- output: a tuple (mean, log_var), each (N, 85), in GaussianBodyState's flat order
  [betas | body_pose axis-angle | root axis-angle | root position]: root pose in the *crop camera*
  (optical axes, looking through the crop centre, focal `focal` in crop pixels); log_var are the
  log-variances of the right-perturbation tangent (diagonal covariance).
- optional metadata: a JSON extra file "glopro_regressor.json" (extra_files of torch.export.save
  or torch.jit.save) with crop_size, focal, box_scale,
  mean, std (defaults below: HMR's 224 px, 5000 px focal, ImageNet statistics).
The plug-in turns the crop-camera root into the real camera frame with the intrinsics, so the same
network works for any camera; depth scales with the real focal length over the crop's.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import torch

from glopro_ros.core.body_model import BodyModel
from glopro_ros.core.device import resolve_device
from glopro_ros.perception.lifting import LiftResult
from glopro_ros.perception.rotations import exp_rotvec, ray_rotation

METADATA_FILE = "glopro_regressor.json"
DEFAULT_METADATA = {"crop_size": 224, "focal": 5000.0, "box_scale": 1.2,
                    "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
FLAT_DIM = 85


def _load_graph(path: Path, device: torch.device, extra: dict[str, str]):
    """A callable network from a .pt2 (torch.export) or TorchScript file, on `device`."""
    try:
        if path.suffix == ".pt2":
            return torch.export.load(str(path), extra_files=extra).module().to(device)
        net = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    except (RuntimeError, ValueError, KeyError, OSError) as exc:
        raise ValueError(f"regressor checkpoint {path} is not a torch.export (.pt2) or "
                         f"TorchScript file: {exc}") from exc
    return net.eval()


class ImageRegressor:
    """Loads a TorchScript regressor checkpoint and predicts one person's Gaussian from a crop."""

    def __init__(self, checkpoint: str | Path, device: str = "auto",
                 body_model: BodyModel | None = None) -> None:
        path = Path(checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"regressor checkpoint {path} does not exist")
        self.device = resolve_device(device)
        extra = {METADATA_FILE: ""}
        self.net = _load_graph(path, self.device, extra)
        meta = dict(DEFAULT_METADATA)
        if extra[METADATA_FILE]:
            meta.update(json.loads(extra[METADATA_FILE]))
        self.crop_size = int(meta["crop_size"])
        self.focal = float(meta["focal"])
        self.box_scale = float(meta["box_scale"])
        self.mean = np.asarray(meta["mean"], np.float32)
        self.std = np.asarray(meta["std"], np.float32)
        self.body_model = body_model or BodyModel(device="cpu")

    def crop(self, rgb: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
        """Square crop (S, S, 3) around box, its side in image pixels and its centre."""
        centre = (box[:2] + box[2:]) / 2.0
        side = float(max(box[2] - box[0], box[3] - box[1])) * self.box_scale
        if not np.isfinite(side) or side < 8:
            raise ValueError(f"person box {box.round(1).tolist()} is too small to crop")
        s = self.crop_size
        m = np.array([[s / side, 0, s / 2 - centre[0] * s / side],
                      [0, s / side, s / 2 - centre[1] * s / side]])
        return cv2.warpAffine(rgb, m, (s, s), flags=cv2.INTER_LINEAR), side, centre

    @torch.no_grad()
    def predict(self, rgb: np.ndarray, box: np.ndarray, k: np.ndarray) -> LiftResult:
        """One person's measurement in the camera frame of intrinsics k."""
        crop, side, centre = self.crop(rgb, box)
        x = (crop.astype(np.float32) / 255.0 - self.mean) / self.std
        inp = torch.from_numpy(x.transpose(2, 0, 1)[None].copy()).to(self.device)
        out = self.net(inp)
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            raise ValueError("regressor must return (mean, log_var)")
        mean, log_var = (t.detach().to("cpu", torch.float64).numpy().reshape(-1) for t in out)
        if mean.size != FLAT_DIM or log_var.size != FLAT_DIM:
            raise ValueError(f"regressor outputs must be (1, {FLAT_DIM}), got {mean.size} and "
                             f"{log_var.size} values")
        if not (np.isfinite(mean).all() and np.isfinite(log_var).all()):
            raise ValueError("regressor returned NaN or Inf")
        # crop camera -> real camera: rotate onto the crop centre's ray, rescale depth by focal
        f_real = 0.5 * (k[0, 0] + k[1, 1])
        f_crop = self.focal * side / self.crop_size  # crop focal in image pixels
        r_ray = ray_rotation(np.array([(centre[0] - k[0, 2]) / k[0, 0],
                                        (centre[1] - k[1, 2]) / k[1, 1], 1.0]))
        a = r_ray @ np.diag([1.0, 1.0, f_real / f_crop])
        cov = np.diag(np.exp(np.clip(log_var, -30.0, 30.0)))
        cov[82:, 82:] = a @ cov[82:, 82:] @ a.T
        root_r = r_ray @ exp_rotvec(mean[79:82])
        root_p = a @ mean[82:85]
        if root_p[2] <= 0.1:
            raise ValueError(f"regressor put the person behind the camera (z={root_p[2]:.2f} m)")
        betas, pose = mean[:10], mean[10:79].reshape(23, 3)
        joints, _ = self.body_model.forward_joints(
            *(torch.as_tensor(v, dtype=torch.float64)[None]
              for v in (betas, exp_rotvec(pose), root_r, root_p)))
        return LiftResult(betas=betas, body_pose=pose, root_orientation=root_r,
                          root_position=root_p, cov=cov, joints=joints[0].numpy(),
                          reprojection_px=float("nan"), iterations=0)
