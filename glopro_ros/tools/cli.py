"""The ``glopro`` command line: one entry point, one module per subcommand.

Each subcommand module has ``main(argv: list[str] | None) -> int`` and its own argparse parser, and
is imported only when chosen, so ``glopro --help`` stays fast and needs neither torch nor rclpy.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("glopro_ros.tools.demo", "simulated people -> the node over DDS -> report (--hsr: real robot frames)"),
    "simulate": ("glopro_ros.tools.simulate_bag", "write a simulated bag (people, moving camera, ground truth)"),
    "replay": ("glopro_ros.tools.replay", "run the pipeline offline over a bag, write /humans and /markers"),
    "evaluate": ("glopro_ros.tools.evaluate", "metrics, JSON and HTML report for a replayed bag"),
    "convert-3dpw": ("glopro_ros.tools.convert_3dpw", "3DPW sequence .pkl -> bag with ground truth"),
    "convert-emdb": ("glopro_ros.tools.convert_emdb", "EMDB sequence .pkl -> bag with ground truth"),
}


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``glopro COMMAND [ARGS...]`` to the command's module."""
    listing = "\n".join(f"  {name:<12} {text}" for name, (_, text) in COMMANDS.items())
    parser = argparse.ArgumentParser(
        prog="glopro",
        description="GloPro human pose tracking: demo, replay, evaluation, simulation and training.",
        epilog=f"commands:\n{listing}\n\n'glopro COMMAND --help' describes each command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=sorted(COMMANDS), metavar="COMMAND")
    parser.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    ns = parser.parse_args(sys.argv[1:] if argv is None else argv)
    module = importlib.import_module(COMMANDS[ns.command][0])
    return int(module.main(ns.args) or 0)


if __name__ == "__main__":
    sys.exit(main())
