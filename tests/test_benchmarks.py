"""Smoke tests of the performance benchmarks: they run and print their table and JSON. Timings are never
asserted (the figures depend on the machine and its load; docs/performance.md has the measured ones)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import kpreg.heads

pytestmark = pytest.mark.slow  # runs the entry points as a user would (subprocesses, training)

ROOT = Path(__file__).resolve().parent.parent


def run_benchmark(script: str, tmp_path: Path, *extra: str) -> tuple[str, dict]:
    out = tmp_path / f"{Path(script).stem}.json"
    # One thread: the smoke runs share the machine with other tests (and two threads on a busy machine can be
    # far slower than one).
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--quick", "--json", str(out), *extra],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, json.loads(out.read_text())


@pytest.mark.parametrize("script", ["heads.py", "overhead.py"])
def test_benchmark_quick_prints_table_and_json(script: str, tmp_path: Path) -> None:
    stdout, result = run_benchmark(script, tmp_path)
    assert "|---" in stdout  # a markdown table
    if script == "heads.py":
        rows = result["rows"]
        heads = {r["class"] for r in rows}
        assert heads == set(kpreg.heads.__all__)  # every head of the family is costed
        assert {r["stride"] for r in rows} == {None, 4, 32}
        for r in rows:
            assert r["train_ms"] > 0 and r["params"] > 0 and r["train_gflops"] > 0
            assert 0 <= r["loss_share"] and 0 <= r["decode_share"]
    else:
        for clock in ("wall", "cpu"):
            assert result["median_ms"][clock]["kpreg"] > 0 and result["median_ms"][clock]["raw"] > 0
            assert result["ratio"][clock] > 0


def test_predict_speed_quick(tiny_checkpoint: Path, tmp_path: Path) -> None:
    # The peak-memory runs (two more interpreters) are left out here: the smoke run must stay short.
    stdout, result = run_benchmark("predict_speed.py", tmp_path, "--ckpt", str(tiny_checkpoint), "--skip-memory")
    assert "|---" in stdout
    assert set(result["median_fps"]) == {f"{kind}, {runtime}" for kind in ("bare forward", "predict.py")
                                         for runtime in ("PyTorch", "ONNX Runtime")} | {"bare forward, PyTorch NCHW"}
    assert all(v > 0 for v in result["median_fps"].values()) and all(v > 0 for v in result["ratios"].values())
    assert result["peak_rss_mib"] == {}


def test_fair_coco_score_quick(tmp_path: Path) -> None:
    """SimCC's case on the generated fixture: every raw instance score is 0 (all keypoint peaks 0.066 <
    0.2), the calibrated ones follow the box score for good detections, and AP rises above the detector alone's."""
    _, result = run_benchmark("fair_coco_score.py", tmp_path)
    raw, calibrated = result["rows"]["raw"], result["rows"]["calibrated"]
    assert raw["instance score / box score, good boxes"] == 0.0
    assert calibrated["instance score / box score, good boxes"] > 0.9
    assert calibrated["instance score / box score, false positives"] < 0.5
    assert calibrated["AP"] > result["box_score_only"]["AP"] > raw["AP"]


def test_oks_loss_reach_quick(tmp_path: Path) -> None:
    """The head keypoints (MPII-layout sigma 0.026) start many more OKS tolerances away than the shoulders (0.179)."""
    stdout, result = run_benchmark("oks_loss_reach.py", tmp_path)
    assert "|---" in stdout and result["samples"] == 200
    rows = result["keypoints"]
    assert rows["head_top"]["tolerances"] > 3 * rows["r_shoulder"]["tolerances"]
    assert rows["head_top"]["weak_share"] > rows["r_shoulder"]["weak_share"]
    assert 0.0 < result["all"]["weak_share"] < 1.0


def test_unlabelled_step_quick(tmp_path: Path) -> None:
    stdout, result = run_benchmark("unlabelled_step.py", tmp_path)
    assert "|---" in stdout
    assert set(result["settings"]) == {"A supervised", "B + video, inline", "C + video, worker"}
    assert all(s["median_ms"] > 0 and s["steps"] > 0 for s in result["settings"].values())
    assert result["settings"]["A supervised"]["ratio"] == 1.0
    assert all(v > 0 for v in result["reading_ms_per_clip"].values())
