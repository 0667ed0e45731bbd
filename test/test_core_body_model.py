"""Body model loading (.pkl with fake chumpy objects, .npz, built-in default) and forward paths."""
from __future__ import annotations

import pickle
import sys
import types
import warnings

import numpy as np
import pytest
import scipy.sparse
import torch

from glopro_ros.core.body_model import (
    DEFAULT_MODEL_PATH, SMPL_PARENTS, BodyModel, load_model_arrays,
)
from glopro_ros.core.device import resolve_device
from glopro_ros.core.so3 import exp_so3, log_so3


@pytest.fixture(scope="module")
def model() -> BodyModel:
    return BodyModel(device="cpu")


def _tiny_arrays(num_vertices: int = 50, num_betas: int = 12) -> dict[str, np.ndarray]:
    """A fabricated SMPL-layout model (random, no licensed data)."""
    rng = np.random.default_rng(1)
    v = num_vertices
    jreg = np.zeros((24, v))
    for j in range(24):
        ids = rng.choice(v, 4, replace=False)
        jreg[j, ids] = 0.25
    weights = rng.random((v, 24)) ** 4
    return {
        "v_template": rng.normal(size=(v, 3)), "shapedirs": 0.01 * rng.normal(size=(v, 3, num_betas)),
        "posedirs": 0.001 * rng.normal(size=(v, 3, 207)), "J_regressor": jreg,
        "weights": weights / weights.sum(1, keepdims=True),
        "kintree_table": np.array([[4294967295, *SMPL_PARENTS[1:]], list(range(24))]),
        "f": rng.integers(0, v, size=(30, 3)), "bs_style": "lbs",
    }


def _write_chumpy_pkl(path, arrays) -> None:
    """Pickle like an original SMPL file: chumpy.ch.Ch objects (class faked here) and a sparse
    J_regressor; the fake module is removed again so loading must not need chumpy."""
    ch_mod = types.ModuleType("chumpy.ch")

    class Ch:  # what chumpy pickles: an object whose state holds the value in 'x'
        pass

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    ch_mod.Ch = Ch
    sys.modules["chumpy"] = types.ModuleType("chumpy")
    sys.modules["chumpy.ch"] = ch_mod
    try:
        data = dict(arrays)
        for key in ("v_template", "shapedirs", "posedirs", "weights"):
            obj = Ch()
            obj.__dict__.update({"x": arrays[key], "_dirty_vars": set()})
            data[key] = obj
        data["J_regressor"] = scipy.sparse.csc_matrix(arrays["J_regressor"])
        with open(path, "wb") as fh:
            pickle.dump(data, fh, protocol=2)
    finally:
        del sys.modules["chumpy"], sys.modules["chumpy.ch"]


def test_default_model_layout(model):
    assert DEFAULT_MODEL_PATH.is_file() and DEFAULT_MODEL_PATH.stat().st_size < 5e6
    assert "SMPL_" not in DEFAULT_MODEL_PATH.name
    assert model.num_vertices != 6890 and model.num_vertices > 5000
    assert model.faces.shape[1] == 3 and model.faces.max() < model.num_vertices
    assert len(model.joint_names) == 24 and model.joint_names[0] == "pelvis"
    assert model.parents == SMPL_PARENTS
    rest = model.rest_joints(torch.zeros(1, 10))[0]
    stature = model.forward_vertices(torch.zeros(1, 10), torch.zeros(1, 23, 3),
                                     torch.eye(3)[None], torch.zeros(1, 3))[0, :, 1]
    assert 1.5 < float(stature.max() - stature.min()) < 2.0  # an adult, metres, y up
    assert rest[15, 1] > rest[0, 1] > rest[7, 1]  # head above pelvis above ankle
    assert rest[16, 0] > 0 > rest[17, 0]  # left is +x, SMPL convention


def test_joints_only_path_matches_smplx(model):
    g = torch.Generator().manual_seed(3)
    b = 4
    betas = torch.randn(b, 10, generator=g, dtype=torch.float64)
    pose = 0.4 * torch.randn(b, 23, 3, generator=g, dtype=torch.float64)
    root = exp_so3(torch.randn(b, 3, generator=g, dtype=torch.float64))
    pos = torch.randn(b, 3, generator=g, dtype=torch.float64)
    joints, _ = model.forward_joints(betas, exp_so3(pose), root, pos)
    np.testing.assert_allclose(joints[:, 0].numpy(), pos.numpy(), atol=1e-12)  # pelvis = root
    out = model._smpl(betas=betas.float(), body_pose=pose.float().reshape(b, 69),
                      global_orient=log_so3(root).float(),
                      transl=model.transl_from_root_position(betas, pos).float())
    np.testing.assert_allclose(joints.numpy(), out.joints[:, :24].double().numpy(), atol=2e-5)
    verts = model.forward_vertices(betas, pose, root, pos)
    np.testing.assert_allclose(verts.double().numpy(), out.vertices.double().numpy(), atol=1e-5)
    ids = torch.tensor([0, 17, 4000, model.num_vertices - 1])
    subset = model.forward_vertex_subset(betas, exp_so3(pose), root, pos, ids)
    np.testing.assert_allclose(subset.numpy(), verts[:, ids].double().numpy(), atol=2e-5)
    # the subset's arrays are kept for the next call with the same ids, and replaced for other ids
    again = model.forward_vertex_subset(betas, exp_so3(pose), root, pos, ids.numpy())
    np.testing.assert_array_equal(again.numpy(), subset.numpy())
    other = model.forward_vertex_subset(betas, exp_so3(pose), root, pos, ids[[3, 1]])
    np.testing.assert_allclose(other.numpy(), subset[:, [3, 1]].numpy(), rtol=0, atol=1e-12)
    assert model.forward_vertices(betas[:0], pose[:0], root[:0], pos[:0]).shape[0] == 0


def test_chumpy_pkl_and_npz_load_identically(tmp_path):
    arrays = _tiny_arrays()
    pkl = tmp_path / "tiny_model.pkl"
    _write_chumpy_pkl(pkl, arrays)
    assert "chumpy" not in sys.modules
    npz = tmp_path / "tiny_model.npz"
    np.savez(npz, **{k: v for k, v in arrays.items() if k != "J_regressor"},
             J_regressor=scipy.sparse.csc_matrix(arrays["J_regressor"]))  # 0-d object array
    a_pkl, a_npz = load_model_arrays(pkl), load_model_arrays(npz)
    for key in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "f"):
        np.testing.assert_allclose(a_pkl[key], a_npz[key])
        np.testing.assert_allclose(a_pkl[key], arrays[key])
    m_pkl, m_npz = BodyModel(pkl, device="cpu"), BodyModel(npz, device="cpu")
    assert m_pkl.num_vertices == 50
    betas = torch.randn(2, 10, dtype=torch.float64)
    pose = 0.3 * torch.randn(2, 23, 3, dtype=torch.float64)
    root, pos = exp_so3(torch.randn(2, 3, dtype=torch.float64)), torch.zeros(2, 3)
    v1 = m_pkl.forward_vertices(betas, pose, root, pos)
    v2 = m_npz.forward_vertices(betas, pose, root, pos)
    assert v1.shape == (2, 50, 3) and torch.allclose(v1, v2)
    # posedirs are used by the mesh path and the float64 subset path alike
    sub = m_pkl.forward_vertex_subset(betas, exp_so3(pose), root, pos, torch.arange(50))
    np.testing.assert_allclose(sub.numpy(), v1.double().numpy(), atol=1e-5)


def test_bad_model_files_name_the_problem(tmp_path):
    arrays = _tiny_arrays()
    with pytest.raises(FileNotFoundError, match="body_model_path"):
        BodyModel(tmp_path / "missing.npz")
    bad = tmp_path / "model.txt"
    bad.write_text("x")
    with pytest.raises(ValueError, match="body_model_path"):
        load_model_arrays(bad)
    broken = dict(arrays, weights=arrays["weights"][:, :10])
    np.savez(tmp_path / "w.npz", **broken)
    with pytest.raises(ValueError, match="weights"):
        load_model_arrays(tmp_path / "w.npz")
    tree = dict(arrays, kintree_table=np.array([[0] * 24, list(range(24))]))
    np.savez(tmp_path / "k.npz", **tree)
    with pytest.raises(ValueError, match="kintree_table"):
        load_model_arrays(tmp_path / "k.npz")
    no_f = {k: v for k, v in arrays.items() if k != "f"}
    np.savez(tmp_path / "f.npz", **no_f)
    with pytest.raises(ValueError, match="'f'"):
        load_model_arrays(tmp_path / "f.npz")


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert resolve_device("cuda") == torch.device("cpu")
        assert caught and "CUDA" in str(caught[0].message)
    with pytest.raises(ValueError, match="device"):
        resolve_device("tpu")
