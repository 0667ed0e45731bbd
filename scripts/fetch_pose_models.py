#!/usr/bin/env python3
"""Fetch the BlazePose tflite files (Apache-2.0) into .cache/models/blazepose/, never into git.

They ship only inside the mediapipe 0.10.21 wheel, so the wheel is fetched once with
`pip download --no-deps` (any Python: the wheel is a zip we only unpack) and the two files are
checked against known hashes. Idempotent: returns in well under a second once the files exist.
"""
from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
from glopro_ros.perception.model_files import MODEL_FILES, default_model_dir  # noqa: E402

WHEEL_SPEC = "mediapipe==0.10.21"
WHEEL_MEMBERS = {
    "pose_detection.tflite": "mediapipe/modules/pose_detection/pose_detection.tflite",
    "pose_landmark_full.tflite": "mediapipe/modules/pose_landmark/pose_landmark_full.tflite",
}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _models_ok(model_dir: Path) -> bool:
    return all((model_dir / n).is_file() and _sha256(model_dir / n) == h
               for n, h in MODEL_FILES.items())


def _download_wheel(cache: Path) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    found = sorted(cache.glob("mediapipe-0.10.21-*.whl"))
    if found:
        return found[0]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--python-version", "3.11", "--platform", "manylinux_2_28_x86_64",
           "-d", str(cache), WHEEL_SPEC]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(cache.glob("mediapipe-0.10.21-*.whl"))
    if proc.returncode != 0 or not found:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"pip download {WHEEL_SPEC} failed (no network?): {tail[0]}")
    return found[0]


def fetch(model_dir: Path) -> None:
    """Make model_dir hold both tflite files with the expected hashes."""
    if _models_ok(model_dir):
        return
    wheel = _download_wheel(model_dir.parent / "wheels")
    model_dir.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as zf:
        for name, member in WHEEL_MEMBERS.items():
            tmp = model_dir / (name + ".part")
            tmp.write_bytes(zf.read(member))
            if _sha256(tmp) != MODEL_FILES[name]:
                tmp.unlink()
                raise RuntimeError(f"{name} from {wheel.name} has an unexpected sha256")
            tmp.replace(model_dir / name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=default_model_dir())
    args = parser.parse_args()
    try:
        fetch(args.model_dir)
    except (RuntimeError, OSError, zipfile.BadZipFile, KeyError) as exc:
        print(f"fetch_pose_models: FAILED to prepare BlazePose models in {args.model_dir}: {exc}",
              file=sys.stderr)
        return 1
    print(f"fetch_pose_models: BlazePose models ready in {args.model_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
