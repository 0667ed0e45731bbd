"""The motion model's training loss (train_motion.rollout_nll) against closed forms."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from glopro_ros.core.motion_model import STEP_DIM, ConstantVelocityModel, step_targets
from glopro_ros.core.so3 import exp_so3
from glopro_ros.tools.train_motion import rollout_nll

K = 8


class FixedModel(nn.Module):
    """Predicts the same step Gaussian for every history."""

    def __init__(self, mean: Tensor, var: Tensor) -> None:
        super().__init__()
        self.mean, self.var = mean, var

    def forward(self, root_pos: Tensor, root_rot: Tensor, pose: Tensor) -> tuple[Tensor, Tensor]:
        b = root_pos.shape[0]
        return self.mean.expand(b, -1), self.var.expand(b, -1)


def diag_nll(err: Tensor, var: Tensor) -> Tensor:
    return 0.5 * (err**2 / var + var.log() + math.log(2 * math.pi))


def test_one_step_is_the_block_weighted_step_nll():
    g = torch.Generator().manual_seed(0)
    pos = torch.randn(5, K + 1, 3, generator=g)
    rot = exp_so3(0.3 * torch.randn(5, K + 1, 3, generator=g))
    pose = exp_so3(0.3 * torch.randn(5, K + 1, 23, 3, generator=g))
    mean = torch.zeros(STEP_DIM)
    mean[:3] = torch.tensor([0.1, -0.2, 0.05])  # rotations: zero mean, so the rotation error is the target itself
    var = torch.rand(STEP_DIM, generator=g) + 0.1
    loss = rollout_nll(FixedModel(mean, var), pos, rot, pose, (pos[:, :K], rot[:, :K], pose[:, :K]))
    nll = diag_nll(step_targets(pos[:, -2:], rot[:, -2:], pose[:, -2:]) - mean, var)
    expected = nll[:, :3].mean() + nll[:, 3:6].mean() + nll[:, 6:].mean()
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)


def test_rollout_variances_add_up_over_the_steps():
    """An exact predictor (constant velocity on a straight walk): zero errors, step h has h times the variance."""
    horizon, t = 3, torch.arange(K + 3, dtype=torch.float32)
    pos = (0.04 * t)[None, :, None] * torch.tensor([1.0, 0.5, 0.0])
    rot = exp_so3((0.02 * t)[None, :, None] * torch.tensor([0.0, 0.0, 1.0]))
    pose = torch.eye(3).expand(1, K + horizon, 23, 3, 3)
    var = torch.linspace(1e-3, 2e-3, STEP_DIM)
    loss = rollout_nll(ConstantVelocityModel(var, K), pos, rot, pose, (pos[:, :K], rot[:, :K], pose[:, :K]))
    h = torch.arange(1, horizon + 1, dtype=torch.float32)[:, None]
    per_step = sum(0.5 * ((h * var[b]).log() + math.log(2 * math.pi)).mean(1) for b in (slice(0, 3), slice(3, 6),
                                                                                      slice(6, STEP_DIM)))
    torch.testing.assert_close(loss, per_step.mean(), rtol=1e-4, atol=1e-4)
