"""glopro demo, shortened: simulate -> node over DDS -> evaluate leaves a bag, a report and metrics."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from glopro_ros.core.fusion import DEFAULT_FUSION_WEIGHTS
from glopro_ros.perception.model_files import MODEL_FILES, default_model_dir
from glopro_ros.tools import demo

POSE_MODELS = all((default_model_dir() / name).is_file() for name in MODEL_FILES)


@pytest.mark.skipif(not DEFAULT_FUSION_WEIGHTS.exists(), reason=f"needs the trained {DEFAULT_FUSION_WEIGHTS.name}")
def test_demo_writes_bag_report_and_metrics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    assert demo.main(["--out", str(out), "--duration", "3", "--people", "2"]) == 0
    printed = capsys.readouterr().out
    assert all(f"[{i}/3]" in printed for i in (1, 2, 3))
    assert (out / "replayed" / "metadata.yaml").is_file() and list((out / "replayed").glob("*.mcap"))
    report = out / "evaluation" / "report.html"
    assert report.stat().st_size > 1000 and str(report.resolve()) in printed
    metrics = json.loads((out / "evaluation" / "metrics.json").read_text())
    assert {"mpjpe", "g_mpjpe", "w_mpjpe100", "rte_percent", "joints_anees_per_dim", "id_switches",
            "recall"} <= set(metrics["overall"])
    assert list(metrics["sequences"]) and metrics["overall"]["matched_person_frames"] > 0


@pytest.mark.skipif(not POSE_MODELS, reason="needs the BlazePose model files (scripts/fetch_pose_models.py)")
def test_hsr_demo_prints_a_pelvis_per_frame(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The shipped real frames: five images of one person 1.5-2.1 m in front of the camera."""
    assert demo.main(["--out", str(tmp_path), "--hsr"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "pelvis in map" in line]
    assert len(lines) == 5 and all("id " in line for line in lines), lines
