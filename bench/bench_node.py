"""End-to-end benchmark of the glopro node through DDS: latency and throughput, images and keypoints.

A player process publishes frames stamped with the wall clock at publish; this process listens to
the node's ``humans`` and takes latency = receive time - header stamp (same machine, same clock), so
it covers DDS in, the worker's queue wait, TF, perception/lifting, tracking, messages and DDS out.
Each scenario runs twice: at the target input rate (latency as deployed) and faster than the node
can follow (throughput = output messages per second; the node keeps only the newest frame).

Scenarios (640x480): images of 1 person (an HSR frame) and 5 people (the group photo letterboxed,
node max_people:=5); simulated BlazePose-33 detections of 1 and 5 people
(test/players/keypoint_player.py --steady: the longest run with all of them detected, played back
and forth). Device cpu; node defaults except the parameters of each --config.

    python -m bench.bench_node [--play 15] [--write docs/benchmarks.md]
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
KEYPOINT_PLAYER = REPO / "test" / "players" / "keypoint_player.py"
TARGETS = {"image_hz": 15.0, "keypoints_hz": 30.0, "p95_ms": 100.0}
WARMUP_S = 2.0  # first outputs include lazy imports and the first model calls
# Reliable images, the node's defaults (best-effort images), and markers for every frame (what marker_rate saves).
DEFAULT_CONFIGS = ["image_qos:=reliable", "", "image_qos:=reliable,marker_rate:=0.0"]


@dataclass
class Scenario:
    name: str
    mode: str  # node input
    people: int
    rate: float  # Hz
    kind: str  # "latency" (target rate) or "throughput" (flooding)

    def player(self, play: float, image_qos: str) -> list[str]:
        if self.mode == "image":
            return ["-m", "bench.image_scene_player", "--people", str(self.people), "--rate", str(self.rate),
                    "--play", str(play), "--qos", image_qos]
        seed = {1: 0, 5: 2}[self.people]
        return [str(KEYPOINT_PLAYER), "--people", str(self.people), "--seed", str(seed), "--rate", str(self.rate),
                "--duration", "10", "--no-truth", "--clean", "--steady", str(self.people), "--play", str(play)]


SCENARIOS = [Scenario(f"{mode} {people} {'person' if people == 1 else 'people'}", mode, people, rate, kind)
             for mode, (target, flood) in (("image", (15.0, 60.0)), ("keypoints", (30.0, 120.0)))
             for people in (1, 5) for kind, rate in (("latency", target), ("throughput", flood))]


@dataclass
class Result:
    scenario: Scenario
    outputs: int
    hz: float
    median_ms: float
    p95_ms: float
    dropped: int  # frames the node replaced before processing (diagnostics)
    received_hz: float  # frames that reached the node's callback per second (processed + dropped)
    people: float  # mean people per output


class Listener:
    """humans + diagnostics in this process, with receive times."""

    def __init__(self, env: dict[str, str]) -> None:
        from diagnostic_msgs.msg import DiagnosticArray

        from glopro_ros.msg import HumanStateArray
        from glopro_ros.ros.background_node import BackgroundNode

        self.ros = BackgroundNode("bench_node_listener", env)
        self.rows: list[tuple[float, float, int]] = []  # (receive s, stamp s, people)
        self.diagnostics: dict[str, str] = {}
        self.ros.node.create_subscription(HumanStateArray, "humans", self._on_humans, 100)
        self.ros.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)

    def _on_humans(self, msg) -> None:
        self.rows.append((time.time(), msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9, len(msg.humans)))

    def _on_diagnostics(self, msg) -> None:
        self.diagnostics = {v.key: v.value for v in msg.status[0].values}

    def close(self) -> None:
        self.ros.close()


def run_scenario(listener: Listener, scenario: Scenario, play: float, env: dict[str, str], log: Path,
                 image_qos: str) -> Result:
    listener.rows.clear()
    before = {k: int(listener.diagnostics.get(k, 0)) for k in ("dropped", "processed")}
    started = time.monotonic()
    with log.open("w") as out:
        subprocess.run([sys.executable, *scenario.player(play, image_qos)], env=env, cwd=REPO, stdout=out,
                       stderr=subprocess.STDOUT, timeout=play + 120, check=True)
    played = time.monotonic() - started
    time.sleep(2.0)  # outputs in flight; one diagnostics period
    delta = {k: int(listener.diagnostics.get(k, 0)) - v for k, v in before.items()}
    rows = np.array(listener.rows) if listener.rows else np.zeros((0, 3))
    rows = rows[rows[:, 1] >= rows[0, 1] + WARMUP_S] if len(rows) else rows
    if len(rows) < 3:
        raise RuntimeError(f"{scenario.name}: only {len(rows)} outputs; see {log}")
    latency = (rows[:, 0] - rows[:, 1]) * 1e3
    hz = (len(rows) - 1) / (rows[-1, 1] - rows[0, 1])
    return Result(scenario, len(rows), float(hz), float(np.median(latency)), float(np.quantile(latency, 0.95)),
                  delta["dropped"], (delta["dropped"] + delta["processed"]) / min(play, played),
                  float(rows[:, 2].mean()))


def start_node(mode: str, env: dict[str, str], log: Path, profile: Path | None = None,
               params: list[str] | None = None) -> subprocess.Popen:
    """The node as deployed, or under bench/profile_node.py (cProfile of the worker) to `profile`."""
    if profile is not None:
        env = {**env, "GLOPRO_PROFILE_OUT": str(profile)}
    program = [str(REPO / "bench" / "profile_node.py")] if profile is not None else ["-m", "glopro_ros.ros.node"]
    args = [*program, "--ros-args", "-p", "device:=cpu", "-p", f"input:={mode}",
            "-p", "max_people:=5", *[a for p in params or [] for a in ("-p", p)]]
    return subprocess.Popen([sys.executable, *args], env=env, cwd=REPO, stdout=log.open("w"), stderr=subprocess.STDOUT)


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return f"{os.cpu_count()} cores ({model}), load average {load} (1/5/15 min) at the end of the run"


def rerun_command(tables: list[tuple[list[str], list[Result]]], play: float, profile: bool) -> str:
    """The command line that measures the same configurations again."""
    configs = " ".join(f"--config {','.join(params)}" if params else "--config ''" for params, _ in tables)
    flag = "" if profile else " --no-fastdds-profile"
    return f".venv/bin/python -m bench.bench_node --play {play:g} {configs}{flag} --write docs/benchmarks.md"


def markdown(tables: list[tuple[list[str], list[Result]]], play: float, profile: bool) -> str:
    transport = ("every process with config/fastdds_large_data.xml (README, \"Images between processes\")"
                 if profile else "its defaults (no profile)")
    lines = ["## Node end to end through DDS (bench/bench_node.py)", "",
             f"Machine: {machine()}; other agents' jobs share it, so figures vary between runs.",
             "Latency = receive time of `humans` - its header stamp (the player stamps each frame with its publish",
             "time; same clock). Throughput = outputs per second while the player floods the node (the node keeps",
             "only the newest frame; `dropped` counts replaced frames; `reached node` = processed + dropped per",
             f"second of play: frames that DDS delivered). {play:.0f} s per row, first {WARMUP_S:.0f} s",
             "discarded. Images: the HSR frame (1 person) and group_photo.jpg letterboxed to 640x480 (node",
             "`max_people:=5`, 5 people detected), published with the QoS the node's `image_qos` asks for (best",
             "effort by default). Keypoints: simulated BlazePose-33 detections (test/players/keypoint_player.py `--steady`).",
             "Device cpu; node defaults except each configuration's parameters; player, node and listener share",
             f"the machine's cores. Fast DDS: {transport}; discovery on localhost.",
             f"Rerun: `{rerun_command(tables, play, profile)}`"]
    for params, results in tables:
        name = ", ".join(f"`{p}`" for p in params) or "node defaults (markers with mesh)"
        lines += ["", f"Configuration: {name}", "",
                  "| input | people | run | input Hz | reached node Hz | output Hz | latency median ms | latency p95 ms "
                  "| dropped | people/output |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in results:
            s = r.scenario
            lines.append(f"| {s.mode} | {s.people} | {s.kind} | {s.rate:.0f} | {r.received_hz:.1f} | {r.hz:.1f} | "
                         f"{r.median_ms:.0f} | "
                         f"{r.p95_ms:.0f} | {r.dropped} | {r.people:.1f} |")
    lines += ["", f"Targets: images >= {TARGETS['image_hz']:.0f} Hz (1 person), keypoints >= "
              f"{TARGETS['keypoints_hz']:.0f} Hz, p95 latency < {TARGETS['p95_ms']:.0f} ms."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--play", type=float, default=15.0, help="seconds per run")
    parser.add_argument("--only", default="", help="run only scenarios whose 'mode people kind' contains this")
    parser.add_argument("--profile", action="store_true",
                        help="profile the node's worker (cProfile, bench/profile_node.py); stats in the log folder")
    parser.add_argument("--config", action="append",
                        help="node parameters of one configuration, comma-separated NAME:=VALUE ('' = defaults); "
                             "repeatable; default: the three of docs/benchmarks.md")
    parser.add_argument("--no-fastdds-profile", action="store_true",
                        help="Fast DDS defaults instead of config/fastdds_large_data.xml (what best-effort images need)")
    parser.add_argument("--write", type=Path, help="append/replace this section in a markdown file")
    args = parser.parse_args(argv)
    from glopro_ros.ros.isolation import isolated_ros_environment, shm_zombies_removed

    logs = Path(tempfile.mkdtemp(prefix="bench_node_"))
    env = isolated_ros_environment(logs / "ros")
    if args.no_fastdds_profile:
        env.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
        env.pop("FASTRTPS_DEFAULT_PROFILES_FILE", None)
    listener = Listener(env)
    configs = [[p for p in c.split(",") if p] for c in (args.config or DEFAULT_CONFIGS)]
    tables = []
    try:
        with shm_zombies_removed():
            for params in configs:
                tables.append((params, run_config(listener, params, args, env, logs)))
    finally:
        listener.close()
    text = markdown(tables, args.play, not args.no_fastdds_profile)
    print(text)
    print(f"logs: {logs}")
    if args.write:
        from bench.markdown_section import write_section

        write_section(args.write, "bench_node", text)
    return 0


def run_config(listener: Listener, params: list[str], args: argparse.Namespace, env: dict[str, str],
               logs: Path) -> list[Result]:
    """All chosen scenarios with one node configuration (one node per input mode)."""
    results = []
    tag = "_".join(p.replace(":=", "-") for p in params) or "defaults"
    # The camera publishes as the node subscribes (as a matching driver would): best effort or reliable.
    image_qos = next((p.split(":=", 1)[1] for p in params if p.startswith("image_qos:=")), "sensor_data")
    for mode in ("image", "keypoints"):
        chosen = [s for s in SCENARIOS if s.mode == mode and args.only in f"{s.mode} {s.people} {s.kind}"]
        if not chosen:
            continue
        node = start_node(mode, env, logs / f"node_{mode}_{tag}.log",
                          logs / f"node_{mode}_{tag}.prof" if args.profile else None, params)
        listener.diagnostics = {}  # counters of the previous node are not this one's
        try:
            for scenario in chosen:
                result = run_scenario(listener, scenario, args.play, env,
                                      logs / f"player_{mode}_{scenario.people}_{scenario.kind}_{tag}.log", image_qos)
                results.append(result)
                print(f"[{tag}] {scenario.name:18s} {scenario.kind:10s} in {scenario.rate:4.0f} Hz  out {result.hz:5.1f} Hz"
                      f"  latency median {result.median_ms:6.1f} ms  p95 {result.p95_ms:6.1f} ms  "
                      f"dropped {result.dropped}  reached {result.received_hz:.1f} Hz  people {result.people:.1f}", flush=True)
        finally:
            node.terminate()
            node.wait(timeout=20)
    return results


if __name__ == "__main__":
    sys.exit(main())
