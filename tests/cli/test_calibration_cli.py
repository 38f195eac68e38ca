"""Calibration end to end: a trained checkpoint carries its map; evaluate.py scores it out of fold on the data it
was fitted on, writes the confidence files, and --calibrate writes a calibrated checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from testkit.cli import TINY_SYNTHETIC, csv_logger, run_script

from kpreg.formats.predictions import read_predictions
from kpreg.metrics.calibration import CalibrationRecord, ConfidenceMap, confidence_map_of
from kpreg.training.checkpoint import read_checkpoint

pytestmark = pytest.mark.slow  # runs the entry points as a user would (subprocesses, training)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("calibrated")
    result = run_script("train.py", *TINY_SYNTHETIC, *csv_logger(out), "--data.init_args.num_val", "16",
                        "--trainer.enable_progress_bar", "false")
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def _evaluate(run_dir: Path, out: Path, *extra: str) -> tuple[str, dict]:
    result = run_script("evaluate.py", "--config", str(run_dir / "config.yaml"),
                        "--ckpt_path", str(run_dir / "checkpoints" / "best.ckpt"), "--json", str(out / "metrics.json"),
                        "--trainer.enable_progress_bar", "false", *extra)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout, json.loads((out / "confidence.json").read_text())


def test_checkpoint_carries_the_map_of_its_validation(run_dir: Path) -> None:
    checkpoint = read_checkpoint(run_dir / "checkpoints" / "best.ckpt")  # weights_only=True
    record = CalibrationRecord.from_dict(checkpoint["kpreg"]["calibration"])
    assert record.fitted_on["split"] == "validation" and record.fitted_on["samples"] == 16
    assert record.correct["definition"] == "error ≤ 0.5 × head size (PCKh@0.5)"  # the synthetic data's
    assert record.flip_test is True
    ConfidenceMap.from_state(record.map, 16)  # applicable to the model's 16 keypoints
    assert confidence_map_of(checkpoint).num_keypoints == 16  # what the predictor / exporter call
    assert confidence_map_of({"kpreg": {"calibration": None, "num_keypoints": 16}}) is None  # raw scores


def test_evaluate_scores_out_of_fold_and_writes_the_confidence_files(run_dir: Path, tmp_path: Path) -> None:
    stdout, info = _evaluate(run_dir, tmp_path)
    assert info["mode"] == "cross-fitted"  # the test split is the validation split the map was fitted on
    assert "cross-fitted again" in stdout and "ECE raw" in stdout
    assert {c["key"] for c in info["columns"]} >= {"ECE", "ECE_raw", "Brier", "AUROC", "CorrectAbove0.5"}
    points = np.load(tmp_path / "confidence_points.npz")
    n = int(info["scores"]["Keypoints"])
    assert points["raw"].shape == points["calibrated"].shape == points["correct"].shape == (n,)
    assert (tmp_path / "reliability.png").stat().st_size > 1000
    confidence = read_predictions(tmp_path / "predictions.json").confidence  # (16, 16): P(correct), 1e-6 steps
    assert confidence.shape == (16, 16) and ((confidence > 0.0) & (confidence < 1.0)).all()


def test_calibrate_fits_on_the_evaluated_split_and_writes_a_calibrated_checkpoint(run_dir: Path, tmp_path: Path) -> None:
    stdout, info = _evaluate(run_dir, tmp_path, "--calibrate")
    assert info["mode"] == "fitted" and "cross-fitted (out of fold) on this evaluated split" in stdout
    record = json.loads((tmp_path / "calibration.json").read_text())
    assert record["fitted_on"]["split"] == "evaluated" and record["table"]  # chosen by measurement
    saved = read_checkpoint(tmp_path / "calibrated.ckpt")
    same = json.dumps(saved["kpreg"]["calibration"], sort_keys=True) == json.dumps(record, sort_keys=True)
    assert same  # (as JSON: NaN scores, e.g. no keypoint above 0.5, compare equal there)
    assert saved["state_dict"].keys() == read_checkpoint(run_dir / "checkpoints" / "best.ckpt")["state_dict"].keys()
