#!/usr/bin/env python3
"""Render a body model (default: the built-in one) in rest pose and one pose with matplotlib.

Usage: .venv/bin/python scripts/render_body_model.py [--model PATH] [--out docs/default_body_model.png]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from mpl_toolkits.mplot3d.art3d import Poly3DCollection  # noqa: E402

from glopro_ros.core.body_model import SMPL_JOINT_NAMES, SMPL_PARENTS, BodyModel  # noqa: E402
from glopro_ros.core.so3 import exp_so3  # noqa: E402


def walking_pose() -> torch.Tensor:
    """(1, 23, 3) axis-angle: a stride with arms down and bent elbows."""
    pose = torch.zeros(1, 23, 3, dtype=torch.float64)
    idx = {n: i - 1 for i, n in enumerate(SMPL_JOINT_NAMES)}
    pose[0, idx["left_hip"]] = torch.tensor([-0.5, 0, 0])
    pose[0, idx["right_hip"]] = torch.tensor([0.4, 0, 0])
    pose[0, idx["right_knee"]] = torch.tensor([0.8, 0, 0])
    pose[0, idx["left_shoulder"]] = torch.tensor([0, 0, -1.2])
    pose[0, idx["right_shoulder"]] = torch.tensor([0, 0, 1.2])
    pose[0, idx["left_elbow"]] = torch.tensor([0, -0.9, 0])
    pose[0, idx["right_elbow"]] = torch.tensor([0, 0.9, 0])
    pose[0, idx["neck"]] = torch.tensor([0.2, 0, 0])
    return pose


def draw(ax, verts: np.ndarray, faces: np.ndarray, joints: np.ndarray, title: str) -> None:
    # view from the front-left; SMPL axes: y up, z forward -> plot (x, z, y)
    tri = verts[faces][:, :, [0, 2, 1]]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-12
    light = np.array([0.3, 0.8, 0.5]) / np.linalg.norm([0.3, 0.8, 0.5])
    shade = 0.35 + 0.65 * np.abs(normal @ light)  # winding-agnostic
    colors = np.stack([shade * 0.85, shade * 0.75, shade * 0.65, np.ones_like(shade)], 1)
    ax.add_collection3d(Poly3DCollection(tri, facecolors=colors, linewidths=0))
    j = joints[:, [0, 2, 1]]
    ax.scatter(j[:, 0], j[:, 1], j[:, 2], c="crimson", s=8, depthshade=False, zorder=10)
    for c, p in enumerate(SMPL_PARENTS[1:], start=1):
        ax.plot(*j[[p, c]].T, color="crimson", lw=1, zorder=10)
    lim = np.abs(verts).max()
    ax.set(xlim=(-lim, lim), ylim=(-lim, lim), zlim=(-lim, lim), title=title)
    ax.set_box_aspect(None, zoom=1.5)
    ax.view_init(elev=10, azim=70)
    ax.set_axis_off()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--out", type=Path, default=Path("docs/default_body_model.png"))
    args = ap.parse_args()
    model = BodyModel(args.model, device="cpu")
    eye = torch.eye(3, dtype=torch.float64)[None]
    zero3 = torch.zeros(1, 3, dtype=torch.float64)
    fig = plt.figure(figsize=(12, 6))
    cases = [("rest pose, betas = 0", torch.zeros(1, 10), torch.zeros(1, 23, 3)),
             ("walking pose, betas = 0", torch.zeros(1, 10), walking_pose()),
             ("betas[0] = +2, betas[1] = -2", torch.tensor([[2.0, -2] + [0] * 8]),
              torch.zeros(1, 23, 3))]
    for i, (title, betas, pose) in enumerate(cases):
        betas, pose = betas.double(), pose.double()
        verts = model.forward_vertices(betas, pose, eye, zero3)[0].numpy()
        joints = model.forward_joints(betas, exp_so3(pose), eye, zero3)[0][0].numpy()
        ax = fig.add_subplot(1, 3, i + 1, projection="3d", computed_zorder=False)
        draw(ax, verts, model.faces, joints, title)
    fig.suptitle(f"{model.name}: {model.num_vertices} vertices, SMPL 24-joint skeleton (red, "
                 "drawn on top)")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
