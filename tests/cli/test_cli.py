"""End-to-end: train.py then evaluate.py as subprocesses, and the CLI's error messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from cli_helpers import TINY_SYNTHETIC, csv_logger, run_script


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
    predictions = json.loads((out.parent / "predictions.json").read_text())["predictions"]
    assert [p["index"] for p in predictions] == list(range(12))
    assert len(predictions[0]["keypoints"]) == 16

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
