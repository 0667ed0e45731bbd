"""Where the fetched BlazePose model files live, and a clear error when they are missing.

The files are Apache-2.0 but are never committed: scripts/fetch_pose_models.py (run by
scripts/setup.sh) takes them out of the mediapipe 0.10.21 wheel into a git-ignored cache.
"""
from __future__ import annotations

import os
from pathlib import Path

# sha256 of the files inside mediapipe-0.10.21 (identical in every platform wheel).
MODEL_FILES: dict[str, str] = {
    "pose_detection.tflite": "9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c",
    "pose_landmark_full.tflite": "e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f",
}
ENV_VAR = "GLOPRO_MODEL_DIR"


def default_model_dir() -> Path:
    """$GLOPRO_MODEL_DIR if set, else <repo>/.cache/models/blazepose."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / ".cache" / "models" / "blazepose"


def model_path(name: str, model_dir: Path | None = None) -> Path:
    """Path of one model file; FileNotFoundError telling how to fetch it when absent."""
    path = (model_dir or default_model_dir()) / name
    if not path.is_file():
        raise FileNotFoundError(
            f"BlazePose model file {path} is missing: run scripts/setup.sh "
            f"(or python scripts/fetch_pose_models.py), or set {ENV_VAR}")
    return path
