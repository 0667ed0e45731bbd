"""A user-supplied TorchScript regressor plugs in: a tiny random network proves the plumbing."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch

from glopro_ros.perception.model_files import MODEL_FILES, default_model_dir
from glopro_ros.perception.regressor_plugin import METADATA_FILE, ImageRegressor

K = np.array([[500.0, 0, 256], [0, 500.0, 256], [0, 0, 1]])


class TinyRegressor(torch.nn.Module):
    """Random conv net with HMR's output contract: (mean, log_var), each (N, 85)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 5, stride=4), torch.nn.ReLU(),
                                            torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten())
        self.head = torch.nn.Linear(16, 170)
        torch.nn.init.normal_(self.head.weight, std=0.01)
        bias = torch.zeros(170)
        bias[84] = 50.0  # crop-camera depth: at 5000 px focal a 224 px crop of a body is far
        bias[85:] = -4.0
        self.head.bias.data = bias

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.head(self.features(x))
        return out[:, :85], out[:, 85:]


META = {METADATA_FILE: json.dumps({"crop_size": 64, "focal": 5000.0 * 64 / 224})}


@pytest.fixture(scope="module", params=["pt2", "torchscript"])
def checkpoint(request, tmp_path_factory) -> Path:
    torch.manual_seed(0)
    net = TinyRegressor().eval()
    folder = tmp_path_factory.mktemp("reg")
    if request.param == "pt2":
        path = folder / "tiny.pt2"
        program = torch.export.export(net, (torch.zeros(1, 3, 64, 64),))
        torch.export.save(program, str(path), extra_files=META)
    else:
        path = folder / "tiny.pt"
        with pytest.warns(DeprecationWarning):  # torch.jit is deprecated in torch >= 2.9
            torch.jit.save(torch.jit.script(net), str(path), _extra_files=META)
    return path


def test_predicts_a_camera_frame_gaussian(checkpoint) -> None:
    reg = ImageRegressor(checkpoint, device="auto")
    assert reg.crop_size == 64
    box = np.array([150.0, 50.0, 350.0, 500.0])
    fit = reg.predict(skimage.data.astronaut(), box, K)
    # depth rescaled by real focal over the crop's: 50 m * 500 / (5000 * side / 224)
    side = 450 * reg.box_scale
    assert fit.root_position[2] == pytest.approx(50.0 * 500 / (5000 * side / 224), rel=0.05)
    assert fit.cov.shape == (85, 85) and np.all(np.linalg.eigvalsh(fit.cov) > 0)
    assert fit.joints.shape == (24, 3)


def test_runs_inside_the_pipeline(checkpoint) -> None:
    missing = [n for n in MODEL_FILES if not (default_model_dir() / n).is_file()]
    if missing:
        pytest.fail(f"BlazePose model files {missing} missing: run scripts/setup.sh first")
    from glopro_ros.perception.pipeline import PerceptionStage
    stage = PerceptionStage.from_params(regressor_checkpoint=str(checkpoint), device="cpu",
                                        tracking=False)
    out = stage.process(skimage.data.astronaut(), K, "camera")
    assert out.state.batch_size == 1 and out.state.frame_id == "camera"


def test_bad_checkpoints_are_clear_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageRegressor(tmp_path / "none.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a torch.export"):
        ImageRegressor(junk)


def test_tiny_box_is_refused(checkpoint) -> None:
    reg = ImageRegressor(checkpoint)
    with pytest.raises(ValueError, match="too small"):
        reg.predict(skimage.data.astronaut(), np.array([10.0, 10.0, 12.0, 13.0]), K)
