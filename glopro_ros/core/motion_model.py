"""Motion models: a Gaussian over a person's next body state given its last K states (GloPro's motion prior).

Inputs are expressed in the body-centric frame H_k (the person's latest root frame), so the learned
part sees body motion independent of where the camera or the person is in the world; the output
is a Gaussian (mean, diagonal variance) over the 75-d step
    [R_k^T (p_{k+1} - p_k) (3) | log(R_k^T R_{k+1}) (3) | log(A_{j,k}^T A_{j,k+1}) (23 x 3)]
(root translation in H_k, root rotation and joint rotations as right increments), which the filter
moves to the world. Betas are constant (no motion model). Histories are torch float tensors:
root_pos (B, K, 3), root_rot (B, K, 3, 3), pose (B, K, 23, 3, 3) local joint rotation matrices.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glopro_ros.core.so3 import exp_so3, log_so3

STEP_DIM = 75
FEATURE_DIM = 3 + 6 + 23 * 6 + 3
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "data" / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "motion_tcn.pt"


def _rot6(r: Tensor) -> Tensor:
    """Continuous 6-d rotation features: the first two columns."""
    return r[..., :, :2].transpose(-1, -2).flatten(-2)


def body_centric_features(root_pos: Tensor, root_rot: Tensor, pose: Tensor) -> Tensor:
    """(B, K, FEATURE_DIM): root positions and orientations relative to H_k, joint rotations, gravity in H_k."""
    rk = root_rot[:, -1]
    rel_pos = torch.bmm(root_pos - root_pos[:, -1:], rk)  # R_k^T (p - p_k) for every frame
    # Root orientations relative to H_k and the joint rotations share one 6-d feature pass.
    rots = torch.cat([(rk.transpose(-1, -2).unsqueeze(1) @ root_rot).unsqueeze(2), pose], 2)  # (B, K, 24, 3, 3)
    gravity = rk[:, 2:3].expand(-1, root_pos.shape[1], -1)  # R_k^T e_z: the last row of R_k
    return torch.cat([rel_pos, _rot6(rots).flatten(2), gravity], -1)


def step_targets(root_pos: Tensor, root_rot: Tensor, pose: Tensor) -> Tensor:
    """(B, 75) body-centric step from frame k (index -2) to k+1 (index -1) of each sequence."""
    rk = root_rot[:, -2]
    dp = torch.einsum("bji,bj->bi", rk, root_pos[:, -1] - root_pos[:, -2])
    dth = log_so3(rk.transpose(-1, -2) @ root_rot[:, -1])
    dpose = log_so3(pose[:, -2].transpose(-1, -2) @ pose[:, -1]).flatten(1)
    return torch.cat([dp, dth, dpose], -1)


def apply_step(root_pos: Tensor, root_rot: Tensor, pose: Tensor, step: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Move the latest state (B, 3), (B, 3, 3), (B, 23, 3, 3) by a body-centric step (B, 75)."""
    return _apply_increments(root_pos, root_rot, pose, *_step_increments(root_rot, step))


def _step_increments(root_rot: Tensor, step: Tensor) -> tuple[Tensor, Tensor]:
    """The step's world-frame root translation R dp (B, 3) and rotation increments exp(step) (B, 24, 3, 3),
    root first: one exp for the root and the 23 joints."""
    return (torch.bmm(root_rot, step[:, :3, None]).squeeze(2),
            exp_so3(step[:, 3:].reshape(step.shape[0], 24, 3)))


def _apply_increments(root_pos: Tensor, root_rot: Tensor, pose: Tensor, dpos: Tensor, inc: Tensor
                      ) -> tuple[Tensor, Tensor, Tensor]:
    return root_pos + dpos, torch.bmm(root_rot, inc[:, 0]), pose @ inc[:, 1:]


class ConstantVelocityModel(nn.Module):
    """Baseline: constant velocity and body rates, averaged over the last `history` frames.

    The average keeps the filter's own estimation noise from being amplified by differencing;
    variances are constants fitted on the CMU data (and scaled by the filter's calibration).
    """

    def __init__(self, variance: Tensor | None = None, history: int = 8) -> None:
        super().__init__()
        self.history = history
        self.register_buffer("variance", torch.ones(STEP_DIM) if variance is None else variance.clone())

    def forward(self, root_pos: Tensor, root_rot: Tensor, pose: Tensor) -> tuple[Tensor, Tensor]:
        k = root_pos.shape[1]
        rk = root_rot[:, -1]
        # Mean world velocity seen from H_k; mean body-frame rates of the root and the joints (one log).
        dp = ((root_pos[:, -1] - root_pos[:, 0])[:, None] @ rk)[:, 0] / (k - 1)
        rots = torch.cat([root_rot[:, :, None], pose], 2)  # (B, K, 24, 3, 3)
        rates = log_so3(rots[:, :-1].transpose(-1, -2) @ rots[:, 1:]).mean(1)  # (B, 24, 3)
        step = torch.cat([dp, rates.flatten(1)], -1)
        return step, self.variance.expand_as(step)


class TemporalConvMotionModel(nn.Module):
    """Learned prior: a small temporal conv over K body-centric frames -> mean and log-variance of the step."""

    def __init__(self, history: int = 8, width: int = 128) -> None:
        super().__init__()
        if history < 5:
            raise ValueError("history must be at least 5 frames (two kernel-3 convolutions)")
        self.history = history
        self.net = nn.Sequential(
            nn.Conv1d(FEATURE_DIM, width, 3), nn.GELU(), nn.Conv1d(width, width, 3), nn.GELU(), nn.Flatten(),
            nn.Linear(width * (history - 4), 256), nn.GELU(), nn.Linear(256, 2 * STEP_DIM),
        )
        # Normalisation statistics, set from the training data.
        self.register_buffer("feat_mean", torch.zeros(FEATURE_DIM))
        self.register_buffer("feat_std", torch.ones(FEATURE_DIM))
        self.register_buffer("step_std", torch.ones(STEP_DIM))
        self._fast: tuple | None = None  # gaussian64's weights, see _fast_weights
        self.register_load_state_dict_post_hook(TemporalConvMotionModel._forget_fast_weights)

    def forward(self, root_pos: Tensor, root_rot: Tensor, pose: Tensor) -> tuple[Tensor, Tensor]:
        x = (body_centric_features(root_pos, root_rot, pose) - self.feat_mean) / self.feat_std
        mean, log_var = self._net(x).split(STEP_DIM, 1)
        step_std = self.step_std
        return mean * step_std, log_var.clamp(-12.0, 4.0).exp() * step_std.square()


    def _net(self, x: Tensor) -> Tensor:
        """self.net on time-major features (B, K, FEATURE_DIM), with the same weights.

        By hand for speed: each convolution is a linear map of the sliding windows (unfold, a view, in
        the weight's [channel, tap] order), which is faster than conv1d at every batch size (1.3x at one
        person, 1.6x at 50), and functional calls skip the modules' per-call overhead.
        """
        conv1, _, conv2, _, _, lin1, _, lin2 = self.net
        taps = conv1.kernel_size[0]
        y = F.gelu(F.linear(x.unfold(1, taps, 1).flatten(2), conv1.weight.flatten(1), conv1.bias))
        y = F.gelu(F.linear(y.unfold(1, taps, 1).flatten(2), conv2.weight.flatten(1), conv2.bias))
        y = F.gelu(F.linear(y.transpose(1, 2).flatten(1), lin1.weight, lin1.bias))  # nn.Flatten's channel-major order
        return F.linear(y, lin2.weight, lin2.bias)

    def gaussian64(self, root_pos: Tensor, root_rot: Tensor, pose: Tensor, min_var: float = 0.0
                   ) -> tuple[Tensor, Tensor]:
        """forward for the filter: float64 histories in, the step's mean and variance (B, 75) out in float64,
        the variance at least min_var; for inference (the weights are used detached).

        The same network (in its weights' dtype, float32: the same to its rounding) in fewer ops, a one-person
        filter step being mostly per-op overhead: the features are computed and normalised (one op) in the
        histories' float64 and converted once, the weights are laid out ahead for time-major windows and
        frames (no flatten or transpose per call) and as transposes of contiguous matrices (see
        _fast_weights), and step_std is folded into the last layer, whose outputs are then the mean and the
        log variance; its clamp and min_var become bounds of that log variance.
        """
        shift, inv_std, taps, w1, b1, w2, b2, w3, b3, w4, b4, lo, hi = self._fast_weights(min_var)
        x = torch.addcmul(shift, body_centric_features(root_pos, root_rot, pose), inv_std).to(w1.dtype)
        y = F.gelu(F.linear(x.unfold(1, taps, 1).flatten(2), w1, b1))
        y = F.gelu(F.linear(y.unfold(1, taps, 1).flatten(2), w2, b2))
        y = F.gelu(F.linear(y.flatten(1), w3, b3))
        out = F.linear(y, w4, b4).double()
        return out[:, :STEP_DIM], out[:, STEP_DIM:].clamp(lo, hi).exp()

    def _fast_weights(self, min_var: float) -> tuple:
        """gaussian64's tensors, derived at its first call and again when a parameter or buffer has changed in
        place since (training, load_state_dict), the module was moved or converted (.to, .double) or
        min_var differs. (A parameter or buffer assigned anew as an attribute is not seen: load weights
        with load_state_dict.)"""
        fast = self._fast
        if fast is not None and fast[0] == min_var and fast[1] == [t._version for t in fast[2]]:
            return fast[3]
        conv1, _, conv2, _, _, lin1, _, lin2 = self.net
        sources = [conv1.weight, conv1.bias, conv2.weight, conv2.bias, lin1.weight, lin1.bias, lin2.weight,
                   lin2.bias, self.feat_mean, self.feat_std, self.step_std]
        with torch.inference_mode(False), torch.no_grad():  # ordinary tensors, whatever mode the caller is in
            frames = lin1.in_features // conv2.out_channels
            # Time-major flatten of the (B, frames, channels) features: lin1's columns reordered to match.
            w3 = lin1.weight.view(-1, conv2.out_channels, frames).transpose(1, 2).reshape(lin1.weight.shape[0], -1)
            # Mean rows times step_std; log-variance bias plus log step_std^2, and its clamp moved by as much.
            std = self.step_std.double()
            log_var = 2 * std.log()
            scale = torch.cat([std, torch.ones_like(std)])
            w4 = (lin2.weight.double() * scale[:, None]).to(lin2.weight.dtype)
            b4 = (lin2.bias.double() * scale + torch.cat([torch.zeros_like(std), log_var])).to(lin2.bias.dtype)
            floor = math.log(min_var) if min_var > 0 else -math.inf
            lo, hi = ((log_var + bound).clamp_min(floor) for bound in (-12.0, 4.0))
            inv_std = 1.0 / self.feat_std.double()  # normalisation (x - mean) / std as x inv_std - mean inv_std
            # Each weight (out, in) as the transpose of a contiguous (in, out): F.linear multiplies by its
            # transpose, which BLAS then takes as it is (half the time of a transposed operand at one person).
            w1, w2, w3, w4 = (w.t().contiguous().t()
                              for w in (conv1.weight.flatten(1), conv2.weight.flatten(1), w3, w4))
            weights = (-self.feat_mean.double() * inv_std, inv_std, conv1.kernel_size[0], w1, conv1.bias.clone(), w2,
                       conv2.bias.clone(), w3, lin1.bias.clone(), w4, b4, lo, hi)
        self._fast = (min_var, [t._version for t in sources], sources, weights)
        return weights

    def _apply(self, *args: object, **kwargs: object) -> "TemporalConvMotionModel":
        self._fast = None  # moved or converted: gaussian64 derives its weights again
        return super()._apply(*args, **kwargs)

    @staticmethod
    def _forget_fast_weights(module: nn.Module, incompatible_keys: object) -> None:
        module._fast = None  # loaded (also with assign=True): gaussian64 derives its weights again


def load_motion_model(path: str | Path | None = None, kind: str = "learned") -> nn.Module:
    """Load the committed learned model (`kind="learned"`) or the fitted constant-velocity baseline ("cv")."""
    ckpt = torch.load(Path(path) if path else DEFAULT_WEIGHTS, map_location="cpu", weights_only=True)
    if kind == "cv":
        return ConstantVelocityModel(ckpt["cv_variance"], ckpt["config"]["history"]).eval()
    if kind != "learned":
        raise ValueError(f"unknown motion model kind {kind!r} (learned | cv)")
    model = TemporalConvMotionModel(**ckpt["config"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()
