"""Two processes exchange HumanStateArray over real DDS (private domain, localhost discovery)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from glopro_ros.ros.demo_exchange import example_human_state

MODULE = [sys.executable, "-m", "glopro_ros.ros.demo_exchange"]


def test_subscriber_process_receives_publisher_process_messages(ros_env: dict[str, str]) -> None:
    publisher = subprocess.Popen([*MODULE, "publisher", "--ros-args", "-p", "people:=3", "-p", "frame_id:=world"],
                                 env=ros_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        result = subprocess.run([*MODULE, "subscriber", "--count", "2", "--timeout", "60"], env=ros_env,
                                capture_output=True, text=True, timeout=90, check=False)
    finally:
        publisher.terminate()
        publisher_rc = publisher.wait(timeout=10)
    assert result.returncode == 0, result.stderr
    assert publisher_rc == 0, publisher.stderr.read()
    messages = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(messages) == 2
    for msg in messages:
        assert msg["frame_id"] == "world" and msg["body_model"] == "example"
        assert [h["track_id"] for h in msg["humans"]] == [0, 1, 2]
        for person in msg["humans"]:
            # The example person's pelvis is joint 0 and sits at the root position.
            assert np.allclose(person["joints"][0], person["root_position"], atol=1e-4)
            expected = example_human_state(person["track_id"], 0.0)
            assert person["root_position"][1:] == [expected.root_pose.pose.position.y, 0.95]
            assert person["root_position_std"] == [0.1, 0.1, 0.2]
    assert messages[1]["stamp"] > messages[0]["stamp"]


def test_subscriber_reports_when_nothing_arrives(ros_env: dict[str, str]) -> None:
    result = subprocess.run([*MODULE, "subscriber", "--count", "1", "--timeout", "1"], env=ros_env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert "received 0 of 1 messages" in result.stderr
