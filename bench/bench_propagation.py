#!/usr/bin/env python3
"""Benchmark: 24-joint covariance propagation for 1, 10 and 50 people on this machine.

Prints a markdown table (median of repeats; first order is the production path, unscented for
comparison) for 1 torch thread and for torch's default thread count (small batched ops suffer
badly from OpenMP spin-waits when the CPU is shared, so both are shown) and, with --write,
replaces its own section in docs/benchmarks.md and saves docs/bench_propagation.png.
Usage: .venv/bin/python bench/bench_propagation.py [--repeats R] [--write]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from glopro_ros.core.body_model import BodyModel
from glopro_ros.core.gaussian_state import GaussianBodyState
from glopro_ros.core.propagation import propagate_joints, propagate_joints_unscented
from glopro_ros.core.so3 import exp_so3

REPO = Path(__file__).resolve().parents[1]


def make_states(b: int) -> GaussianBodyState:
    g = torch.Generator().manual_seed(b)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    a = r(b, 85, 85)
    cov = 1e-3 * (a @ a.mT) / 85 + 1e-4 * torch.eye(85, dtype=torch.float64)  # full, correlated
    return GaussianBodyState(r(b, 10), 0.4 * r(b, 23, 3), exp_so3(r(b, 3)), r(b, 3), cov, "map")


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    model = BodyModel(device="cpu")
    rows, per_person = [], {}
    default_threads = torch.get_num_threads()
    for threads in sorted({1, default_threads}):
        torch.set_num_threads(threads)
        per_person[threads] = []
        for b in (1, 10, 50):
            states = make_states(b)
            first = median_ms(lambda: propagate_joints(model, states), args.repeats)
            unsc = median_ms(lambda: propagate_joints_unscented(model, states),
                             max(5, args.repeats // 5))
            per_person[threads].append(first / b)
            rows.append(f"| {threads} | {b} | {first:.2f} | {first / b:.3f} | {unsc:.1f} "
                        f"| {unsc / b:.2f} |")
    torch.set_num_threads(default_threads)
    load = os.getloadavg()[0]
    table = "\n".join([
        "| torch threads | people | first order total (ms) | first order per person (ms) "
        "| unscented total (ms) | unscented per person (ms) |",
        "|---:|---:|---:|---:|---:|---:|", *rows])
    at10 = {t: v[1] for t, v in per_person.items()}
    machine = (f"Machine: `nproc` {len(os.sched_getaffinity(0))}, {cpu_model()}; "
               f"torch {torch.__version__}, float64, CPU; 1-min load average at run time "
               f"{load:.1f} (other jobs share this CPU). Target < 2 ms per person at 10 people: "
               + ", ".join(f"{t} thread(s) {v:.3f} ms ({'met' if v < 2 else 'NOT met'})"
                           for t, v in at10.items()) + ".")
    print(table)
    print()
    print(machine)
    if args.write:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from bench.markdown_section import write_section
        cmd = "`.venv/bin/python bench/bench_propagation.py --write`"
        body = ("## Joint covariance propagation (core)\n\n"
                "Propagation of a full 85x85 state covariance to 24 joint means and 3x3 "
                "covariances (`glopro_ros.core.propagation`), median of repeats.\n\n"
                f"{table}\n\n{machine}\n\n"
                "These are many tiny tensor ops: with several torch threads on a busy CPU, OpenMP workers spin-wait for descheduled siblings and times explode, "
                "so processes that run the core (node, replay) should use "
                "`torch.set_num_threads(1)` or `OMP_NUM_THREADS=1` unless batches are large.\n\n"
                f"Rerun: {cmd}\n\n![](bench_propagation.png)\n")
        write_section(REPO / "docs" / "benchmarks.md", "bench_propagation", body, "Benchmarks")
        fig, ax = plt.subplots(figsize=(5, 3.2))
        for t, v in per_person.items():
            ax.plot([1, 10, 50], v, "o-", label=f"first order, {t} torch thread(s)")
        ax.axhline(2.0, color="r", ls="--", label="target 2 ms/person")
        ax.set(xscale="log", yscale="log", xlabel="people in batch", ylabel="ms per person",
               title="24-joint covariance propagation (CPU)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(REPO / "docs" / "bench_propagation.png", dpi=90)


if __name__ == "__main__":
    main()
