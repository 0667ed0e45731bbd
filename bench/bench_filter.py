"""Benchmark: GloPro filter step time per person for 1, 10 and 50 people (excluding joint propagation).

Times one tracker step (motion prior, association, Kalman update, residual, track management) and
the bare filter (predict + update) of GloPro, GloPro without residual (the node's default) and the
constant-velocity baseline on synthetic detections of people walking on a grid, with the
committed weights, single-threaded or as given. Each configuration runs `--repeats` times, the
repeats interleaved with the other configurations (the CPU is shared: a burst of other work then
spreads over all of them), after warm-up steps; the median is over every timed step. Writes
bench/filter_step_time.png and prints a Markdown section for docs/benchmarks.md, with the load
average before and after the run.

    .venv/bin/python -m bench.bench_filter --threads 1 --write-docs docs/benchmarks.md
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bench.markdown_section import write_section
from glopro_ros.core.fusion import Measurement, init_state, load_filter
from glopro_ros.core.tracker import MultiPersonTracker

F64 = torch.float64
FPS = 30.0
WARMUP = 10  # steps before timing: first calls, track confirmation
VARIANTS = ("glopro", "glopro_nores", "cv")


def detections(n: int, t: int, rng: np.random.Generator) -> Measurement:
    grid = np.stack(np.meshgrid(np.arange(10), np.arange(5)), -1).reshape(-1, 2)[:n] * 2.0
    pos = np.column_stack([grid + [t / FPS, 0.0], np.ones(n)]) + rng.normal(0, 0.03, (n, 3))
    eye = lambda d: torch.eye(d, dtype=F64).repeat(n, 1, 1)  # noqa: E731
    return Measurement(torch.as_tensor(pos), 0.05**2 * eye(3), eye(3), 0.01 * eye(3),
                       torch.eye(3, dtype=F64).repeat(n, 23, 1, 1), 0.01 * torch.eye(3, dtype=F64).repeat(n, 23, 1, 1),
                       torch.zeros(n, 10, dtype=F64), 0.1 * eye(10))


def time_tracker(variant: str, n: int, steps: int) -> list[float]:
    rng = np.random.default_rng(0)
    tracker = MultiPersonTracker(load_filter(variant))
    out = []
    for t in range(steps + WARMUP):
        d = detections(n, t, rng)
        t0 = time.perf_counter()
        tracker.step(t / FPS, d)
        if t >= WARMUP:
            out.append(time.perf_counter() - t0)
    return out


def time_filter(variant: str, n: int, steps: int) -> list[float]:
    rng = np.random.default_rng(0)
    filt = load_filter(variant)
    state = init_state(detections(n, 0, rng), filt.history)
    out = []
    for t in range(1, steps + WARMUP + 1):
        d = detections(n, t, rng)
        t0 = time.perf_counter()
        state, _ = filt.update(filt.predict(state), d)
        if t > WARMUP:
            out.append(time.perf_counter() - t0)
    return out


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=100, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--people", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--write-docs", default="", help="markdown file to put this section in (docs/benchmarks.md)")
    parser.add_argument("--figure", default=str(Path(__file__).with_name("filter_step_time.png")))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    configs = [(variant, n) for variant in VARIANTS for n in args.people]
    samples: dict[tuple[str, int], tuple[list[float], list[float]]] = {c: ([], []) for c in configs}
    for _ in range(args.repeats):
        for variant, n in configs:
            samples[variant, n][0].extend(time_tracker(variant, n, args.steps))
            samples[variant, n][1].extend(time_filter(variant, n, args.steps))
    load_after = os.getloadavg()
    rows = []
    for variant, n in configs:
        tr, fi = (statistics.median(x) * 1e3 for x in samples[variant, n])
        rows.append((variant, n, tr, tr / n, fi, fi / n))
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    load = "Load average (1, 5, 15 min) {:.2f}, {:.2f}, {:.2f} before the run and {:.2f}, {:.2f}, {:.2f} after it"
    lines = ["## GloPro filter step time (bench/bench_filter.py)", "",
             f"Machine: {nproc} cores, {cpu_model()}, torch {torch.__version__}, {args.threads} torch thread(s); "
             f"median over {args.repeats} x {args.steps} steps (repeats interleaved, after {WARMUP} warm-up steps); "
             "excludes joint propagation. Rerun: "
             f"`.venv/bin/python -m bench.bench_filter --threads {args.threads} --write-docs docs/benchmarks.md`. "
             "Figure: bench/filter_step_time.png.", "",
             load.format(*load_before, *load_after) + " (other jobs share this CPU; step times grow with the load).",
             "",
             "| filter | people | tracker step (ms) | per person (ms) | predict+update (ms) | per person (ms) |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {v} | {n} | {a:.2f} | {b:.3f} | {c:.2f} | {d:.3f} |" for v, n, a, b, c, d in rows]
    met = lambda ms: "met" if ms < 1.0 else "NOT met"  # noqa: E731
    lines += [""] + [f"Target < 1 ms per person ({v}, predict+update / tracker step): " + "; ".join(
        f"{n} {'person' if n == 1 else 'people'} {d:.3f} / {b:.3f} ms ({met(d)} / {met(b)})"
        for v2, n, a, b, c, d in rows if v2 == v) + "." for v in VARIANTS[:2]] + [""]
    text = "\n".join(lines)
    print(text)
    if args.write_docs:
        write_section(Path(args.write_docs), "bench_filter", text, "Benchmarks")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for variant in VARIANTS:
        r = [x for x in rows if x[0] == variant]
        ax.plot([x[1] for x in r], [x[3] for x in r], "o-", label=f"{variant}: tracker step")
        ax.plot([x[1] for x in r], [x[5] for x in r], "s--", label=f"{variant}: predict+update")
    ax.axhline(1.0, color="grey", lw=0.8, ls=":", label="target 1 ms")
    ax.set(xscale="log", yscale="log", xlabel="people", ylabel="ms per person per step",
           title=f"filter step time, {nproc}-core CPU, {args.threads} thread(s)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.figure, dpi=120)
    return 0


if __name__ == "__main__":
    sys.exit(main())
