"""scripts/setup.sh: idempotent, and one clear line for each bad environment."""
from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SETUP = REPO / "scripts" / "setup.sh"


def _base_python() -> str:
    """The interpreter the venv was made from (setup.sh builds a venv from a plain CPython)."""
    return shutil.which(f"python{sys.version_info.major}.{sys.version_info.minor}") or sys._base_executable


def _run_setup(venv: Path, **env_overrides: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(GLOPRO_VENV=str(venv), PYTHON=_base_python(), **env_overrides)
    return subprocess.run(["bash", str(SETUP)], env=env, capture_output=True, text=True, timeout=300, check=False)


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("glopro setup: error: ")
    return lines[0]


def test_second_run_is_a_no_op() -> None:
    result = _run_setup(Path(sys.prefix))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"glopro setup: {sys.prefix} is up to date"


def test_missing_python_headers_give_one_clear_line(tmp_path: Path) -> None:
    # A sitecustomize that points sysconfig at a folder without Python.h, as on a machine
    # without python3-dev.
    (tmp_path / "sitecustomize.py").write_text(
        "import sysconfig\n"
        "_get_path = sysconfig.get_path\n"
        "sysconfig.get_path = lambda name, *a, **k: '/nonexistent/include' if name == 'include' else _get_path(name, *a, **k)\n")
    line = _one_error_line(_run_setup(tmp_path / "venv", PYTHONPATH=str(tmp_path)))
    assert "Python headers missing" in line and "python3-dev" in line
    assert not (tmp_path / "venv").exists()


def test_unreachable_registry_gives_one_clear_line(tmp_path: Path) -> None:
    # Port 9 (discard) on loopback: nothing listens, so every connection is refused at once.
    line = _one_error_line(_run_setup(tmp_path / "venv", PIP_INDEX_URL="http://127.0.0.1:9/simple",
                                      PIP_CONFIG_FILE=os.devnull, PIP_RETRIES="0", PIP_TIMEOUT="5"))
    assert "cannot reach the Python package registry" in line


def test_concurrent_setup_is_refused_with_one_clear_line(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    with open(f"{venv}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        line = _one_error_line(_run_setup(venv))
    assert "another setup is already running" in line
