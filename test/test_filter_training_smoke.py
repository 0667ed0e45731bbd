"""Smoke test of the motion-model training command: a few batches, a loadable checkpoint."""
from __future__ import annotations

import torch

from glopro_ros.core.motion_model import load_motion_model
from glopro_ros.tools import train_motion


def test_train_motion_smoke(tmp_path):
    out = tmp_path / "motion.pt"
    assert train_motion.main(["--epochs", "1", "--max-windows", "1024", "--threads", "1", "--device", "cpu",
                              "--out", str(out)]) == 0
    model = load_motion_model(out, "learned")
    cv = load_motion_model(out, "cv")
    pos, rot = torch.zeros(2, 8, 3), torch.eye(3).repeat(2, 8, 1, 1)
    pose = torch.eye(3).repeat(2, 8, 23, 1, 1)
    for m in (model, cv):
        mean, var = m(pos, rot, pose)
        assert mean.shape == var.shape == (2, 75) and torch.isfinite(mean).all() and (var > 0).all()
    assert "train_motion" in torch.load(out, weights_only=True)["command"]
