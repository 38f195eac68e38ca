"""Shared test fixtures. Tests never touch the network: they make their own data."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
# One intra-op thread per pytest-xdist worker (workers already fill the cores), at most two otherwise.
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory):
    """A tiny trained checkpoint (heatmap head on ``test_resnet``, 32×32 synthetic figures, 16 keypoints), trained
    once per session by ``train.py`` as a user would (~7 s); the run folder holds ``config.yaml`` beside it."""
    from testkit.cli import TINY_SYNTHETIC, run_script

    run_dir = tmp_path_factory.mktemp("tiny_run")
    result = run_script("train.py", *TINY_SYNTHETIC, "--trainer.default_root_dir", str(run_dir),
                        "--trainer.logger", "false")
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir / "checkpoints" / "best.ckpt"
