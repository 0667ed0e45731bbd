"""`colcon build` of the package in a workspace, against the venv's ROS 2, and the installed result runs.

This is the path of users with a ROS 2 distro: the ament_cmake build generates the messages, copies
the Python sources into the generated package and installs node executables, launch and config.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def colcon_install(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workspace = tmp_path_factory.mktemp("ws")
    (workspace / "src").mkdir()
    (workspace / "src" / "glopro_ros").symlink_to(REPO)
    env = dict(os.environ, AMENT_PREFIX_PATH=sys.prefix, CMAKE_PREFIX_PATH=sys.prefix,
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    result = subprocess.run([str(Path(sys.executable).parent / "colcon"), "build"],
                            cwd=workspace, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return workspace / "install" / "glopro_ros"


def test_install_tree_has_messages_sources_executables_and_share(colcon_install: Path) -> None:
    site = colcon_install / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages" / "glopro_ros"
    assert (site / "msg" / "_human_state_array.py").is_file()
    for layer in ("core", "perception", "ros", "tools"):
        assert (site / layer / "__init__.py").is_file()
    for exe in ("demo_publisher", "demo_subscriber"):
        assert os.access(colcon_install / "lib" / "glopro_ros" / exe, os.X_OK)
    share = colcon_install / "share" / "glopro_ros"
    assert (share / "msg" / "HumanStateArray.msg").is_file()
    assert (share / "launch" / "demo_exchange.launch.py").is_file()
    assert (share / "config" / "demo_exchange.yaml").is_file()
    assert (share / "package.xml").is_file()


def test_installed_executables_exchange_over_dds(colcon_install: Path, ros_env: dict[str, str], tmp_path: Path) -> None:
    site = colcon_install / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    env = dict(ros_env, PYTHONPATH=str(site),
               LD_LIBRARY_PATH=f"{colcon_install / 'lib'}{os.pathsep}{ros_env.get('LD_LIBRARY_PATH', '')}",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    probe = subprocess.run([sys.executable, "-c", "import glopro_ros, glopro_ros.msg; print(glopro_ros.__path__[0])"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == str(site / "glopro_ros")
    exe = colcon_install / "lib" / "glopro_ros"
    publisher = subprocess.Popen([str(exe / "demo_publisher"), "--ros-args", "--params-file",
                                  str(colcon_install / "share" / "glopro_ros" / "config" / "demo_exchange.yaml")],
                                 cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        result = subprocess.run([str(exe / "demo_subscriber"), "--count", "1", "--timeout", "60"], cwd=tmp_path,
                                env=env, capture_output=True, text=True, timeout=90, check=False)
    finally:
        publisher.terminate()
        publisher.wait(timeout=10)
    assert result.returncode == 0, result.stderr
    assert '"frame_id": "map"' in result.stdout and result.stdout.count('"track_id"') == 2


def test_installed_node_starts_its_lifting_process_and_stops(colcon_install: Path, ros_env: dict[str, str],
                                                             tmp_path: Path) -> None:
    """The installed glopro_node wrapper, keypoint input: one lifting child (spawn runs the wrapper again in
    the child, which must not start a second node), and none left after a clean stop."""
    site = colcon_install / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    env = dict(ros_env, PYTHONPATH=str(site),
               LD_LIBRARY_PATH=f"{colcon_install / 'lib'}{os.pathsep}{ros_env.get('LD_LIBRARY_PATH', '')}",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    log = tmp_path / "node.log"
    node = subprocess.Popen([str(colcon_install / "lib" / "glopro_ros" / "glopro_node"), "--ros-args", "-p",
                             "input:=keypoints", "-p", "device:=cpu"], cwd=tmp_path, env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while "configured:" not in log.read_text() and node.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        text = log.read_text()
        child = re.search(r"lifting in process (\d+)", text)
        assert child, text[-3000:]
        time.sleep(2.0)  # a second node in the child would have said so by now
        assert log.read_text().count("configured:") == 1, log.read_text()[-3000:]
    finally:
        node.send_signal(signal.SIGINT)
        node.wait(timeout=30)
    assert node.returncode == 0, log.read_text()[-3000:]
    assert not Path(f"/proc/{child.group(1)}").exists(), "the lifting process outlived the node"
