"""The optimised motion models, filter step and tracker shortcuts equal the straightforward formulas
(test/reference_formulas.py): the learned model bit for bit, float64 filter paths to float rounding."""
from __future__ import annotations

from dataclasses import fields

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

import reference_formulas as ref
from glopro_ros.core.fusion import (
    FilterState, Measurement, _native_kernels, gaussian_product_update, init_state, load_filter,
)
from glopro_ros.core.motion_model import (
    FEATURE_DIM, TemporalConvMotionModel, apply_step, body_centric_features, load_motion_model,
)
from glopro_ros.core.tracker import MultiPersonTracker

F64 = torch.float64


def spd(g: torch.Generator, *shape: int, scale: float) -> torch.Tensor:
    a = torch.randn(*shape, generator=g, dtype=F64) * scale
    return a @ a.transpose(-1, -2) + scale**2 * torch.eye(shape[-1], dtype=F64)


def measurement(b: int, t: int, g: torch.Generator) -> Measurement:
    """People walking along x, turning slowly, with noisy poses."""
    rot = lambda *s: ref.exp_so3(0.1 * torch.randn(*s, 3, generator=g, dtype=F64))  # noqa: E731
    pos = torch.stack([torch.arange(b, dtype=F64) * 2 + t / 30, torch.zeros(b, dtype=F64), torch.ones(b, dtype=F64)], 1)
    yaw = ref.exp_so3(torch.tensor([0.0, 0.0, 0.02 * t], dtype=F64)).expand(b, 3, 3)
    return Measurement(pos + 0.03 * torch.randn(b, 3, generator=g, dtype=F64), spd(g, b, 3, 3, scale=0.05),
                       yaw @ rot(b), spd(g, b, 3, 3, scale=0.1), rot(b, 23), spd(g, b, 23, 3, 3, scale=0.05),
                       0.1 * torch.randn(b, 10, generator=g, dtype=F64), spd(g, b, 10, 10, scale=0.3))


def assert_same(a, b, rtol: float = 1e-9) -> None:
    for f in fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        assert not x.is_inference(), f.name  # ordinary tensors: callers may modify them, use them in autograd
        torch.testing.assert_close(x, y, rtol=rtol, atol=1e-12, msg=f.name)


def test_motion_models_equal_reference():
    g = torch.Generator().manual_seed(0)
    pos, rot, pose = (torch.randn(4, 8, 3, generator=g), ref.exp_so3(torch.randn(4, 8, 3, generator=g)),
                      ref.exp_so3(torch.randn(4, 8, 23, 3, generator=g)))
    assert torch.equal(body_centric_features(pos, rot, pose), ref.body_centric_features(pos, rot, pose))
    tcn = load_motion_model(None, "learned")  # the committed checkpoint
    with torch.no_grad():
        for new, old in zip(tcn(pos, rot, pose), ref.tcn_forward(tcn, pos, rot, pose)):  # float32: its rounding
            torch.testing.assert_close(new, old, rtol=1e-5, atol=1e-6)
    cv = load_motion_model(None, "cv")
    for new, old in zip(cv(pos.double(), rot.double(), pose.double()),
                        ref.cv_forward(cv, pos.double(), rot.double(), pose.double())):
        torch.testing.assert_close(new, old, rtol=1e-12, atol=1e-12)
    for new, old in zip(cv(pos, rot, pose), ref.cv_forward(cv, pos, rot, pose)):  # float32: its rounding
        torch.testing.assert_close(new, old, rtol=1e-5, atol=1e-6)
    step = torch.randn(4, 75, generator=g, dtype=F64)
    for new, old in zip(apply_step(pos[:, 0].double(), rot[:, 0].double(), pose[:, 0].double(), step),
                        ref.apply_step(pos[:, 0].double(), rot[:, 0].double(), pose[:, 0].double(), step)):
        torch.testing.assert_close(new, old, rtol=1e-12, atol=1e-14)


def test_gaussian_product_update_equals_reference():
    g = torch.Generator().manual_seed(2)
    for shape in ((5, 6, 6), (2, 23, 3, 3)):
        p, r = spd(g, *shape, scale=0.1), spd(g, *shape, scale=0.2)
        err = torch.randn(*shape[:-1], generator=g, dtype=F64)
        for new, old in zip(gaussian_product_update(err, p, r), ref.gaussian_product_update(err, p, r)):
            torch.testing.assert_close(new, old, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("variant", ["glopro", "glopro_nores", "cv"])
def test_predict_and_update_equal_reference(variant):
    filt = load_filter(variant)
    g = torch.Generator().manual_seed(1)
    for b in (1, 5):
        s = init_state(measurement(b, 0, g), filt.history)
        for t in range(1, 14):
            steps = 3.0 if t == 7 else 1.0  # a stretched step over a gap
            pred = filt.predict(s, steps=steps)
            with _native_kernels():  # the kernels the filter uses
                assert_same(pred, ref.predict(filt, s, steps=steps))
            m = measurement(b, t, g)
            if t % 4 == 0:
                m.root_pos[-1] += 20.0  # an outlier: gated out, the person keeps the prediction
            post, info = filt.update(pred, m, with_features=True)
            with _native_kernels():
                ref_post, nis, fused, feats = ref.update(filt, pred, m)
            assert_same(post, ref_post)
            assert torch.equal(info.fused, fused) and bool(fused.all()) == (t % 4 != 0)
            torch.testing.assert_close(info.nis, nis, rtol=1e-9, atol=1e-12)
            torch.testing.assert_close(info.features, feats, rtol=1e-6, atol=1e-6)
            assert not (info.nis.is_inference() or info.fused.is_inference() or info.features.is_inference())
            s = post
    with torch.inference_mode():  # a caller in inference mode gets its own kind of tensors
        assert filt.update(filt.predict(s), measurement(b, 20, g))[0].root_pos.is_inference()
    assert torch.backends.mkldnn.enabled  # the filter restores the process-wide flag


def test_tracker_shortcuts_equal_general_path():
    # One track and one detection: the answer linear_sum_assignment gives.
    for c in (3.0, np.inf):
        rows, cols = MultiPersonTracker._assign(np.array([[c]]), np.array([True]), np.array([False]))
        r, k = linear_sum_assignment(np.array([[c if np.isfinite(c) else 1.0]]))
        expect = (r.tolist(), k.tolist()) if np.isfinite(c) else ([], [])  # an out-of-gate pair is dropped
        assert (rows.tolist(), cols.tolist()) == expect
    # Whole-state updates (every track with every detection) give what row selection and replacement give.
    filt = load_filter("glopro")
    g = torch.Generator().manual_seed(3)
    s = filt.predict(init_state(measurement(3, 0, g), filt.history))
    m = measurement(3, 1, g)
    whole, _ = filt.update(s, m)
    rows = torch.arange(3)
    picked = s.replace_rows(rows, filt.update(s.select(rows), m.select(rows))[0])
    assert_same(whole, picked, rtol=0.0)
    assert isinstance(whole, FilterState)


@pytest.mark.parametrize("history, width", [(8, 128), (5, 16), (11, 32)])
def test_tcn_net_by_hand_equals_modules(history, width):
    """TemporalConvMotionModel._net (convolutions as linear maps of sliding windows) is its nn.Sequential,
    outputs and gradients (training runs it), for any history and width."""
    torch.manual_seed(0)
    model = TemporalConvMotionModel(history, width)
    x = torch.randn(3, history, FEATURE_DIM)
    by_hand, modules = model._net(x), model.net(x.transpose(1, 2))
    torch.testing.assert_close(by_hand, modules, rtol=1e-5, atol=1e-6)
    grads = [torch.autograd.grad(y.square().sum(), model.net[0].weight)[0] for y in (by_hand, modules)]
    torch.testing.assert_close(*grads, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("history, width", [(8, 128), (5, 16), (11, 32)])
def test_tcn_float64_path_equals_forward(history, width):
    """TemporalConvMotionModel.gaussian64 (the filter's: float64 features, weights laid out and step_std
    folded in ahead) is forward to float32 rounding, and follows the weights when they change."""
    torch.manual_seed(0)
    model = TemporalConvMotionModel(history, width)
    with torch.no_grad():  # statistics as training sets them, so that folding step_std in matters
        model.feat_mean.normal_()
        model.feat_std.uniform_(0.5, 2.0)
        model.step_std.uniform_(0.01, 0.1)
    g = torch.Generator().manual_seed(0)
    hist = (torch.randn(3, history, 3, generator=g, dtype=F64),
            ref.exp_so3(torch.randn(3, history, 3, generator=g, dtype=F64)),
            ref.exp_so3(torch.randn(3, history, 23, 3, generator=g, dtype=F64)))

    def check(min_var: float, rtol: float = 1e-4, atol: float = 1e-6) -> None:
        with torch.no_grad():
            mean, var = model(*(h.to(model.step_std.dtype) for h in hist))
            mean64, var64 = model.gaussian64(*hist, min_var)
        assert mean64.dtype == var64.dtype == F64
        torch.testing.assert_close(mean64, mean.double(), rtol=rtol, atol=atol)
        torch.testing.assert_close(var64, var.double().clamp_min(min_var), rtol=rtol, atol=atol * 1e-3)

    check(0.0)
    check(1e-4)  # a floor inside the variances' range
    with torch.no_grad():  # an optimiser step: in place
        model.net[-1].weight.mul_(1.5)
        model.step_std.mul_(2.0)
    check(1e-4)
    model.load_state_dict(TemporalConvMotionModel(history, width).state_dict())
    check(1e-4)
    model.double()  # converted: the same algebra, to float64 rounding
    check(1e-4, rtol=1e-10, atol=1e-12)
