"""glopro evaluate and the HTML report: numbers equal the metrics library's on the same data."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from std_msgs.msg import Header

from glopro_ros.core import metrics
from glopro_ros.core.body_model import BodyModel
from glopro_ros.core.gaussian_state import FLAT_DIM, GaussianBodyState
from glopro_ros.core.propagation import PointsGaussian
from glopro_ros.core.so3 import exp_so3
from glopro_ros.ros.conversions import TrackInfo, human_state_array, time_msg
from glopro_ros.tools import evaluate
from glopro_ros.tools.bag_output import McapBagWriter, ground_truth_msg, stamp_ns
from glopro_ros.tools.report import fmt

T, FPS, SIGMA = 40, 30.0, 0.02
F64 = dict(dtype=torch.float64)


def _truth(body: BodyModel) -> dict[str, np.ndarray]:
    """Two people walking past each other; joints float32-rounded as the messages carry them."""
    t = np.arange(T) / FPS
    rng = np.random.default_rng(1)
    pose = 0.2 * np.sin(2 * np.pi * t)[:, None, None, None] * rng.normal(size=(1, 2, 23, 3))
    yaw = np.array([0.0, np.pi])
    rot = np.stack([np.stack([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]) for a in yaw])
    root = np.stack([np.stack([1.2 * t, np.zeros(T), np.full(T, 0.9)], -1),
                     np.stack([4.0 - 1.0 * t, np.full(T, 1.5), np.full(T, 0.9)], -1)], 1)
    joints = body.forward_joints(torch.zeros(2 * T, 10, **F64), exp_so3(torch.as_tensor(pose.reshape(-1, 23, 3), **F64)),
                                 torch.as_tensor(np.tile(rot, (T, 1, 1)), **F64),
                                 torch.as_tensor(root.reshape(-1, 3), **F64))[0].numpy().reshape(T, 2, 24, 3)
    return {"pose": pose, "rot": np.broadcast_to(rot, (T, 2, 3, 3)), "joints": joints.astype(np.float32).astype(float)}


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A bag with /ground_truth and /humans = truth + N(0, SIGMA^2) joint noise with matching covariances;
    person 0 changes track id at frame 20 (one ID switch), person 1 is not estimated in frames 5-9, and
    a far-away false track appears in frames 0-2."""
    body = BodyModel(device="cpu")
    truth = _truth(body)
    rng = np.random.default_rng(2)
    pred = (truth["joints"] + rng.normal(0.0, SIGMA, truth["joints"].shape)).astype(np.float32).astype(float)
    has = np.ones((T, 2), bool)
    has[5:10, 1] = False
    track = np.stack([np.where(np.arange(T) < 20, 10, 11), np.full(T, 20)], 1)
    bag = tmp_path_factory.mktemp("eval") / "seq"
    with McapBagWriter(bag) as writer:
        for t in range(T):
            stamp = 1.0 + t / FPS
            writer.write("/ground_truth", stamp_ns(stamp), ground_truth_msg(
                stamp, "map", "test", np.array([0, 1]), np.zeros((2, 10)), truth["pose"][t], truth["rot"][t],
                truth["joints"][t, :, 0], truth["joints"][t]))
            people = list(np.flatnonzero(has[t]))
            means = [pred[t, p] for p in people]
            ids = [track[t, p] for p in people]
            rots = [truth["rot"][t, p] for p in people]
            poses = [truth["pose"][t, p] for p in people]
            if t < 3:
                means.append(pred[t, 0] + [30.0, 0, 0])
                ids.append(99)
                rots.append(np.eye(3))
                poses.append(np.zeros((23, 3)))
            n = len(means)
            state = GaussianBodyState(torch.zeros(n, 10, **F64), torch.as_tensor(np.array(poses), **F64),
                                      torch.as_tensor(np.array(rots), **F64),
                                      torch.as_tensor(np.array([m[0] for m in means]), **F64),
                                      torch.eye(FLAT_DIM, **F64).expand(n, -1, -1) * SIGMA**2, "map")
            joints = PointsGaussian(torch.as_tensor(np.array(means), **F64),
                                    torch.eye(3, **F64).expand(n, 24, -1, -1) * SIGMA**2, "map")
            info = TrackInfo(np.array(ids), np.ones(n, int), np.ones(n), np.full(n, stamp))
            msg, dropped = human_state_array(Header(stamp=time_msg(stamp), frame_id="map"), "test", state, joints, info)
            assert dropped == 0
            writer.write("/humans", stamp_ns(stamp), msg)
    return {"bag": bag, "truth": truth, "pred": pred, "has": has}


def test_metrics_equal_the_library_on_the_same_data(scene: dict, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    assert evaluate.main([str(scene["bag"]), "--out", str(out)]) == 0
    result = json.loads((out / "metrics.json").read_text())
    seq = result["sequences"]["seq"]
    gt, pred, has = scene["truth"]["joints"], scene["pred"], scene["has"]
    frames = {}
    for p in (0, 1):
        g, e = gt[has[:, p], p], pred[has[:, p], p]
        got = seq["people"][str(p)]
        frames[p] = len(g)
        assert got["frames"] == len(g)
        assert got["mpjpe"] == pytest.approx(1e3 * metrics.mpjpe(e, g), rel=1e-9)
        assert got["pa_mpjpe"] == pytest.approx(1e3 * metrics.pa_mpjpe(e, g), rel=1e-9)
        assert got["w_mpjpe100"] == pytest.approx(1e3 * metrics.w_mpjpe(e, g), rel=1e-9)
        assert got["wa_mpjpe100"] == pytest.approx(1e3 * metrics.wa_mpjpe(e, g), rel=1e-9)
        assert got["g_mpjpe"] == pytest.approx(1e3 * metrics.g_mpjpe(e, g), rel=1e-9)
        assert got["rte_percent"] == pytest.approx(metrics.rte(e[:, 0], g[:, 0]), rel=1e-9)
        joints = metrics.consistency((g - e).reshape(-1, 3), np.broadcast_to(np.eye(3) * SIGMA**2, (g.size // 3, 3, 3)))
        for key, value in joints.items():
            assert got[f"joints_{key}"] == pytest.approx(value, rel=1e-6)
    # person 1's temporal metrics: frame-weighted over its two runs (0-4 and 10-39)
    run_a, run_b = np.r_[0:5], np.r_[10:40]
    accel = [metrics.accel_error(pred[r, 1], gt[r, 1], FPS) for r in (run_a, run_b)]
    assert seq["people"]["1"]["accel_error"] == pytest.approx(np.average(accel, weights=[5, 30]), rel=1e-6)
    assert seq["people"]["0"]["jitter"] == pytest.approx(metrics.jitter(pred[:, 0], FPS), rel=1e-6)
    overall = result["overall"]
    assert overall["mpjpe"] == pytest.approx(
        (seq["people"]["0"]["mpjpe"] * frames[0] + seq["people"]["1"]["mpjpe"] * frames[1]) / (frames[0] + frames[1]))
    assert overall["id_switches"] == 1
    assert overall["false_positives"] == 3
    assert overall["recall"] == pytest.approx((2 * T - 5) / (2 * T))
    assert 0.6 < overall["joints_anees_per_dim"] < 1.4  # the covariances match the noise
    html = (out / "report.html").read_text()
    for key in ("mpjpe", "g_mpjpe", "w_mpjpe100", "joints_anees_per_dim", "recall"):
        assert f"<td>{fmt(overall[key])}</td>" in html
    assert html.count("data:image/png;base64,") >= 3 and "http" not in html.replace("http-equiv", "")


def test_missing_topics_have_their_exit_codes(scene: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    only_gt = tmp_path / "only_gt"
    with McapBagWriter(only_gt) as writer:
        writer.write("/ground_truth", 1, ground_truth_msg(1.0, "map", "t", np.zeros(0), np.zeros((0, 10)),
                                                          np.zeros((0, 23, 3)), np.zeros((0, 3, 3)), np.zeros((0, 3)),
                                                          np.zeros((0, 24, 3))))
    assert evaluate.main([str(only_gt), "--out", str(tmp_path / "e")]) == evaluate.EXIT_NO_HUMANS
    assert "glopro replay" in capsys.readouterr().err
    assert evaluate.main([str(scene["bag"]), "--out", str(tmp_path / "e"), "--ground-truth-topic", "/none"]) \
        == evaluate.EXIT_NO_GROUND_TRUTH
    assert evaluate.main([str(tmp_path / "absent"), "--out", str(tmp_path / "e")]) == evaluate.EXIT_UNREADABLE
    assert evaluate.main([str(scene["bag"]), "--out", str(tmp_path / "e"), "--match-distance", "0.0001"]) \
        == evaluate.EXIT_NO_MATCHES


CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (Debian: apt-get install -y chromium)")
def test_report_renders_in_headless_chromium(scene: dict, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    assert evaluate.main([str(scene["bag"]), "--out", str(out)]) == 0
    shot = tmp_path / "shot.png"
    run = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                          "--disable-background-networking", "--disable-component-update", "--disable-sync",
                          f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,2000",
                          (out / "report.html").as_uri()], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert shot.stat().st_size > 10000
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"), float)
    assert pixels.std() > 10  # tables and plots drawn, not a blank or error page
