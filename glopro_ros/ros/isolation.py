"""Environment for ROS 2 processes that must not meet any other ROS graph on the machine.

Used by the demo and the tests: a random domain, discovery limited to this host, logs kept out of
$HOME, and Fast DDS over UDP only (a killed process leaves no shared-memory segments behind).
"""
from __future__ import annotations

import os
import random
from collections.abc import Mapping
from pathlib import Path


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
        FASTDDS_BUILTIN_TRANSPORTS="UDPv4",
        PYTHONUNBUFFERED="1",
    )
    return env
