"""Replay throughput: frames/s of `glopro replay` offline and `--via-dds` over one simulated minute.

Why: the two replays give the same messages (test/test_tools_dds_replay.py); this says what the
deployed path (node process, DDS, lock-step waits) costs over the in-process pipeline. Both times
are wall clock for the whole call, pipeline or node start-up included (a few seconds), as a user
waits for them. Appends (or replaces) its section of docs/benchmarks.md.

Rerun: .venv/bin/python bench/bench_replay.py [--duration 60 --fps 10 --people 3]
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.markdown_section import write_section  # noqa: E402
from glopro_ros.tools import simulate_bag  # noqa: E402
from glopro_ros.tools.dds_replay import replay_bag_via_dds  # noqa: E402
from glopro_ros.tools.replay import ReplayOptions, replay_bag  # noqa: E402

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--people", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # as `glopro replay` and the node do
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_replay_") as tmp:
        bag = Path(tmp) / "scene"
        simulate_bag.main([str(bag), "--duration", str(args.duration), "--fps", str(args.fps),
                           "--people", str(args.people), "--seed", "0"])
        load_before = os.getloadavg()[0]
        for name, run in (("offline", replay_bag), ("via DDS (node process)", replay_bag_via_dds)):
            start = time.perf_counter()
            summary = run(bag, Path(tmp) / name.split()[0], ReplayOptions(progress=False))
            wall = time.perf_counter() - start
            rows.append(f"| {name} | {summary.processed} | {summary.lost} | {wall:.1f} | {summary.processed / wall:.1f} |")
            print(rows[-1], flush=True)
        load_after = os.getloadavg()[0]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=DOC.parent).stdout.strip()
    body = "\n".join([
        "## Bag replay throughput (bench/bench_replay.py)",
        "",
        f"`glopro replay` over a simulated bag of {args.duration:g} s at {args.fps:g} Hz ({args.people} people, "
        "keypoint input, markers with mesh), offline (pipeline in-process) and `--via-dds` (the node as a child "
        "process, fed lock-step over DDS). Wall clock of the whole call, start-up included.",
        "",
        "| replay | frames processed | frames lost | wall (s) | frames/s |",
        "|---|---:|---:|---:|---:|",
        *rows,
        "",
        f"Machine: `nproc` {os.cpu_count()}, {cpu_model()}; torch {torch.__version__}, 1 thread; 1-min load average "
        f"{load_before:.1f} before, {load_after:.1f} after (other jobs share this CPU); commit {commit}.",
        "",
        "Rerun: `.venv/bin/python bench/bench_replay.py` (options `--duration`, `--fps`, `--people`).",
    ])
    write_section(DOC, "bench_replay", body)
    print(f"wrote the bench_replay section of {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
