"""Evaluate image-only, constant-velocity, GloPro without residual and GloPro on held-out simulated sequences.

Held out twice: the people move with CMU clips the models never trained on (TEST_SPLIT) and the
sequences use seeds >= 10000 (training used seeds below 10000). Writes a Markdown report.

    python -m glopro_ros.tools.evaluate_filters --out docs/results.md
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict

import numpy as np
import torch
from scipy.stats import chi2

from glopro_ros.core import metrics as M
from glopro_ros.core.body_model import BodyModel
from glopro_ros.core.fusion import DEFAULT_FUSION_WEIGHTS, load_filter
from glopro_ros.core.mocap import TEST_SPLIT, load_split
from glopro_ros.core.motion_model import load_motion_model
from glopro_ros.core.sim_runner import Estimates, block_errors, run_image_only, run_tracker
from glopro_ros.core.simulate import SimConfig, SimSequence, simulate
from glopro_ros.core.so3 import exp_so3
from glopro_ros.core.tracker import MultiPersonTracker
from glopro_ros.tools.train_motion import Windows, build_motions, rollout

METHODS = {"image_only": "image-only", "cv": "constant-velocity KF", "glopro_nores": "GloPro without residual",
           "glopro": "GloPro"}
SINGLE_SEEDS, MULTI_SEEDS, OCCLUSION_SEEDS = 10000, 11000, 12000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="docs/results.md")
    parser.add_argument("--single", type=int, default=12, help="single-person sequences")
    parser.add_argument("--multi", type=int, default=4, help="three-person sequences")
    parser.add_argument("--occlusion", type=int, default=8, help="single-person sequences with 1-2 s occlusions")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--body-model", default="default")


def run_method(method: str, sim: SimSequence) -> Estimates:
    if method == "image_only":
        return run_image_only(sim)
    return run_tracker(sim, MultiPersonTracker(load_filter(method)))


def joints(body: BodyModel, betas: np.ndarray, pose_rot: np.ndarray, root_rot: np.ndarray,
           root_pos: np.ndarray) -> np.ndarray:
    t = lambda x: torch.as_tensor(x, dtype=torch.float64)  # noqa: E731
    j, _ = body.forward_joints(t(betas), t(pose_rot), t(root_rot), t(root_pos))
    return j.numpy()


def runs(mask: np.ndarray, min_len: int = 10) -> list[slice]:
    """Contiguous runs of True at least min_len long."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(int), [0]])))
    return [slice(a, b) for a, b in zip(edges[::2], edges[1::2]) if b - a >= min_len]


def pose_metrics(body: BodyModel, sim: SimSequence, est: Estimates, p: int, seg: slice) -> dict[str, float]:
    n = seg.stop - seg.start
    gt = joints(body, np.repeat(sim.gt_betas[p][None], n, 0), exp_so3(torch.as_tensor(sim.gt_body_pose[seg, p])).numpy(),
                sim.gt_root_rot[seg, p], sim.gt_root_pos[seg, p])
    pr = joints(body, est.betas[seg, p], est.pose[seg, p], est.root_rot[seg, p], est.root_pos[seg, p])
    fps = sim.config.fps
    return {"G-MPJPE": M.g_mpjpe(pr, gt), "W-MPJPE100": M.w_mpjpe(pr, gt), "WA-MPJPE100": M.wa_mpjpe(pr, gt),
            "PA-MPJPE": M.pa_mpjpe(pr, gt), "MPJPE": M.mpjpe(pr, gt),
            "root error": float(np.linalg.norm(pr[:, 0] - gt[:, 0], axis=-1).mean()),
            "RTE %": M.rte(pr[:, 0], gt[:, 0]), "accel": M.accel_error(pr, gt, fps), "jitter": M.jitter(pr, fps),
            "foot sliding": M.foot_sliding(pr, gt)}


def weighted_mean(rows: list[tuple[int, dict[str, float]]]) -> dict[str, float]:
    total = sum(n for n, _ in rows)
    keys = rows[0][1].keys()
    return {k: float(sum(n * r[k] for n, r in rows if np.isfinite(r[k])) / total) for k in keys}


def evaluate_accuracy(body, sims: list[SimSequence], methods: list[str]) -> tuple[dict, dict]:
    """Pose metrics on frames every method estimates; consistency of the filters on all their frames."""
    acc: dict[str, list] = defaultdict(list)
    cons: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for sim in sims:
        ests = {m: run_method(m, sim) for m in methods}
        for p in range(sim.num_people):
            common = sim.present[:, p] & np.logical_and.reduce([e.has[:, p] for e in ests.values()])
            for seg in runs(common):
                for m, e in ests.items():
                    acc[m].append((seg.stop - seg.start, pose_metrics(body, sim, e, p, seg)))
            for m, e in ests.items():
                b = block_errors(sim, e, p, None if m != "image_only" else sim.observed[:, p])
                cons[m]["root_pos"].append((b.root_pos, b.root_pos_cov))
                cons[m]["root_rot"].append((b.root_rot, b.root_rot_cov))
                cons[m]["pose"].append((b.pose.reshape(-1, 3), b.pose_cov.reshape(-1, 3, 3)))
                if m != "image_only":  # the two regimes the calibration tells apart
                    for label, frames in (("measured", sim.observed[:, p]), ("coasting", ~sim.observed[:, p])):
                        b = block_errors(sim, e, p, frames)
                        cons[m][f"root_pos, {label} frames"].append((b.root_pos, b.root_pos_cov))
    accuracy = {m: weighted_mean(rows) for m, rows in acc.items()}
    consistency = {m: {blk: M.consistency(np.concatenate([e for e, _ in v]), np.concatenate([c for _, c in v]))
                       for blk, v in blocks.items()} for m, blocks in cons.items()}
    return accuracy, consistency


def evaluate_occlusions(sims: list[SimSequence], fps: float) -> dict[str, float]:
    """Per occlusion interval: ID kept, covariance growth, error 0.5-1 s after reappearance vs unoccluded."""
    kept, growth, after, base, n = [], [], [], [], 0
    for sim in sims:
        est = run_tracker(sim, MultiPersonTracker(load_filter("glopro")))
        err = np.linalg.norm(est.root_pos[:, 0] - sim.gt_root_pos[:, 0], axis=-1)
        occ = sim.occluded[:, 0]
        far = np.convolve(occ.astype(float), np.ones(2 * int(1.5 * fps) + 1), mode="same") == 0
        ok = far & est.has[:, 0] & sim.present[:, 0]
        base.extend(err[ok])
        for seg in runs(occ, 1):
            a, b = seg.start, seg.stop
            if a == 0 or b + int(fps) >= sim.num_frames or not sim.present[b + int(fps), 0]:
                continue
            n += 1
            before, later = est.track_id[a - 1, 0], est.track_id[b + int(fps), 0]
            kept.append(before >= 0 and before == later)
            tr = np.trace(est.root_cov[:, 0, :3, :3], axis1=-2, axis2=-1)
            growth.append(np.sqrt(tr[b - 1] / tr[a - 1]))
            w = err[b + int(0.5 * fps): b + int(fps)]
            after.append(np.nanmean(w))
    return {"intervals": n, "id kept": float(np.mean(kept)) if kept else float("nan"),
            "std growth (x)": float(np.median(growth)) if growth else float("nan"),
            "root error 0.5-1 s after (m)": float(np.nanmean(after)) if after else float("nan"),
            "root error unoccluded (m)": float(np.mean(base))}


def evaluate_multi(sims: list[SimSequence]) -> dict[str, float]:
    """GloPro tracker on three-person sequences: ID switches (per true person) and tracks used."""
    switches, ids_used, people, counters = 0, 0, 0, defaultdict(int)
    for sim in sims:
        tracker = MultiPersonTracker(load_filter("glopro"))
        est = run_tracker(sim, tracker)
        switches += M.id_switches(est.track_id)
        for p in range(sim.num_people):
            ids_used += len(np.unique(est.track_id[est.track_id[:, p] >= 0, p]))
            people += 1
        for k in ("rejected_invalid", "rejected_stale", "gated_out", "resets"):
            counters[k] += getattr(tracker.counters, k)
    return {"sequences": len(sims), "people": people, "ID switches": switches,
            "track IDs per person": ids_used / max(people, 1), **counters}


def evaluate_motion(rest: np.ndarray, horizons: tuple[int, ...] = (1, 5, 15)) -> dict[str, dict[int, tuple[float, float]]]:
    """Motion models alone on the held-out clips: rollouts from clean histories (the models' raw variances,
    without the filter's calibration scales). Per model and horizon: root displacement RMSE (m) and the
    fraction inside the 95 % ellipsoid of the accumulated covariance."""
    windows = Windows(build_motions(TEST_SPLIT, rest, augment=False), 8, max(horizons))
    pos, rot, pose = windows.get(torch.arange(len(windows)))
    out = {}
    for name, kind in (("constant velocity", "cv"), ("GloPro (learned)", "learned")):
        model, rows = load_motion_model(None, kind), {}
        with torch.no_grad():
            for h, (e, cov, _, _) in enumerate(rollout(model, pos, rot, pose, (pos[:, :8], rot[:, :8], pose[:, :8])), 1):
                if h in horizons:
                    d2 = torch.linalg.vecdot(e, torch.linalg.solve(cov, e))
                    rows[h] = (float(e.square().sum(-1).mean().sqrt()), float((d2 <= chi2.ppf(0.95, 3)).float().mean()))
        out[name] = rows
    return out


def to_markdown(accuracy, consistency, occlusion, multi, motion, args, elapsed, cfg: SimConfig, argv) -> str:
    mm = ("G-MPJPE", "W-MPJPE100", "WA-MPJPE100", "PA-MPJPE", "MPJPE", "root error")
    lines = ["# Filter results on held-out simulated sequences", "",
             "Made by `python -m glopro_ros.tools.evaluate_filters " + " ".join(argv) + f"` in {elapsed / 60:.1f} min "
             "on the 2-core CPU (torch " + torch.__version__ + ").", "",
             f"Held out: people move with CMU clips never used in training ({', '.join(n for n, _, _ in TEST_SPLIT)}, "
             "the latter's last 30 %), sequences from seeds >= 10000 (training used < 10000). "
             f"{args.single} single-person sequences of {cfg.duration:.0f} s at {cfg.fps:.0f} Hz, moving robot camera, "
             f"SLAM drift, depth std {cfg.depth_rel_sigma:.0%} of depth vs {cfg.sigma_px:.0f} px in the image, "
             f"{cfg.outlier_prob:.0%} outliers, {cfg.miss_prob:.0%} missed detections, 1-2 s occlusions "
             "(see glopro_ros/core/simulate.py). Frames: where every method has an estimate (confirmed tracks).", "",
             "## World-frame accuracy (joints in mm, RTE in %, accel in m/s^2, jitter in m/s^3, sliding in mm/frame)",
             "", "| method | " + " | ".join(mm) + " | RTE % | accel | jitter | foot sliding |",
             "|---|" + "---|" * (len(mm) + 4)]
    for m, name in METHODS.items():
        a = accuracy[m]
        lines.append(f"| {name} | " + " | ".join(f"{1000 * a[k]:.1f}" for k in mm)
                     + f" | {a['RTE %']:.2f} | {a['accel']:.2f} | {a['jitter']:.1f} | {1000 * a['foot sliding']:.1f} |")
    lines += ["", "## Consistency (ANEES/dim ~ 1 and 95 % of frames inside the two-sided 95 % chi-square bounds "
              "when calibrated; NLL in nats per frame)", "",
              "| method | block | ANEES/dim | inside 95 % bounds | NLL |", "|---|---|---|---|---|"]
    for m, name in METHODS.items():
        for blk, c in consistency[m].items():
            lines.append(f"| {name} | {blk} | {c['anees_per_dim']:.2f} | {100 * c['in_bounds']:.1f} % | {c['nll']:.2f} |")
    lines += ["", "Image-only consistency is over frames with a measurement (its stated covariance, outliers "
              "included); pose is per joint (3-dof tangent). The filters' root position is also split into frames "
              "with a fused measurement and coasting frames (none: occluded, missed, outside the image).", "",
              "## Motion models alone (held-out clips, rollouts from clean 8-frame histories, raw variances)", "",
              "How far each prior carries a person by itself, as while coasting: root displacement error after "
              "h steps at 30 Hz and the share inside the 95 % ellipsoid of the summed step covariances (the filter "
              "scales these, see the checkpoint table).", "",
              "| model | " + " | ".join(f"RMSE {h} step{'s' * (h > 1)} (mm) | inside 95 % ({h})" for h in
                                      next(iter(motion.values()))) + " |",
              "|---|" + "---|---|" * len(next(iter(motion.values())))]
    for name, rows in motion.items():
        lines.append(f"| {name} | " + " | ".join(f"{1000 * r:.1f} | {100 * f:.1f} %" for r, f in rows.values()) + " |")
    lines += ["",
              f"## Occlusions (GloPro, {args.occlusion} single-person sequences with 1-2 s occlusions)", "",
              "| " + " | ".join(occlusion) + " |", "|" + "---|" * len(occlusion),
              "| " + " | ".join(f"{v:.3g}" for v in occlusion.values()) + " |", "",
              f"## Several people (GloPro tracker, {args.multi} sequences with 3 people)", "",
              "| " + " | ".join(multi) + " |", "|" + "---|" * len(multi),
              "| " + " | ".join(f"{v:.3g}" for v in multi.values()) + " |", "",
              "Association cost: the negative log-likelihood of the root position (Mahalanobis distance plus "
              "log-determinant), so a track whose covariance grew while coasting does not take a detection "
              "from a nearby person's tight track.", ""]
    return "\n".join(lines + checkpoint_facts())


def checkpoint_facts() -> list[str]:
    """What the committed fusion checkpoint says about its own training (tools/train_residual.py)."""
    ckpt = torch.load(DEFAULT_FUSION_WEIGHTS, map_location="cpu", weights_only=True)
    lines = ["## The committed fusion checkpoint", "", f"Made by `{ckpt['command']}`.", "",
             "| variant | block | motion variance scale after an update | while coasting |", "|---|---|---|---|"]
    for variant, scales in ckpt["variance_scale"].items():
        for block, v in scales.items():
            lines.append(f"| {variant} | {block} | {v:.3g} | {ckpt['coast_variance_scale'][variant][block]:.3g} |")
    rounds = ", ".join(f"{1000 * e:.1f}" for e in ckpt["closed_loop_validation_root_error_per_round"])
    lines += ["", "Closed-loop root error on the training validation sequences (seeds 2000+, training clips): "
              f"{1000 * ckpt['closed_loop_validation_root_error_no_residual']:.1f} mm without a residual; "
              f"with each fitted residual (fit, then DAgger rounds): {rounds} mm. "
              + ("None was better: the committed GloPro filter runs without a residual (its rows above equal "
                 "GloPro without residual)." if ckpt["residual"] is None else
                 f"The committed residual: {1000 * ckpt['closed_loop_validation_root_error']:.1f} mm."), ""]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    body = BodyModel(None if args.body_model == "default" else args.body_model, device="cpu")
    clips = load_split(TEST_SPLIT, 30.0, body.rest_joints(torch.zeros(1, 10))[0].numpy())
    cfg = SimConfig()
    single = [simulate(clips, cfg, SINGLE_SEEDS + i) for i in range(args.single)]
    accuracy, consistency = evaluate_accuracy(body, single, list(METHODS))
    print(f"accuracy done ({time.time() - t0:.0f} s)", flush=True)
    occ_cfg = SimConfig(occlusions_per_person=1.5)
    occlusion = evaluate_occlusions([simulate(clips, occ_cfg, OCCLUSION_SEEDS + i) for i in range(args.occlusion)],
                                    cfg.fps)
    multi = evaluate_multi([simulate(clips, SimConfig(num_people=3), MULTI_SEEDS + i) for i in range(args.multi)])
    motion = evaluate_motion(body.rest_joints(torch.zeros(1, 10))[0].numpy())
    text = to_markdown(accuracy, consistency, occlusion, multi, motion, args, time.time() - t0, cfg,
                       sys.argv[1:] if argv is None else argv)
    with open(args.out, "w") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
