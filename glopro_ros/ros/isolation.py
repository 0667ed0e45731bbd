"""Environment for ROS 2 processes that must not meet any other ROS graph on the machine.

Used by the demo, the tests and the benchmarks: a random domain, discovery limited to this host, logs
kept out of $HOME, and the package's Fast DDS profile (config/fastdds_large_data.xml) so that camera
images sent best effort arrive, as the README tells users to configure their own processes.

Shared memory: with ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, rmw_fastrtps always adds a shared-memory
transport (FASTDDS_BUILTIN_TRANSPORTS is ignored there; measured with Kilted's rmw_fastrtps 9.3), so
a process that is killed leaves its segments in /dev/shm. `shm_zombies_removed` deletes those a run
created, by Fast DDS's own rule (`fastdds shm clean`): a segment whose lock file no process holds.
"""
from __future__ import annotations

import fcntl
import os
import random
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

PROFILE_NAME = "fastdds_large_data.xml"
SHM_DIR = Path("/dev/shm")
# Fast DDS's shared-memory files: segments (fastdds_<16 hex>) and ports (fastdds_port<N>), each with an
# "_el" lock file that its owner holds while alive; ports also have a semaphore sem.<port>_mutex.
_SHM_LOCK = re.compile(r"^(fastdds_[0-9a-f]{16}|fastdds_port\d{1,5})_el$")


def fastdds_profile() -> Path | None:
    """The shipped Fast DDS profile: in this checkout, else in an installed share/glopro_ros/config."""
    checkout = Path(__file__).resolve().parents[2] / "config" / PROFILE_NAME
    prefixes = os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)
    candidates = [checkout, *(Path(p) / "share" / "glopro_ros" / "config" / PROFILE_NAME for p in prefixes if p)]
    return next((c for c in candidates if c.is_file()), None)


def isolated_ros_environment(log_dir: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return a copy of ``base`` (default: os.environ) set up for a private, localhost-only graph."""
    env = dict(os.environ if base is None else base)
    log_dir.mkdir(parents=True, exist_ok=True)
    env.update(
        # Fast DDS cannot open ports for domains above 101; 10..100 avoids the common default 0.
        ROS_DOMAIN_ID=str(random.SystemRandom().randint(10, 100)),
        # ROS_LOCALHOST_ONLY is ignored since Kilted; this is its replacement (Humble ignores it).
        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
        ROS_LOCALHOST_ONLY="1" if env.get("ROS_DISTRO") == "humble" else "0",
        ROS_HOME=str(log_dir),
        ROS_LOG_DIR=str(log_dir / "log"),
        PYTHONUNBUFFERED="1",
    )
    profile = fastdds_profile()
    if profile is not None:
        # Fast DDS 3 (Kilted) reads the first and warns about the second; Fast DDS 2 reads the second.
        key = "FASTRTPS_DEFAULT_PROFILES_FILE" if env.get("ROS_DISTRO") in ("humble", "jazzy") else \
            "FASTDDS_DEFAULT_PROFILES_FILE"
        env[key] = str(profile)
    return env


def _owner_alive(lock: Path) -> bool:
    """Whether a live process holds this Fast DDS lock file (as `fastdds shm clean` decides)."""
    try:
        with lock.open("ab") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except OSError:
        return True


def remove_shm_zombies(before: set[str]) -> list[str]:
    """Delete the Fast DDS shared-memory files created since the listing ``before`` whose owner died."""
    removed = []
    for name in sorted(set(os.listdir(SHM_DIR)) - before):
        match = _SHM_LOCK.match(name)
        if match is None or _owner_alive(SHM_DIR / name):
            continue
        base = match.group(1)
        for file in (name, base, f"sem.{base}_mutex"):
            try:
                (SHM_DIR / file).unlink()
                removed.append(file)
            except FileNotFoundError:
                pass
    return removed


@contextmanager
def shm_zombies_removed() -> Iterator[None]:
    """Around a run of ROS processes: afterwards, delete the shared-memory files they left behind."""
    before = set(os.listdir(SHM_DIR)) if SHM_DIR.is_dir() else set()
    try:
        yield
    finally:
        if SHM_DIR.is_dir():
            remove_shm_zombies(before)
