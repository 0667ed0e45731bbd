"""Shared pytest fixtures: where the project's data lives and how ROS tests are isolated."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the checkout; present in CI, absent in a user's fresh clone."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs {SHARED_DATA} (the project's shared data folder, present in CI only)")
    return SHARED_DATA


@pytest.fixture(scope="session", autouse=True)
def no_shm_leftovers() -> Iterator[None]:
    """Fast DDS shared-memory files that the session's killed ROS processes left in /dev/shm are removed."""
    from glopro_ros.ros.isolation import shm_zombies_removed

    with shm_zombies_removed():
        yield


@pytest.fixture()
def ros_env(tmp_path: Path) -> dict[str, str]:
    """Environment for ROS 2 child processes: random domain, localhost discovery, logs in tmp."""
    from glopro_ros.ros.isolation import isolated_ros_environment

    return isolated_ros_environment(tmp_path / "ros")
