"""A training run says what a user reads and nothing a user learns to ignore (kpreg.cli.quiet)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from testkit.cli import REPO, TINY_SYNTHETIC
from torch.jit import TracerWarning

from kpreg.cli.quiet import KPREG_DIR

pytestmark = pytest.mark.slow  # runs the entry points as a user would (subprocesses, training)

# Each entry: a piece of a line that a short training run printed before kpreg silenced it.
NOISE = (
    "The anonymous setting has no effect",  # wandb, for an argument Lightning always passes
    "git root",  # wandb, when the run directory did not exist yet
    "Tracking run with wandb version",  # wandb's banner (its quiet setting)
    "You can sync this run",  # wandb's footer (its quiet setting)
    "┃ Name", "Total FLOPs", "Trainable params",  # Lightning's model summary table
    "is smaller than the logging interval",  # a short epoch under log_every_n_steps 25
    "TPU available",
    "Seed set to",
    "litlogger",
    "LightningCLI's args parameter",
    "\x1b[",  # terminal colour codes written to a file
)


def test_a_short_training_run_prints_none_of_the_chatter(tmp_path: Path) -> None:
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    for key in ("WANDB_SILENT", "WANDB_QUIET", "KPREG_PROGRESS"):
        env.pop(key, None)
    run_dir = tmp_path / "runs" / "tiny"  # does not exist before the run (wandb looks for git from there)
    proc = subprocess.run([sys.executable, "train.py", *TINY_SYNTHETIC, "--trainer.default_root_dir", str(run_dir),
                           "--trainer.logger.init_args.save_dir", str(run_dir)],
                          cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=240)
    text = proc.stdout
    assert proc.returncode == 0, text[-3000:]
    for noise in NOISE:
        assert noise not in text, f"{noise!r} in:\n{text}"
    assert re.search(r"^model: [\d.]+ K parameters \(backbone [\d.]+ K, head [\d.]+ K\), [\d.]+ MFLOPs per 32×32 image$",
                     text, re.MULTILINE), text  # the one line in place of the summary table
    assert "epoch 1/1  step 4/4 (100%)" in text and "epoch 1/1  validation  val/score" in text
    assert "Run data is saved locally in" in text  # where wandb's offline run is: what a user needs of it


def test_kpreg_warnings_read_as_one_line() -> None:
    own = warnings.formatwarning("too few labelled samples", UserWarning, str(KPREG_DIR / "training" / "module.py"),
                                 380, "    rank_zero_warn(...)")
    assert own == "warning: too few labelled samples\n"
    other = warnings.formatwarning("deprecated", UserWarning, "/elsewhere/lib.py", 7, "call()")
    assert "/elsewhere/lib.py:7" in other and "deprecated" in other
    traced = warnings.formatwarning("trace", TracerWarning, str(KPREG_DIR / "heads" / "heatmap.py"), 9, "if x:")
    assert "heatmap.py:9" in traced  # a library's warning about kpreg's code keeps its place
