"""``glopro demo``: a publisher process and a subscriber process exchange HumanStateArray over DDS.

Both run as separate processes on a private, localhost-only ROS graph (random domain), so the
demo neither disturbs nor is disturbed by a robot's running graph.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from glopro_ros.ros.isolation import isolated_ros_environment


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="glopro demo", description=__doc__)
    parser.add_argument("--count", type=int, default=3, help="messages the subscriber prints")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for them")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="glopro_demo_") as tmp:
        env = isolated_ros_environment(Path(tmp))
        module = [sys.executable, "-m", "glopro_ros.ros.demo_exchange"]
        print(f"glopro demo: publisher and subscriber on ROS_DOMAIN_ID={env['ROS_DOMAIN_ID']} (localhost only)")
        publisher = subprocess.Popen([*module, "publisher"], env=env)
        try:
            subscriber = subprocess.run(
                [*module, "subscriber", "--count", str(args.count), "--timeout", str(args.timeout)],
                env=env, stdout=subprocess.PIPE, text=True, check=False)
        finally:
            publisher.terminate()
            publisher.wait(timeout=10)
    for line in subscriber.stdout.splitlines():
        msg = json.loads(line)
        people = ", ".join(
            f"id {h['track_id']} at ({', '.join(f'{v:.2f}' for v in h['root_position'])}) m "
            f"+/- {max(h['root_position_std']):.2f} m, {len(h['joints'])} joints"
            for h in msg["humans"])
        print(f"received HumanStateArray in '{msg['frame_id']}' at t={msg['stamp']:.3f}: {people}")
    return subscriber.returncode


if __name__ == "__main__":
    sys.exit(main())
