"""End-to-end: train.py then evaluate.py as subprocesses, and the CLI's error messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from testkit.cli import REPO, TINY_SYNTHETIC, csv_logger, run_script
from testkit.faults import final_val_metrics

from kpreg.formats.predictions import read_predictions

pytestmark = pytest.mark.slow  # runs the entry points as a user would (subprocesses, training)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """One tiny training run (wandb offline, the default logger), shared by the tests below."""
    run_dir = tmp_path_factory.mktemp("run")
    result = run_script(
        "train.py", *TINY_SYNTHETIC,
        "--trainer.default_root_dir", str(run_dir),
        "--trainer.logger.init_args.save_dir", str(run_dir),
        "--model.head.init_args.sigma", "1.5",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def test_train_saves_config_and_checkpoints(trained_run: Path) -> None:
    config = yaml.safe_load((trained_run / "config.yaml").read_text())
    assert config["model"]["head"]["init_args"]["sigma"] == 1.5  # the dotted override is in the saved config
    assert "num_keypoints" not in config["model"]  # linked from the data at instantiation, never stale
    assert (trained_run / "checkpoints" / "best.ckpt").is_file()
    assert (trained_run / "checkpoints" / "last.ckpt").is_file()
    assert list((trained_run / "wandb").glob("offline-run-*")), "wandb ran offline, without a login"


def test_evaluate_writes_metrics_and_predictions(trained_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval" / "metrics.json"
    result = run_script(
        "evaluate.py", "--config", str(trained_run / "config.yaml"),
        "--ckpt_path", str(trained_run / "checkpoints" / "best.ckpt"), "--json", str(out),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads(out.read_text())
    for key in ("Mean", "Mean@0.1", "MeanError", "Head", "Ankle", "AUC"):
        assert key in metrics
    assert 0.0 <= metrics["Mean@0.1"] <= metrics["Mean"] <= 100.0
    assert "PCKh@0.5" in result.stdout and "median" in result.stdout  # the tables are printed
    predictions = read_predictions(out.parent / "predictions.json")  # the schema of predict.py's file
    assert predictions.index.tolist() == list(range(12)) and predictions.num_keypoints == 16

    no_flip = tmp_path / "noflip.json"
    result = run_script(
        "evaluate.py", "--config", str(trained_run / "config.yaml"),
        "--ckpt_path", str(trained_run / "checkpoints" / "best.ckpt"), "--json", str(no_flip), "--no-flip",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(no_flip.read_text()) != metrics  # the flip test changes the predictions


def _fails_with(result, *fragments: str) -> None:
    assert result.returncode != 0
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr[-2000:]


def test_unknown_config_key(tmp_path: Path) -> None:
    result = run_script("train.py", *TINY_SYNTHETIC, *csv_logger(tmp_path), "--model.head.init_args.sigmaa", "2")
    _fails_with(result, "sigmaa")


def test_unknown_timm_model(tmp_path: Path) -> None:
    result = run_script("train.py", *TINY_SYNTHETIC, *csv_logger(tmp_path), "--model.backbone", "resnet181")
    _fails_with(result, "unknown timm model name 'resnet181'")
    assert "Traceback" not in result.stderr


def test_missing_checkpoint(trained_run: Path, tmp_path: Path) -> None:
    result = run_script("evaluate.py", "--config", str(trained_run / "config.yaml"),
                        "--ckpt_path", str(tmp_path / "missing.ckpt"))
    _fails_with(result, "checkpoint not found", "missing.ckpt")
    assert "Traceback" not in result.stderr
    result = run_script("train.py", *TINY_SYNTHETIC, *csv_logger(tmp_path), "--ckpt_path", str(tmp_path / "x.ckpt"))
    _fails_with(result, "checkpoint not found", "x.ckpt")


def test_checkpoint_with_other_tensor_shapes(trained_run: Path, tmp_path: Path) -> None:
    # Another neck width, the identity check waived: the error names the mismatched tensors.
    result = run_script(
        "evaluate.py", "--config", str(trained_run / "config.yaml"),
        "--ckpt_path", str(trained_run / "checkpoints" / "best.ckpt"),
        "--model.head.init_args.neck_channels", "16", "--allow_checkpoint_mismatch", "true",
    )
    _fails_with(result, "does not fit this model", "head.")
    assert "Traceback" not in result.stderr


def test_checkpoint_of_another_head_is_refused_naming_both_sides(trained_run: Path) -> None:
    # A heatmap checkpoint under a DSNT config: the tensors would fit (same shapes), the model would not.
    result = run_script(
        "evaluate.py", "--config", str(trained_run / "config.yaml"), "--config", "configs/heads/dsnt.yaml",
        "--ckpt_path", str(trained_run / "checkpoints" / "best.ckpt"),
    )
    _fails_with(result, "another model than the config describes", "kpreg.heads.heatmap.HeatmapHead",
                "kpreg.heads.dsnt.DSNTHead")
    assert "Traceback" not in result.stderr


def test_checkpoint_records_its_model(trained_run: Path) -> None:
    checkpoint = torch.load(trained_run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    saved = checkpoint["kpreg"]  # plain data: read with weights_only=True
    config = yaml.safe_load((trained_run / "config.yaml").read_text())
    assert saved["head"]["class_path"].rsplit(".", 1)[-1] == config["model"]["head"]["class_path"].rsplit(".", 1)[-1]
    assert saved["head"]["init_args"]["sigma"] == 1.5  # the head's arguments, the override included
    assert saved["num_keypoints"] == 16 and len(saved["keypoint_names"]) == 16 and saved["input_size"] == [32, 32]
    assert saved["flip_pairs"] and saved["skeleton"] and saved["config"]["model"]["backbone"] == "test_resnet"


@pytest.mark.parametrize("flip", ["false", "true"])
def test_evaluate_follows_the_run_config_and_equals_validation(flip: str, tmp_path: Path) -> None:
    """evaluate.py takes the flip test (and every other setting) from the run's config: the metrics of the last
    checkpoint equal the last validation's, with the flip test off and on."""
    run = tmp_path / "run"
    result = run_script("train.py", *TINY_SYNTHETIC, *csv_logger(run), "--model.flip_test", flip)
    assert result.returncode == 0, result.stderr[-3000:]
    val = final_val_metrics(run)
    out = tmp_path / "eval" / "metrics.json"
    result = run_script("evaluate.py", "--config", str(run / "config.yaml"),
                        "--ckpt_path", str(run / "checkpoints" / "last.ckpt"), "--json", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads(out.read_text())
    for key in ("Mean", "Mean@0.1", "MeanError", "MedianError", "PCK@0.1"):
        assert metrics[key] == pytest.approx(val[f"val/{key}"], rel=1e-5, abs=1e-5), key
    assert json.loads((out.parent / "metric_info.json").read_text())["flip_test"] is (flip == "true")


def test_training_output_to_a_file_shows_progress_lines(tmp_path: Path) -> None:
    """Under nohup, SLURM or CI the output is a file, not a terminal: progress comes as plain lines."""
    log = tmp_path / "log.txt"
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    env.pop("KPREG_PROGRESS", None)
    with open(log, "w") as f:
        proc = subprocess.run([sys.executable, "train.py", *TINY_SYNTHETIC, *csv_logger(tmp_path / "run")],
                              cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT, timeout=240)
    text = log.read_text()
    assert proc.returncode == 0, text[-3000:]
    assert "epoch 1/1  step 4/4 (100%)  loss" in text and "it/s" in text
    assert "epoch 1/1  validation  val/score" in text
    assert "LightningCLI's args parameter" not in text and "litlogger" not in text  # no warning users cannot act on
