"""Faults: SIGKILL mid-epoch + resume == uninterrupted, reproducibility, NaN loss, SIGTERM, atomic writes."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
import torch
from testkit.faults import (
    EPOCHS,
    STEPS_PER_EPOCH,
    final_val_metrics,
    load_checkpoint,
    one_line,
    run,
    start,
    train_args,
)

pytestmark = pytest.mark.slow  # runs the entry points as a user would (subprocesses, training)

EVERY = ["--last_checkpoint.every_n_train_steps", "2"]


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory) -> Path:
    """An uninterrupted deterministic run (3 epochs × 12 steps, last.ckpt every 2 steps)."""
    run_dir = tmp_path_factory.mktemp("reference")
    result = run("train.py", *train_args(run_dir, *EVERY))
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def _assert_same_weights(a: Path, b: Path) -> None:
    sa, sb = load_checkpoint(a)["state_dict"], load_checkpoint(b)["state_dict"]
    assert sa.keys() == sb.keys()
    different = [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert not different, f"tensors differ: {different[:5]}"


def test_deterministic_runs_are_identical(reference_run: Path, tmp_path: Path) -> None:
    result = run("train.py", *train_args(tmp_path, *EVERY))
    assert result.returncode == 0, result.stderr[-3000:]
    assert final_val_metrics(tmp_path) == final_val_metrics(reference_run)
    _assert_same_weights(tmp_path / "checkpoints" / "last.ckpt", reference_run / "checkpoints" / "last.ckpt")


def _wait_for_checkpoint(proc, last: Path, min_step: int, timeout: float = 200.0) -> int:
    """Poll ``last`` until it holds a step >= ``min_step``; returns that step (the process still runs)."""
    deadline = time.monotonic() + timeout
    seen_mtime = None
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before the checkpoint the test waits for"
        if last.is_file() and last.stat().st_mtime_ns != seen_mtime:
            seen_mtime = last.stat().st_mtime_ns
            step = int(load_checkpoint(last)["global_step"])  # never half-written: atomic replace
            if step >= min_step:
                return step
        time.sleep(0.02)
    raise AssertionError(f"no checkpoint at step >= {min_step} within {timeout} s")


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(reference_run: Path, tmp_path: Path) -> None:
    last = tmp_path / "checkpoints" / "last.ckpt"
    proc = start("train.py", *train_args(tmp_path, *EVERY), log=tmp_path / "killed.log")
    try:
        # A mid-epoch checkpoint after the first epoch (each epoch has its own permutation).
        _wait_for_checkpoint(proc, last, STEPS_PER_EPOCH + 1)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = int(load_checkpoint(last)["global_step"])
    assert STEPS_PER_EPOCH < killed_at < EPOCHS * STEPS_PER_EPOCH and killed_at % STEPS_PER_EPOCH != 0
    # A kill during a write leaves only a hidden temporary file; last.ckpt itself is always complete.

    resumed = run("train.py", *train_args(tmp_path, *EVERY), "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert not list(last.parent.glob(".*.tmp-*")), "a stale temporary checkpoint file was left behind"
    assert "not resumable" not in resumed.stderr  # Lightning's warning for loaders without state
    assert int(load_checkpoint(last)["global_step"]) == EPOCHS * STEPS_PER_EPOCH
    assert final_val_metrics(tmp_path) == final_val_metrics(reference_run)
    _assert_same_weights(last, reference_run / "checkpoints" / "last.ckpt")


def test_nan_loss_stops_with_step_and_keeps_last_good_checkpoint(tmp_path: Path) -> None:
    head = [
        "--model.head", "testkit.fault_heads.NanLossHead",
        "--model.head.init_args.nan_from_call", "5",
        "--model.head.init_args.neck_channels", "64",
    ]
    result = run("train.py", *train_args(tmp_path, *EVERY, *head))
    assert result.returncode == 1, result.stderr[-3000:]
    message = one_line(result.stderr)
    assert "non-finite training loss" in message and "global step 5 (epoch 0, batch 5)" in message, message[-2000:]
    assert "Traceback" not in result.stderr
    checkpoint = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert checkpoint["global_step"] == 4  # the last periodic save before the bad step, nothing after it
    assert all(torch.isfinite(t).all() for t in checkpoint["state_dict"].values() if t.is_floating_point())


def test_sigterm_saves_checkpoint_and_exits(tmp_path: Path) -> None:
    last = tmp_path / "checkpoints" / "last.ckpt"
    log = tmp_path / "train.log"
    # No periodic saves: the only mid-epoch checkpoint can come from the SIGTERM handler.
    args = train_args(tmp_path, "--last_checkpoint.every_n_train_steps", "0", "--trainer.max_epochs", "20")
    proc = start("train.py", *args, log=log)
    try:
        _wait_for_checkpoint(proc, last, STEPS_PER_EPOCH)  # written after the first validation
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode >= 0, "the process must exit by itself, not die of the signal"
    step = int(load_checkpoint(last)["global_step"])
    assert STEPS_PER_EPOCH < step < 20 * STEPS_PER_EPOCH
    assert f"SIGTERM: saved {last} at global step {step}" in one_line(log.read_text())


def test_nan_loss_skip_drops_only_the_bad_steps(tmp_path: Path) -> None:
    import pytorch_lightning as pl
    from testkit.fault_heads import NanLossHead

    from kpreg.data.synthetic_datamodule import SyntheticPoseDataModule
    from kpreg.training.module import KeypointModule

    data = SyntheticPoseDataModule(image_size=32, num_train=24, num_val=4, batch_size=4, num_workers=0)
    model = KeypointModule(NanLossHead(nan_from_call=2, nan_calls=2, neck_channels=16), backbone="test_resnet",
                           input_size=(32, 32), nonfinite_loss="skip")
    trainer = pl.Trainer(max_steps=6, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, default_root_dir=tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # shared cores: oversubscribed threads make tiny steps far slower
    try:
        with pytest.warns(UserWarning, match=r"non-finite training loss at global step 2 .*skipping"):
            trainer.fit(model, datamodule=data)
    finally:
        torch.set_num_threads(threads)
    assert model.skipped_steps == 2 and trainer.global_step == 6
    assert all(torch.isfinite(p).all() for p in model.parameters())
    # AdamW counts only the updates it made: 6 steps, 2 of them skipped.
    steps = {int(s["step"]) for s in trainer.optimizers[0].state.values()}
    assert steps == {4}
