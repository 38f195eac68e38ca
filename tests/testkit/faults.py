"""Helpers for the distributed and fault tests: a tiny deterministic run, subprocesses, logged metrics."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from testkit.cli import REPO, csv_logger

TESTS = Path(__file__).resolve().parents[1]  # tests/: subprocess configs name testkit.* classes

# 48 training samples at batch 4 = 12 steps per epoch; 13 validation samples (odd on purpose).
STEPS_PER_EPOCH = 12
EPOCHS = 3
TINY_DETERMINISTIC = [
    "--config", "configs/data/synthetic.yaml", "--config", "configs/heads/heatmap.yaml",
    "--model.backbone", "test_resnet",
    "--data.init_args.image_size", "32",
    "--data.init_args.num_train", "48",
    "--data.init_args.num_val", "13",
    "--data.init_args.batch_size", "4",
    "--data.init_args.num_workers", "0",
    "--trainer.max_epochs", str(EPOCHS),
    "--trainer.deterministic", "true",
    "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false",
    "--trainer.num_sanity_val_steps", "0",
]


def script_env() -> dict[str, str]:
    # tests/ on the path so that configs can name test-only classes (tests/testkit/fault_heads.py).
    path = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH", "")) if p)
    # One intra-op thread per process: the test machine's cores are shared, and oversubscribed OpenMP threads
    # make a tiny step 100× slower.
    return {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


def script_command(script: str, *args: str) -> list[str]:
    return [sys.executable, script, *args]


def train_args(run_dir: Path, *extra: str) -> list[str]:
    return [*TINY_DETERMINISTIC, *csv_logger(run_dir), *extra]


def run(script: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(script_command(script, *args), cwd=REPO, env=script_env(), capture_output=True,
                          text=True, timeout=timeout)


def start(script: str, *args: str, log: Path) -> subprocess.Popen:
    """Start a script in the background, its output going to ``log`` (a pipe could fill up and block it)."""
    out = open(log, "w")  # noqa: SIM115 - closed by the child's exit; the test reads the file afterwards
    return subprocess.Popen(script_command(script, *args), cwd=REPO, env=script_env(), stdout=out,
                            stderr=subprocess.STDOUT, text=True)


def load_checkpoint(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def final_val_metrics(run_dir: Path) -> dict[str, float]:
    """The last row with validation metrics over all CSVLogger versions of a run (a resume adds a version)."""
    rows: list[dict[str, str]] = []
    for path in sorted(run_dir.rglob("version_*/metrics.csv"),
                       key=lambda p: int(p.parent.name.split("_")[1])):
        with open(path) as f:
            rows += [r for r in csv.DictReader(f) if r.get("val/score")]
    assert rows, f"no validation metrics under {run_dir}"
    return {k: float(v) for k, v in rows[-1].items() if k.startswith("val/") and v}


def one_line(text: str) -> str:
    """Collapse whitespace: the CLI's error console wraps long lines."""
    return " ".join(text.split())
