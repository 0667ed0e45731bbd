"""`glopro evaluate BAG [BAG ...]`: DESIGN.md's metrics for replayed bags (/humans against /ground_truth).

Each bag is one sequence. Per frame, confirmed and occluded tracks (what consumers act on; tentative
and lost ones are left out) are matched to the true people by pelvis distance (Hungarian, gated);
the matches give ID switches, recall and false positives, and each true person's matched frames
give the pose, trajectory, smoothness and consistency metrics, all computed by
glopro_ros.core.metrics. Pose and trajectory metrics use all matched frames of a person; the
temporal ones (acceleration, jitter, foot sliding) use each contiguous run and are frame-weighted.
Overall numbers are frame-weighted over people and sequences; consistency pools the errors.
Writes metrics.json and report.html (glopro_ros.tools.report) into --out.

Exit codes: 0 done; 2 bad arguments; 3 unreadable bag; 4 no /humans in a bag; 5 no /ground_truth in
a bag; 6 no frame where an estimate matched a true person.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rosbags.highlevel import AnyReader
from scipy.optimize import linear_sum_assignment
from scipy.spatial.transform import Rotation

from glopro_ros.core import metrics
from glopro_ros.tools.bag_typestore import glopro_typestore

EXIT_OK, EXIT_USAGE, EXIT_UNREADABLE, EXIT_NO_HUMANS, EXIT_NO_GROUND_TRUTH, EXIT_NO_MATCHES = 0, 2, 3, 4, 5, 6
STATUS_TENTATIVE, STATUS_LOST = 0, 3
MIN_RUN = 4  # frames a contiguous run needs for the temporal metrics (third differences)
MM = ("mpjpe", "pa_mpjpe", "w_mpjpe100", "wa_mpjpe100", "g_mpjpe")  # reported in mm


class EvaluationError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Person:
    """One true person's matched frames (n of them)."""

    person_id: int
    frames: np.ndarray  # (n,) frame indices into the sequence
    stamps: np.ndarray  # (n,) s
    track_ids: np.ndarray  # (n,)
    gt_joints: np.ndarray  # (n, 24, 3)
    pred_joints: np.ndarray  # (n, 24, 3)
    joint_cov: np.ndarray  # (n, 24, 3, 3)
    gt_root_rot: np.ndarray  # (n, 3, 3)
    pred_root_rot: np.ndarray  # (n, 3, 3)
    root_cov: np.ndarray  # (n, 6, 6) ROS convention: [position, rotation about the world axes]


@dataclass
class Sequence:
    name: str
    stamps: np.ndarray  # (T,) ground-truth stamps
    fps: float
    person_ids: np.ndarray  # (P,)
    present: np.ndarray  # (T, P) bool
    assigned: np.ndarray  # (T, P) matched track id, -1 where none
    gt_root: np.ndarray  # (T, P, 3) NaN where absent
    false_positives: int  # estimates matched to nobody (person-frames)
    people: list[Person] = field(default_factory=list)
    robot_path: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # world positions of TF children of the world


def _stamp(header: object) -> float:
    return float(header.stamp.sec) + 1e-9 * float(header.stamp.nanosec)


def _people(msg: object, with_cov: bool) -> dict[int, tuple]:
    out = {}
    for h in msg.humans:
        if with_cov and h.status in (STATUS_TENTATIVE, STATUS_LOST):
            continue
        q = h.root_pose.pose.orientation
        out[int(h.track_id)] = (np.asarray(h.joint_positions, float).reshape(24, 3),
                                np.asarray(h.joint_covariances, float).reshape(24, 3, 3),
                                Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix(),
                                np.asarray(h.root_pose.covariance, float).reshape(6, 6))
    return out


def read_sequence(bag: Path, humans_topic: str = "/humans", gt_topic: str = "/ground_truth",
                  match_distance: float = 1.0) -> Sequence:
    """Read one bag and match its estimates to the true people, frame by frame."""
    try:
        reader = AnyReader([bag], default_typestore=glopro_typestore())
        reader.open()
    except Exception as error:  # noqa: BLE001 - rosbags raises several kinds for damaged files
        raise EvaluationError(EXIT_UNREADABLE, f"cannot read {bag}: {error}") from error
    try:
        topics = {c.topic for c in reader.connections}
        if humans_topic not in topics:
            raise EvaluationError(EXIT_NO_HUMANS, f"{bag} has no {humans_topic}: run 'glopro replay' on it first")
        if gt_topic not in topics:
            raise EvaluationError(EXIT_NO_GROUND_TRUTH, f"{bag} has no {gt_topic}: nothing to evaluate against")
        truth: dict[float, dict] = {}
        estimates: dict[float, dict] = {}
        robot: list[np.ndarray] = []
        wanted = [c for c in reader.connections if c.topic in (humans_topic, gt_topic, "/tf")]
        try:
            for connection, _, raw in reader.messages(connections=wanted):
                msg = reader.deserialize(raw, connection.msgtype)
                if connection.topic == "/tf":
                    robot += [[t.transform.translation.x, t.transform.translation.y, t.transform.translation.z]
                              for t in msg.transforms if t.header.frame_id in ("map", "odom", "world")]
                elif connection.topic == gt_topic:
                    truth[_stamp(msg.header)] = _people(msg, with_cov=False)
                else:
                    estimates[_stamp(msg.header)] = _people(msg, with_cov=True)
        except Exception as error:  # noqa: BLE001 - evaluate what could be read, say so
            print(f"glopro evaluate: warning: {bag} is damaged after {len(truth)} ground-truth frames ({error})",
                  file=sys.stderr)
    finally:
        reader.close()
    return match(bag.name, truth, estimates, np.asarray(robot).reshape(-1, 3), match_distance)


def match(name: str, truth: dict[float, dict], estimates: dict[float, dict], robot_path: np.ndarray,
          match_distance: float) -> Sequence:
    """Per-frame Hungarian matching of estimates to true people on pelvis distance, gated at match_distance."""
    stamps = np.array(sorted(truth))
    ids = np.array(sorted({i for frame in truth.values() for i in frame}), dtype=int)
    T, P = len(stamps), len(ids)
    column = {int(i): c for c, i in enumerate(ids)}
    present = np.zeros((T, P), bool)
    assigned = np.full((T, P), -1)
    gt_root = np.full((T, P, 3), np.nan)
    rows: dict[int, list] = {int(i): [] for i in ids}
    false_positives = 0
    for t, stamp in enumerate(stamps):
        gt = truth[stamp]
        for i, value in gt.items():
            present[t, column[i]] = True
            gt_root[t, column[i]] = value[0][0]
        est = estimates.get(stamp, {})
        g_ids, e_ids = list(gt), list(est)
        matched = 0
        if g_ids and e_ids:
            cost = np.linalg.norm(np.array([gt[i][0][0] for i in g_ids])[:, None]
                                  - np.array([est[j][0][0] for j in e_ids])[None], axis=-1)
            for a, b in zip(*linear_sum_assignment(cost)):
                if cost[a, b] > match_distance:
                    continue
                matched += 1
                person, track = g_ids[a], e_ids[b]
                assigned[t, column[person]] = track
                rows[person].append((t, stamp, track, gt[person], est[track]))
        false_positives += len(e_ids) - matched
    fps = float(1.0 / np.median(np.diff(stamps))) if T > 1 else 30.0
    people = []
    for person, r in rows.items():
        if not r:
            continue
        people.append(Person(person, np.array([x[0] for x in r]), np.array([x[1] for x in r]),
                             np.array([x[2] for x in r]), np.stack([x[3][0] for x in r]), np.stack([x[4][0] for x in r]),
                             np.stack([x[4][1] for x in r]), np.stack([x[3][2] for x in r]),
                             np.stack([x[4][2] for x in r]), np.stack([x[4][3] for x in r])))
    return Sequence(name, stamps, fps, ids, present, assigned, gt_root, false_positives, people, robot_path)


def runs(frames: np.ndarray) -> list[np.ndarray]:
    """Index arrays of the contiguous runs in sorted frame indices."""
    breaks = np.flatnonzero(np.diff(frames) != 1) + 1
    return np.split(np.arange(len(frames)), breaks)


def root_errors(p: Person) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Root position and orientation errors (truth - estimate; rotation about the world axes) and covariances."""
    pos_err = p.gt_joints[:, 0] - p.pred_joints[:, 0]
    rot_err = Rotation.from_matrix(p.gt_root_rot @ np.swapaxes(p.pred_root_rot, -1, -2)).as_rotvec()
    return pos_err, p.root_cov[:, :3, :3], rot_err, p.root_cov[:, 3:, 3:]


def person_metrics(p: Person, fps: float) -> dict[str, float]:
    """Every DESIGN.md metric for one person's matched frames (errors in mm, RTE in %)."""
    pred, gt = p.pred_joints, p.gt_joints
    out = {"frames": int(len(p.frames)),
           "mpjpe": 1e3 * metrics.mpjpe(pred, gt), "pa_mpjpe": 1e3 * metrics.pa_mpjpe(pred, gt),
           "w_mpjpe100": 1e3 * metrics.w_mpjpe(pred, gt), "wa_mpjpe100": 1e3 * metrics.wa_mpjpe(pred, gt),
           "g_mpjpe": 1e3 * metrics.g_mpjpe(pred, gt),
           "rte_percent": metrics.rte(pred[:, 0], gt[:, 0]) if len(pred) > 1 else float("nan")}
    temporal = {"accel_error": [], "jitter": [], "foot_sliding_mm": []}
    weights = []
    for run in runs(p.frames):
        if len(run) < MIN_RUN:
            continue
        temporal["accel_error"].append(metrics.accel_error(pred[run], gt[run], fps))
        temporal["jitter"].append(metrics.jitter(pred[run], fps))
        temporal["foot_sliding_mm"].append(1e3 * metrics.foot_sliding(pred[run], gt[run]))
        weights.append(len(run))
    for key, values in temporal.items():
        values = np.asarray(values, float)
        ok = np.isfinite(values)
        out[key] = float(np.average(values[ok], weights=np.asarray(weights)[ok])) if ok.any() else float("nan")
    pos_err, pos_cov, rot_err, rot_cov = root_errors(p)
    for block, (err, cov) in {"root_position": (pos_err, pos_cov), "root_orientation": (rot_err, rot_cov),
                              "joints": (gt - pred, p.joint_cov)}.items():
        for key, value in metrics.consistency(err.reshape(-1, 3), cov.reshape(-1, 3, 3)).items():
            out[f"{block}_{key}"] = value
    return out


def pooled_consistency(people: list[Person]) -> dict[str, float]:
    """Consistency over all people's errors together (each block's frames pooled)."""
    out = {}
    blocks = {"root_position": ([], []), "root_orientation": ([], []), "joints": ([], [])}
    for p in people:
        pos_err, pos_cov, rot_err, rot_cov = root_errors(p)
        for name, (err, cov) in {"root_position": (pos_err, pos_cov), "root_orientation": (rot_err, rot_cov),
                                 "joints": (p.gt_joints - p.pred_joints, p.joint_cov)}.items():
            blocks[name][0].append(err.reshape(-1, 3))
            blocks[name][1].append(cov.reshape(-1, 3, 3))
    for name, (errs, covs) in blocks.items():
        for key, value in metrics.consistency(np.concatenate(errs), np.concatenate(covs)).items():
            out[f"{name}_{key}"] = value
    return out


def weighted(per_person: list[dict[str, float]]) -> dict[str, float]:
    """Frame-weighted mean of the error metrics over people (NaNs left out)."""
    out = {}
    keys = [k for k in per_person[0] if k != "frames" and not k.startswith(("root_", "joints_"))]
    for key in keys:
        values = np.array([m[key] for m in per_person], float)
        w = np.array([m["frames"] for m in per_person], float)
        ok = np.isfinite(values)
        out[key] = float(np.average(values[ok], weights=w[ok])) if ok.any() else float("nan")
    return out


def tracking_metrics(seqs: list[Sequence]) -> dict[str, float]:
    present = sum(int(s.present.sum()) for s in seqs)
    matched = sum(int((s.assigned >= 0).sum()) for s in seqs)
    return {"id_switches": sum(metrics.id_switches(s.assigned) for s in seqs),
            "recall": matched / max(present, 1), "false_positives": sum(s.false_positives for s in seqs),
            "person_frames": present, "matched_person_frames": matched}


def evaluate(seqs: list[Sequence]) -> dict:
    """Per sequence (per person and summary) and overall metrics, as written to metrics.json."""
    people = [p for s in seqs for p in s.people]
    if not people:
        raise EvaluationError(EXIT_NO_MATCHES, "no estimate matched a true person in any frame")
    result = {"sequences": {}, "overall": {}}
    all_person_metrics = []
    for s in seqs:
        per_person = {str(p.person_id): person_metrics(p, s.fps) for p in s.people}
        all_person_metrics += list(per_person.values())
        summary = (weighted(list(per_person.values())) | pooled_consistency(s.people)) if s.people else {}
        result["sequences"][s.name] = {"fps": s.fps, "frames": int(len(s.stamps)), "people": per_person,
                                       "summary": summary | tracking_metrics([s])}
    result["overall"] = weighted(all_person_metrics) | pooled_consistency(people) | tracking_metrics(seqs)
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="glopro evaluate", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n")[-1])
    parser.add_argument("bags", type=Path, nargs="+", help="replayed bags (with /humans and /ground_truth)")
    parser.add_argument("--out", type=Path, default=Path("evaluation"), help="folder for metrics.json and report.html")
    parser.add_argument("--humans-topic", default="/humans")
    parser.add_argument("--ground-truth-topic", default="/ground_truth")
    parser.add_argument("--match-distance", type=float, default=1.0, help="pelvis distance gate for matching, m")
    parser.add_argument("--no-html", action="store_true", help="only metrics.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        seqs = [read_sequence(b, args.humans_topic, args.ground_truth_topic, args.match_distance) for b in args.bags]
        result = evaluate(seqs)
    except EvaluationError as error:
        print(f"glopro evaluate: {error}", file=sys.stderr)
        return error.code
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metrics.json").write_text(json.dumps(result, indent=2, allow_nan=True))
    if not args.no_html:
        from glopro_ros.tools.report import write_report

        write_report(args.out / "report.html", seqs, result)
    o = result["overall"]
    print(f"wrote {args.out}/metrics.json{'' if args.no_html else ' and report.html'}: MPJPE {o['mpjpe']:.1f} mm, "
          f"G-MPJPE {o['g_mpjpe']:.1f} mm, W-MPJPE100 {o['w_mpjpe100']:.1f} mm, RTE {o['rte_percent']:.2f} %, "
          f"joint ANEES/dim {o['joints_anees_per_dim']:.2f}, ID switches {o['id_switches']}, recall {o['recall']:.2f}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
