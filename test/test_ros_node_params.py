"""config/glopro.yaml lists every node parameter with the default the node declares."""
from __future__ import annotations

from pathlib import Path

import yaml

from glopro_ros.ros.node import PARAMETERS

CONFIG = Path(__file__).resolve().parents[1] / "config" / "glopro.yaml"


def test_params_file_matches_declared_defaults() -> None:
    params = yaml.safe_load(CONFIG.read_text())["glopro"]["ros__parameters"]
    assert params == {name: default for name, (default, _) in PARAMETERS.items()}
    assert all(text for _, text in PARAMETERS.values())  # every parameter is described
