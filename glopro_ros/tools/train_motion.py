"""Train GloPro's learned motion prior (temporal conv, Gaussian NLL) on the bundled CMU mocap.

Augmentation: mirroring, playback speed 0.8-1.25x, four 120 Hz sub-sampling phases, and noise on the
input history (the filter feeds the model its own noisy estimates, so the learned variance must
cover that). World yaw needs no augmentation: the inputs are body-centric, hence yaw-invariant.
The loss is the Gaussian NLL of the model's own H-step rollout (rollout_nll), not of one step: in
closed loop the model reads its own outputs (while a person is occluded, nothing else), and
one-step training left the filter needing 8x (after an update) and 18x (coasting) inflated
variances, too much for slow walkers and too little for fast ones. It weighs the root position, root
rotation and body pose blocks equally: summed over the 75 dimensions, the 69 pose ones would leave
the root, which the world-frame error hangs on, under-trained. The last VAL_FRACTION of each
training clip is kept out for model selection; the held-out clips (TEST_SPLIT) are only reported.
Also fits the constant-velocity baseline's variances on the same windows. Runs on a 2-core CPU.

    python -m glopro_ros.tools.train_motion --out glopro_ros/data/weights/motion_tcn.pt
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

from glopro_ros.core.body_model import BodyModel
from glopro_ros.core.device import resolve_device
from glopro_ros.core.mocap import (
    CMU_FILES, DATA_DIR, TEST_SPLIT, TRAIN_SPLIT, SmplMotion, crop, mirror, parse_bvh, resample, retarget_to_smpl,
)
from glopro_ros.core.motion_model import (
    DEFAULT_WEIGHTS, STEP_DIM, ConstantVelocityModel, TemporalConvMotionModel, apply_step, body_centric_features,
    step_targets,
)
from glopro_ros.core.so3 import exp_so3, log_so3

FPS = 30.0
SPEEDS = (0.8, 0.9, 1.0, 1.1, 1.25)
VAL_FRACTION = 0.15


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=str(DEFAULT_WEIGHTS), help="checkpoint path (.pt)")
    parser.add_argument("--history", type=int, default=8, help="K past frames fed to the model")
    parser.add_argument("--horizon", type=int, default=15,
                        help="H: the loss follows the model's own H-step rollout (as the filter does while coasting)")
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--max-minutes", type=float, default=20.0, help="stop early after this much training")
    parser.add_argument("--max-windows", type=int, default=12288,
                        help="training windows drawn per epoch (0: all of them, about 33000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--body-model", default="default", help="SMPL-layout model file, or 'default'")


class Windows:
    """All (K+H)-frame windows (history K, horizon H) of a set of motions, as rotation matrices, gathered per batch."""

    def __init__(self, motions: list[SmplMotion], history: int, horizon: int = 1) -> None:
        self.pos = torch.tensor(np.concatenate([m.root_pos for m in motions]), dtype=torch.float32)
        self.rot = torch.tensor(np.concatenate([m.root_rot for m in motions]), dtype=torch.float32)
        pose = torch.tensor(np.concatenate([m.body_pose for m in motions]), dtype=torch.float32)
        self.pose = exp_so3(pose)
        starts, offset = [], 0
        for m in motions:
            starts.append(offset + np.arange(max(0, m.num_frames - history - horizon + 1)))
            offset += m.num_frames
        self.starts = torch.tensor(np.concatenate(starts))
        self.span = torch.arange(history + horizon)

    def __len__(self) -> int:
        return len(self.starts)

    def get(self, idx: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        i = self.starts[idx][:, None] + self.span
        return self.pos[i], self.rot[i], self.pose[i]


def _noisy(pos: Tensor, rot: Tensor, pose: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """History with per-window random noise levels (up to 3 cm, 0.05 rad), like filtered estimates."""
    b = pos.shape[0]
    sp = torch.rand(b, 1, 1, generator=gen) * 0.03
    sr = torch.rand(b, 1, 1, generator=gen) * 0.05
    pos = pos + sp * torch.randn(pos.shape, generator=gen)
    rot = rot @ exp_so3(sr * torch.randn(rot.shape[:-1], generator=gen))
    pose = pose @ exp_so3(sr[..., None] * torch.randn(pose.shape[:-1], generator=gen))
    return pos, rot, pose


def build_motions(split: list[tuple[str, float, float]], rest: np.ndarray, augment: bool) -> list[SmplMotion]:
    motions = []
    for name, start, end in split:
        full = crop(retarget_to_smpl(parse_bvh(DATA_DIR / name), rest, CMU_FILES[name], name), start, end)
        variants = [full, mirror(full)] if augment else [full]
        for m in variants:
            for speed in SPEEDS if augment else (1.0,):
                # Playing the capture `speed` times faster = resampling it at FPS / speed, labelled FPS.
                for phase in range(4 if augment else 1):
                    sub = resample(crop(m, phase / m.num_frames, 1.0), FPS / speed)
                    motions.append(SmplMotion(FPS, sub.root_pos, sub.root_rot, sub.body_pose, sub.betas, m.name))
    return motions


def gaussian_nll(mean: Tensor, var: Tensor, target: Tensor) -> Tensor:
    """NLL of the 75-d step, summed over dimensions, mean over the batch (the figure reported)."""
    return 0.5 * ((target - mean) ** 2 / var + var.log() + math.log(2 * math.pi)).sum(-1).mean()


def _gaussian_nll_full(e: Tensor, cov: Tensor) -> Tensor:
    """(B,) NLL of errors e (B, d) under full covariances (B, d, d)."""
    chol = torch.linalg.cholesky(cov)
    white = torch.linalg.solve_triangular(chol, e.unsqueeze(-1), upper=False).squeeze(-1)
    logdet = 2 * torch.diagonal(chol, dim1=-2, dim2=-1).log().sum(-1)
    return 0.5 * ((white**2).sum(-1) + logdet + e.shape[-1] * math.log(2 * math.pi))


def rollout(model: torch.nn.Module, pos: Tensor, rot: Tensor, pose: Tensor,
            history: tuple[Tensor, Tensor, Tensor]) -> Iterator[tuple[Tensor, Tensor, Tensor, Tensor]]:
    """The model's own rollout from a history, as a coasting filter runs it: per step 1..H, the error of
    the root displacement since frame K (B, 3) with its accumulated world covariance (B, 3, 3), and the
    rotation errors (root, 23 joints; B, 72) with their accumulated variances.

    pos, rot, pose (B, K+H, ...) are the true window, history the K frames the model starts from (noisy
    in training). Each step's mean moves the state and feeds the history, and the variances add up
    (the root position's rotated into the world). Errors are of displacements since frame K: the noise
    of the starting state is the filter's covariance, not the model's.
    """
    k = history[0].shape[1]
    hp, hr, ha = history
    b = pos.shape[0]
    p0, r0t, a0t = pos[:, k - 1], rot[:, k - 1].transpose(-1, -2), pose[:, k - 1].transpose(-1, -2)
    q0, s0t, c0t = hp[:, -1], hr[:, -1].transpose(-1, -2), ha[:, -1].transpose(-1, -2)
    cov_p = torch.zeros(b, 3, 3, device=pos.device)
    var_rot = torch.zeros(b, 72, device=pos.device)
    for h in range(pos.shape[1] - k):
        mean, var = model(hp, hr, ha)
        r = hr[:, -1]
        cov_p = cov_p + (r * var[:, None, :3]) @ r.transpose(-1, -2)
        var_rot = var_rot + var[:, 3:]
        p, rr, a = apply_step(hp[:, -1], r, ha[:, -1], mean)
        e_rot = log_so3(torch.cat([(s0t @ rr).unsqueeze(1), c0t @ a], 1).transpose(-1, -2)
                        @ torch.cat([(r0t @ rot[:, k + h]).unsqueeze(1), a0t @ pose[:, k + h]], 1)).flatten(1)
        yield (pos[:, k + h] - p0) - (p - q0), cov_p, e_rot, var_rot
        hp, hr, ha = (torch.cat([x[:, 1:], y.unsqueeze(1)], 1) for x, y in ((hp, p), (hr, rr), (ha, a)))


def rollout_nll(model: torch.nn.Module, pos: Tensor, rot: Tensor, pose: Tensor,
                history: tuple[Tensor, Tensor, Tensor]) -> Tensor:
    """The training loss: NLL of the rollout's steps 1..H (see rollout), averaged over the steps and over
    the dimensions of each block (root position, root rotation, body pose), summed over the blocks.
    Its first step is the one-step loss; later ones teach how far a rollout can be trusted."""
    total = torch.zeros((), device=pos.device)
    for e_p, cov_p, e_rot, var_rot in rollout(model, pos, rot, pose, history):
        nll_rot = 0.5 * (e_rot**2 / var_rot + var_rot.log() + math.log(2 * math.pi))
        total = total + (_gaussian_nll_full(e_p, cov_p).mean() / 3 + nll_rot[:, :3].mean() + nll_rot[:, 3:].mean())
    return total / (pos.shape[1] - history[0].shape[1])


def split_for_validation(split: list[tuple[str, float, float]]) -> tuple[list, list]:
    """Each clip's first 1 - VAL_FRACTION for training, the rest for model selection (augmented like
    the training part: alone it is a few hundred windows)."""
    cut = [(n, a, b - VAL_FRACTION * (b - a)) for n, a, b in split]
    return cut, [(n, c, b) for (n, _, c), (_, _, b) in zip(cut, split)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    t0 = time.time()
    rest = BodyModel(None if args.body_model == "default" else args.body_model, device="cpu") \
        .rest_joints(torch.zeros(1, 10))[0].numpy()
    train_part, val_part = split_for_validation(TRAIN_SPLIT)
    train = Windows(build_motions(train_part, rest, augment=True), args.history, args.horizon)
    val = Windows(build_motions(val_part, rest, augment=True), args.history, args.horizon)
    test = Windows(build_motions(TEST_SPLIT, rest, augment=False), args.history)
    print(f"windows: train {len(train)}, validation {len(val)}, held-out {len(test)} "
          f"({time.time() - t0:.0f} s to build)", flush=True)

    # Normalisation statistics and the constant-velocity baseline's variances, from clean training windows.
    gen = torch.Generator().manual_seed(args.seed)
    probe = torch.randperm(len(train), generator=gen)[:20000]
    pos, rot, pose = (x[:, :args.history + 1] for x in train.get(probe))
    feats = body_centric_features(pos[:, :-1], rot[:, :-1], pose[:, :-1]).reshape(-1, body_centric_features(
        pos[:1, :-1], rot[:1, :-1], pose[:1, :-1]).shape[-1])
    target = step_targets(pos[:, -2:], rot[:, -2:], pose[:, -2:])
    cv_mean, _ = ConstantVelocityModel(history=args.history)(pos[:, :-1], rot[:, :-1], pose[:, :-1])
    cv_variance = ((target - cv_mean) ** 2).mean(0).clamp_min(1e-10)

    model = TemporalConvMotionModel(args.history, args.width)
    model.feat_mean.copy_(feats.mean(0))
    model.feat_std.copy_(feats.std(0).clamp_min(1e-3))
    model.step_std.copy_(target.std(0).clamp_min(1e-3))
    model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps_per_epoch = max(1, (args.max_windows or len(train)) // args.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=args.epochs * steps_per_epoch)

    def validation_loss(m: torch.nn.Module) -> float:
        """The rollout loss on clean validation windows."""
        m.eval()
        with torch.no_grad():
            p, r, a = (x.to(device) for x in val.get(torch.arange(len(val))))
            k = args.history
            return float(rollout_nll(m, p, r, a, (p[:, :k], r[:, :k], a[:, :k])))

    def held_out_nll(m: torch.nn.Module) -> float:
        """One-step 75-d NLL on the held-out clips (reported, not used for selection)."""
        m.eval()
        with torch.no_grad():
            p, r, a = (x.to(device) for x in test.get(torch.arange(len(test))))
            mean, var = m(p[:, :-1], r[:, :-1], a[:, :-1])
            return float(gaussian_nll(mean, var, step_targets(p[:, -2:], r[:, -2:], a[:, -2:])))

    cv_model = ConstantVelocityModel(cv_variance, args.history).to(device)
    cv_nll = held_out_nll(cv_model)
    print(f"constant velocity: validation loss {validation_loss(cv_model):.3f}, held-out NLL {cv_nll:.1f}"
          " (75-d step)", flush=True)
    best, best_test_nll, best_state = float("inf"), float("nan"), None
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(train), generator=gen)[: steps_per_epoch * args.batch_size]
        total = 0.0
        for batch in order.view(steps_per_epoch, -1):
            pos, rot, pose = (x.to(device) for x in train.get(batch))
            k = args.history
            history = tuple(x.to(device) for x in _noisy(pos[:, :k].cpu(), rot[:, :k].cpu(), pose[:, :k].cpu(), gen))
            loss = rollout_nll(model, pos, rot, pose, history)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            sched.step()
            total += float(loss.detach())
        val_loss, test_nll = validation_loss(model), held_out_nll(model)
        if val_loss < best:
            best, best_test_nll = val_loss, test_nll
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        elapsed = (time.time() - t0) / 60
        print(f"epoch {epoch + 1}/{args.epochs}: train loss {total / steps_per_epoch:.3f}, validation loss "
              f"{val_loss:.3f} (best {best:.3f}), held-out NLL {test_nll:.1f}, {elapsed:.1f} min", flush=True)
        if elapsed > args.max_minutes:
            print("time budget reached, stopping", flush=True)
            break
    torch.save({"config": {"history": args.history, "width": args.width}, "horizon": args.horizon,
                "state_dict": best_state,
                "cv_variance": cv_variance, "fps": FPS, "step_dim": STEP_DIM, "validation_loss": best,
                "held_out_nll": best_test_nll,
                "cv_held_out_nll": cv_nll, "command": "python -m glopro_ros.tools.train_motion " + " ".join(
                    sys.argv[1:] if argv is None else argv)}, args.out)
    print(f"saved {args.out} (validation loss {best:.3f}; held-out NLL {best_test_nll:.1f}, CV {cv_nll:.1f})"
          f" in {(time.time() - t0) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
