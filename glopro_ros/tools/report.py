"""Self-contained HTML report of an evaluation: metric tables and matplotlib plots as embedded PNGs.

One file that opens anywhere (no scripts, no external resources), so it can be attached to an issue
or archived next to the bag. Numbers come from the metrics dict evaluate() returns, formatted by
``fmt``, so the tables show exactly what metrics.json holds.
"""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the headless backend
import numpy as np  # noqa: E402
from scipy.stats import chi2  # noqa: E402

from glopro_ros.core import metrics  # noqa: E402
from glopro_ros.tools.evaluate import Person, Sequence, root_errors  # noqa: E402

UNITS = {"mpjpe": "mm", "pa_mpjpe": "mm", "w_mpjpe100": "mm", "wa_mpjpe100": "mm", "g_mpjpe": "mm",
         "rte_percent": "%", "accel_error": "m/s²", "jitter": "m/s³", "foot_sliding_mm": "mm/frame"}
MAX_SEQUENCE_PLOTS = 4  # per-sequence figures for the first sequences only: the report stays small


def fmt(value: object) -> str:
    """How every number appears in the report."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return "–" if not np.isfinite(value) else f"{value:.3f}"
    return html.escape(str(value))


def _png(fig: plt.Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def _table(rows: dict[str, dict[str, object]], title: str) -> str:
    keys = list(dict.fromkeys(k for row in rows.values() for k in row))
    head = "".join(f"<th>{html.escape(k)}{' (' + UNITS[k] + ')' if k in UNITS else ''}</th>" for k in keys)
    body = "".join(f"<tr><th>{html.escape(name)}</th>" + "".join(f"<td>{fmt(row.get(k, ''))}</td>" for k in keys)
                   + "</tr>" for name, row in rows.items())
    return f"<h3>{html.escape(title)}</h3><div class='scroll'><table><tr><th></th>{head}</tr>{body}</table></div>"


def top_down(seq: Sequence) -> str:
    fig, ax = plt.subplots(figsize=(6, 5))
    for c, person in enumerate(seq.person_ids):
        path = seq.gt_root[:, c]
        line, = ax.plot(path[:, 0], path[:, 1], "-", lw=1.5, label=f"person {person} (truth)")
        for p in seq.people:
            if p.person_id == person:
                ax.plot(p.pred_joints[:, 0, 0], p.pred_joints[:, 0, 1], "--", color=line.get_color(), lw=1,
                        label=f"person {person} (estimate)")
    if len(seq.robot_path):
        ax.plot(seq.robot_path[:, 0], seq.robot_path[:, 1], "k:", lw=1.5, label="robot (TF)")
    ax.set(xlabel="x (m)", ylabel="y (m)", title=f"{seq.name}: top-down trajectories")
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(fontsize=7)
    return _png(fig)


def errors_over_time(seq: Sequence) -> str:
    """Pelvis error per axis with the estimate's ±2σ band, and per-frame MPJPE."""
    fig, axes = plt.subplots(4, 1, figsize=(8, 8), sharex=True)
    for p in seq.people:
        t = p.stamps - seq.stamps[0]
        err, cov, _, _ = root_errors(p)
        for axis, ax in enumerate(axes[:3]):
            sigma = 2.0 * np.sqrt(np.clip(cov[:, axis, axis], 0.0, None))
            line, = ax.plot(t, err[:, axis], lw=1, label=f"person {p.person_id}")
            ax.fill_between(t, -sigma, sigma, color=line.get_color(), alpha=0.2)
        frame_mpjpe = 1e3 * np.linalg.norm((p.pred_joints - p.pred_joints[:, :1]) - (p.gt_joints - p.gt_joints[:, :1]),
                                           axis=-1).mean(-1)
        axes[3].plot(t, frame_mpjpe, lw=1, label=f"person {p.person_id}")
    for axis, ax in enumerate(axes[:3]):
        ax.set_ylabel(f"pelvis {'xyz'[axis]} error (m)")
    axes[0].set_title(f"{seq.name}: pelvis error (truth − estimate) with ±2σ bands")
    axes[3].set(ylabel="MPJPE (mm)", xlabel="time (s)")
    axes[0].legend(fontsize=7)
    return _png(fig)


def nees_histograms(people: list[Person]) -> str:
    """NEES of each 3-d block against the χ²(3) density a calibrated estimate follows."""
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    blocks = {"root position": ([], []), "root orientation": ([], []), "joints": ([], [])}
    for p in people:
        pos_err, pos_cov, rot_err, rot_cov = root_errors(p)
        for name, (err, cov) in {"root position": (pos_err, pos_cov), "root orientation": (rot_err, rot_cov),
                                 "joints": (p.gt_joints - p.pred_joints, p.joint_cov)}.items():
            blocks[name][0].append(err.reshape(-1, 3))
            blocks[name][1].append(cov.reshape(-1, 3, 3))
    x = np.linspace(0.0, 20.0, 200)
    for ax, (name, (errs, covs)) in zip(axes, blocks.items()):
        values = metrics.nees(np.concatenate(errs), np.concatenate(covs))
        ax.hist(np.clip(values, 0, 20), bins=40, range=(0, 20), density=True, alpha=0.6, label="NEES (clipped at 20)")
        ax.plot(x, chi2.pdf(x, 3), "k-", lw=1.2, label="χ²(3)")
        lo, hi = chi2.ppf([0.025, 0.975], 3)
        ax.axvline(lo, color="gray", ls=":")
        ax.axvline(hi, color="gray", ls=":")
        ax.set(title=f"{name}: mean NEES/3 = {values.mean() / 3:.2f}", xlabel="NEES")
    axes[0].legend(fontsize=7)
    return _png(fig)


STYLE = """body{font-family:sans-serif;margin:1.5em;max-width:1200px}table{border-collapse:collapse;font-size:12px}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}.scroll{overflow-x:auto}img{max-width:100%}"""


def render(seqs: list[Sequence], result: dict) -> str:
    """The whole report as one HTML string."""
    people = [p for s in seqs for p in s.people]
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>GloPro evaluation</title>"
             f"<style>{STYLE}</style></head><body><h1>GloPro evaluation</h1>",
             "<p>Metrics as DESIGN.md defines them (glopro_ros.core.metrics); errors in mm unless stated. "
             "Consistency: ANEES per dimension (≈1 when calibrated), share of frames inside the two-sided 95% "
             "χ² bounds, Gaussian NLL (nats).</p>",
             _table({"overall": result["overall"]}, "Overall"),
             _table({name: s["summary"] for name, s in result["sequences"].items()}, "Per sequence"),
             "<h2>Consistency</h2>", nees_histograms(people)]
    for seq in seqs:
        entry = result["sequences"][seq.name]
        parts.append(f"<h2>Sequence {html.escape(seq.name)}</h2>")
        parts.append(_table({f"person {k}": v for k, v in entry["people"].items()}, "Per person"))
        if seqs.index(seq) < MAX_SEQUENCE_PLOTS and seq.people:
            parts += [top_down(seq), errors_over_time(seq)]
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(path: Path, seqs: list[Sequence], result: dict) -> None:
    Path(path).write_text(render(seqs, result), encoding="utf-8")
