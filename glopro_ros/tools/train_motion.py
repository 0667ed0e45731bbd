"""Train GloPro's learned motion prior (temporal conv, Gaussian NLL) on the bundled CMU mocap.

Augmentation: mirroring, playback speed 0.8-1.25x, four 120 Hz sub-sampling phases, and noise on the
input history (the filter feeds the model its own noisy estimates, so the learned variance must
cover that). World yaw needs no augmentation: the inputs are body-centric, hence yaw-invariant.
Also fits the constant-velocity baseline's variances on the same windows. Runs on a 2-core CPU.

    python -m glopro_ros.tools.train_motion --out glopro_ros/data/weights/motion_tcn.pt
"""
from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np
import torch
from torch import Tensor

from glopro_ros.core.body_model import BodyModel
from glopro_ros.core.device import resolve_device
from glopro_ros.core.mocap import (
    CMU_FILES, DATA_DIR, TEST_SPLIT, TRAIN_SPLIT, SmplMotion, crop, mirror, parse_bvh, resample, retarget_to_smpl,
)
from glopro_ros.core.motion_model import (
    DEFAULT_WEIGHTS, STEP_DIM, ConstantVelocityModel, TemporalConvMotionModel, body_centric_features, step_targets,
)
from glopro_ros.core.so3 import exp_so3

FPS = 30.0
SPEEDS = (0.8, 0.9, 1.0, 1.1, 1.25)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=str(DEFAULT_WEIGHTS), help="checkpoint path (.pt)")
    parser.add_argument("--history", type=int, default=8, help="K past frames fed to the model")
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--max-minutes", type=float, default=20.0, help="stop early after this much training")
    parser.add_argument("--max-windows", type=int, default=0, help="subsample the training windows (0: all; smoke tests)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--body-model", default="default", help="SMPL-layout model file, or 'default'")


class Windows:
    """All (K+1)-frame windows of a set of motions, as rotation matrices, gathered per batch."""

    def __init__(self, motions: list[SmplMotion], history: int) -> None:
        self.pos = torch.tensor(np.concatenate([m.root_pos for m in motions]), dtype=torch.float32)
        self.rot = torch.tensor(np.concatenate([m.root_rot for m in motions]), dtype=torch.float32)
        pose = torch.tensor(np.concatenate([m.body_pose for m in motions]), dtype=torch.float32)
        self.pose = exp_so3(pose)
        starts, offset = [], 0
        for m in motions:
            starts.append(offset + np.arange(max(0, m.num_frames - history)))
            offset += m.num_frames
        self.starts = torch.tensor(np.concatenate(starts))
        self.span = torch.arange(history + 1)

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
    return 0.5 * ((target - mean) ** 2 / var + var.log() + math.log(2 * math.pi)).sum(-1).mean()


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
    train = Windows(build_motions(TRAIN_SPLIT, rest, augment=True), args.history)
    val = Windows(build_motions(TEST_SPLIT, rest, augment=False), args.history)
    print(f"windows: train {len(train)}, held-out {len(val)} ({time.time() - t0:.0f} s to build)", flush=True)

    # Normalisation statistics and the constant-velocity baseline's variances, from clean training windows.
    gen = torch.Generator().manual_seed(args.seed)
    probe = torch.randperm(len(train), generator=gen)[:20000]
    pos, rot, pose = train.get(probe)
    feats = body_centric_features(pos[:, :-1], rot[:, :-1], pose[:, :-1]).reshape(-1, body_centric_features(
        pos[:1, :-1], rot[:1, :-1], pose[:1, :-1]).shape[-1])
    target = step_targets(pos[:, -2:], rot[:, -2:], pose[:, -2:])
    cv_mean, _ = ConstantVelocityModel(history=args.history)(pos[:, :-1], rot[:, :-1], pose[:, :-1])
    cv_variance = ((target - cv_mean) ** 2).mean(0).clamp_min(1e-10)

    model = TemporalConvMotionModel(args.history, args.width)
    model.feat_mean.copy_(feats.mean(0))
    model.feat_std.copy_(feats.std(0).clamp_min(1e-3))
    model.step_std.copy_(target.std(0).clamp_min(1e-5))
    model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps_per_epoch = max(1, (args.max_windows or len(train)) // args.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=args.epochs * steps_per_epoch)

    def evaluate() -> float:
        model.eval()
        with torch.no_grad():
            p, r, a = (x.to(device) for x in val.get(torch.arange(len(val))))
            mean, var = model(p[:, :-1], r[:, :-1], a[:, :-1])
            return float(gaussian_nll(mean, var, step_targets(p[:, -2:], r[:, -2:], a[:, -2:])))

    with torch.no_grad():
        p, r, a = val.get(torch.arange(len(val)))
        m, v = ConstantVelocityModel(cv_variance, args.history)(p[:, :-1], r[:, :-1], a[:, :-1])
        cv_nll = float(gaussian_nll(m, v, step_targets(p[:, -2:], r[:, -2:], a[:, -2:])))
    print(f"constant-velocity held-out NLL {cv_nll:.1f} (75-d step)", flush=True)
    best, best_state = float("inf"), None
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(train), generator=gen)[: steps_per_epoch * args.batch_size]
        total = 0.0
        for batch in order.view(steps_per_epoch, -1):
            pos, rot, pose = train.get(batch)
            target = step_targets(pos[:, -2:], rot[:, -2:], pose[:, -2:])
            pos, rot, pose = _noisy(pos[:, :-1], rot[:, :-1], pose[:, :-1], gen)
            mean, var = model(pos.to(device), rot.to(device), pose.to(device))
            loss = gaussian_nll(mean, var, target.to(device))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            sched.step()
            total += float(loss.detach())
        val_nll = evaluate()
        if val_nll < best:
            best, best_state = val_nll, {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        elapsed = (time.time() - t0) / 60
        print(f"epoch {epoch + 1}/{args.epochs}: train NLL {total / steps_per_epoch:.1f}, held-out NLL {val_nll:.1f}"
              f" (best {best:.1f}), {elapsed:.1f} min", flush=True)
        if elapsed > args.max_minutes:
            print("time budget reached, stopping", flush=True)
            break
    torch.save({"config": {"history": args.history, "width": args.width}, "state_dict": best_state,
                "cv_variance": cv_variance, "fps": FPS, "step_dim": STEP_DIM, "held_out_nll": best,
                "cv_held_out_nll": cv_nll, "command": "python -m glopro_ros.tools.train_motion " + " ".join(
                    sys.argv[1:] if argv is None else argv)}, args.out)
    print(f"saved {args.out} (held-out NLL {best:.1f}, CV {cv_nll:.1f}) in {(time.time() - t0) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
