"""The optimised SO(3) functions equal the straightforward formulas (test/reference_formulas.py) up to
float rounding, values and torch.func derivatives alike, on every kind of angle."""
from __future__ import annotations

import math

import pytest
import torch

import reference_formulas as ref
from glopro_ros.core import so3

F64 = torch.float64


def axis_angles(n: int = 600, seed: int = 0) -> torch.Tensor:
    """Random axes and angles in [0, 3 pi) plus the hard cases: zero, tiny, both sides of the Taylor
    switch, near pi and exactly pi (about coordinate axes and a generic one)."""
    g = torch.Generator().manual_seed(seed)
    axis = torch.randn(n, 3, generator=g, dtype=F64)
    axis = axis / axis.norm(dim=1, keepdim=True)
    phi = axis * torch.rand(n, 1, generator=g, dtype=F64) * 3 * math.pi
    phi[:100] *= 1e-3  # small rotations, the filter's usual increments
    special = [0.0, 1e-12, 1e-9, 0.99e-4, 1.01e-4, 1e-3, math.pi - 1e-7, math.pi - 1e-12, math.pi, 2 * math.pi - 1e-3]
    for i, angle in enumerate(special):
        phi[100 + 3 * i:103 + 3 * i] = torch.eye(3, dtype=F64) * angle
        phi[200 + i] = axis[200 + i] * angle
    return phi


def assert_close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-12) -> None:
    """Equal up to rtol of the larger magnitude (the spec: 1e-9 relative in float64)."""
    scale = b.abs().max().clamp_min(1.0)
    assert (a - b).abs().max() <= rtol * scale, float((a - b).abs().max())


def test_hat_and_exp_equal_reference():
    phi = axis_angles()
    assert torch.equal(so3.hat(phi), ref.hat(phi))
    assert_close(so3.exp_so3(phi), ref.exp_so3(phi))
    batched = phi.reshape(2, 3, -1, 3)  # any leading batch dimensions
    assert_close(so3.exp_so3(batched), ref.exp_so3(batched))
    _, b, c = so3._angle_coeffs((phi * phi).sum(-1))
    k = ref.hat(phi)
    assert_close(so3.right_jacobian(phi), torch.eye(3, dtype=F64) - b[:, None, None] * k + c[:, None, None] * (k @ k))


def test_log_and_quaternion_equal_reference():
    phi = axis_angles()
    r = ref.exp_so3(phi)
    g = torch.Generator().manual_seed(1)
    noisy = r + 1e-3 * torch.randn(r.shape, generator=g, dtype=F64)  # not quite orthonormal
    for m in (r, noisy, r.reshape(4, -1, 3, 3)):
        assert_close(so3.log_so3(m), ref.log_so3(m))
        assert_close(so3.matrix_to_quat(m), ref.matrix_to_quat(m))
    # Relative accuracy for small angles too (an innovation of 1e-6 rad keeps its 1e-12 digits).
    small = phi[:100]
    err = (so3.log_so3(ref.exp_so3(small)) - ref.log_so3(ref.exp_so3(small))).norm(dim=1)
    assert (err <= 1e-12 * small.norm(dim=1) + 1e-300).all()


def test_float32_within_rounding():
    phi = axis_angles().float()
    assert (so3.exp_so3(phi) - ref.exp_so3(phi)).abs().max() < 1e-6
    r = ref.exp_so3(phi)
    assert (so3.log_so3(r) - ref.log_so3(r)).abs().max() < 4e-6


@pytest.mark.parametrize("at", ["zero", "generic"])
def test_torch_func_derivatives_equal_reference(at):
    phi = torch.zeros(3, dtype=F64) if at == "zero" else torch.tensor([0.3, -0.5, 0.8], dtype=F64)
    r = ref.exp_so3(phi)
    for transform in (torch.func.jacrev, torch.func.jacfwd):
        assert_close(transform(so3.exp_so3)(phi), transform(ref.exp_so3)(phi))
        assert_close(transform(so3.log_so3)(r), transform(ref.log_so3)(r))
    assert torch.isfinite(torch.func.jacrev(so3.log_so3)(r)).all()
    hess = torch.func.hessian(lambda v: so3.exp_so3(v).sum())(phi)
    assert_close(hess, torch.func.hessian(lambda v: ref.exp_so3(v).sum())(phi))
    many = axis_angles()[::10]
    assert_close(torch.func.vmap(so3.exp_so3)(many), ref.exp_so3(many))
    assert_close(torch.func.vmap(so3.log_so3)(ref.exp_so3(many)), ref.log_so3(ref.exp_so3(many)))


def test_constants_first_made_in_inference_mode_still_serve_autograd():
    saved = dict(so3._CONSTANTS)
    so3._CONSTANTS.clear()
    try:
        with torch.inference_mode():
            so3.log_so3(so3.exp_so3(torch.ones(2, 3, dtype=F64)))
        phi = torch.tensor([[0.1, 0.2, 0.3]], dtype=F64, requires_grad=True)
        so3.log_so3(so3.exp_so3(phi)).sum().backward()
        assert_close(phi.grad, torch.ones(1, 3, dtype=F64), rtol=1e-9)
    finally:
        so3._CONSTANTS.clear()
        so3._CONSTANTS.update(saved)
