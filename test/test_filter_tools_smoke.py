"""Smoke tests of the fusion training and the results commands: tiny runs, a loadable checkpoint, a report."""
from __future__ import annotations

import torch

from glopro_ros.core.fusion import FILTER_VARIANTS, load_filter
from glopro_ros.tools import evaluate_filters, train_residual


def test_train_residual_smoke(tmp_path):
    out = tmp_path / "fusion.pt"
    assert train_residual.main(["--calibration-sequences", "1", "--calibration-iterations", "1",
                                "--residual-sequences", "1", "--validation-sequences", "1", "--epochs", "1",
                                "--dagger-rounds", "0", "--threads", "1", "--out", str(out)]) == 0
    ckpt = torch.load(out, weights_only=True)
    assert set(ckpt["variance_scale"]) == set(ckpt["coast_variance_scale"]) == set(FILTER_VARIANTS)
    for variant in FILTER_VARIANTS:
        assert load_filter(variant, fusion_path=out) is not None
    # A residual that did not beat the filter without one in closed loop is not kept.
    has_residual = load_filter("glopro", fusion_path=out).residual is not None
    assert has_residual == (ckpt["residual"] is not None)
    assert has_residual == (ckpt["closed_loop_validation_root_error"]
                            < ckpt["closed_loop_validation_root_error_no_residual"])
    assert "train_residual" in ckpt["command"]


def test_evaluate_filters_writes_every_section(tmp_path):
    out = tmp_path / "results.md"
    assert evaluate_filters.main(["--single", "1", "--multi", "1", "--occlusion", "1", "--threads", "1",
                                  "--out", str(out)]) == 0
    text = out.read_text()
    for heading in ("## World-frame accuracy", "## Consistency", "## Motion models alone", "## Occlusions",
                    "## Several people", "## The committed fusion checkpoint"):
        assert heading in text
    for name in evaluate_filters.METHODS.values():
        assert f"| {name} |" in text
    assert "nan" not in text.split("## Occlusions")[0]
