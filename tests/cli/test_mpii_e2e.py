"""End to end on a generated MPII root: ``train.py`` (1 tiny epoch) then ``evaluate.py`` writing pred.mat and
the metrics JSON, which must agree with ``evaluate.py score`` on that pred.mat."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from testkit.mpii import make_mpii_root

from kpreg.formats.mpii import MPII_JOINT_NAMES
from kpreg.metrics.mpii_score import SUMMARY_KEYS, score_mpii_files

pytestmark = pytest.mark.slow  # runs the entry points as a user would (subprocesses, training)

REPO = Path(__file__).resolve().parents[2]


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(REPO / script), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_train_then_evaluate_writes_pred_mat_that_scores_the_same(tmp_path) -> None:
    root = make_mpii_root(tmp_path / "mpii", num_train=4, num_valid=3).root
    run = tmp_path / "run"
    _run(
        "train.py",
        "--config", "configs/data/mpii.yaml",
        "--config", "configs/protocols/simplebaseline_mpii.yaml",
        "--config", "configs/heads/heatmap.yaml",
        "--model.backbone", "test_resnet",
        "--model.pretrained", "false",
        "--model.head.init_args.neck_channels", "16",
        "--data.init_args.root", str(root),
        "--data.init_args.input_size", "[64, 64]",
        "--data.init_args.batch_size", "2",
        "--data.init_args.num_workers", "0",
        "--trainer.max_epochs", "1",
        "--trainer.accelerator", "cpu",
        "--trainer.default_root_dir", str(run),
        "--trainer.logger.class_path", "pytorch_lightning.loggers.CSVLogger",
        "--trainer.logger.init_args.save_dir", str(run),
    )
    assert (run / "config.yaml").is_file() and (run / "checkpoints" / "last.ckpt").is_file()
    out = tmp_path / "eval" / "metrics.json"
    proc = _run("evaluate.py", "--config", str(run / "config.yaml"),
                "--ckpt_path", str(run / "checkpoints" / "last.ckpt"), "--json", str(out))
    assert "PCKh@0.1" in proc.stdout  # the MPII table was printed
    metrics = json.loads(out.read_text())
    assert set(SUMMARY_KEYS) | {"MeanError"} | {f"joint/{n}" for n in MPII_JOINT_NAMES} <= set(metrics)
    pred = out.parent / "pred.mat"
    assert pred.is_file()
    scored = score_mpii_files(root / "annot" / "gt_valid.mat", pred)
    assert scored == {k: metrics[k] for k in SUMMARY_KEYS}
