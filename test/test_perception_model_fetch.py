"""scripts/fetch_pose_models.py: seconds when done, one clear line when it cannot fetch."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from glopro_ros.perception.model_files import MODEL_FILES, default_model_dir, model_path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "fetch_pose_models.py"


def test_idempotent_and_fast_when_models_exist() -> None:
    if not all((default_model_dir() / n).is_file() for n in MODEL_FILES):
        pytest.fail(f"BlazePose models missing in {default_model_dir()}: run scripts/setup.sh")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "ready" in proc.stdout and time.perf_counter() - t0 < 10.0


def test_without_a_package_index_it_fails_in_one_line(tmp_path) -> None:
    env = dict(os.environ, PIP_NO_INDEX="1")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--model-dir", str(tmp_path / "m")],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fetch_pose_models: FAILED")


def test_missing_model_file_error_says_how_to_fix(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="scripts/setup.sh"):
        model_path("pose_detection.tflite", tmp_path)
