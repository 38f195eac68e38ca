"""Run train.py / evaluate.py as a user would: subprocesses from the repository root."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# A tiny synthetic run: the tiny timm test backbone, 32×32 images, a handful of samples.
TINY_SYNTHETIC = [
    "--config", "configs/data/synthetic.yaml", "--config", "configs/heads/heatmap.yaml",
    "--model.backbone", "test_resnet",
    "--data.init_args.image_size", "32",
    "--data.init_args.num_train", "32",
    "--data.init_args.num_val", "12",
    "--data.init_args.batch_size", "8",
    "--data.init_args.num_workers", "0",
    "--trainer.max_epochs", "1",
]


def csv_logger(run_dir: Path) -> list[str]:
    return [
        "--trainer.default_root_dir", str(run_dir),
        "--trainer.logger.class_path", "pytorch_lightning.loggers.CSVLogger",
        "--trainer.logger.init_args.save_dir", str(run_dir),
    ]


def run_script(script: str, *args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, script, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


def run_in_process(main: Callable[[Sequence[str]], None], capsys: pytest.CaptureFixture[str],
                   *args: str) -> tuple[int, str, str]:
    """An entry point's ``main`` in this process → (exit code, stdout, stderr)."""
    try:
        main(list(args))
        code = 0
    except SystemExit as stop:
        code = int(stop.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, *needles: str) -> str:
    """Exit code 2 and exactly one ``error:`` line holding every needle; no traceback, no usage page."""
    assert code == 2, err[-2000:]
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err[-2000:]
    assert "Traceback" not in err and "usage:" not in err, err[-2000:]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]
