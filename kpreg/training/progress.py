"""Progress that reads anywhere: plain lines for log files, SLURM and CI.

A rich or tqdm bar redraws one line in place; written to a file (``nohup``, SLURM, CI, ``> log.txt``) it shows
nothing until an epoch ends, or a flood of carriage returns. ``LogLineProgress`` prints a complete line instead,
every ``every_n_seconds`` (and at each epoch's end)::

    epoch 1/4  step 120/300 (40%)  loss 0.0123  6.1 it/s  ETA 0:00:30
    epoch 1/4  validation  val/score 84.63  val/loss 0.0021  (12.3 s)

With unlabelled video (``model.unsupervised``) the training line also shows the unsupervised terms, in pixels beyond
their ε: ``loss 0.0519  temporal 0.412  pca 0.031``.

``train.py`` uses it when standard output is not a terminal, Lightning's bar otherwise (``kpreg.progress``:
how the display is chosen).
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

import pytorch_lightning as pl
from pytorch_lightning.callbacks.progress.progress_bar import ProgressBar

from kpreg.progress import format_duration

UNSUPERVISED_TERMS = ("temporal", "pca")  # kpreg.training.unsupervised's logged terms


def _fmt_value(value: Any) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.1f}"


class LogLineProgress(ProgressBar):
    """Args:
    every_n_seconds: print a training line at most this often (and always at an epoch's end).
    stream: where to print (default: standard output).
    """

    def __init__(self, every_n_seconds: float = 10.0, stream: TextIO | None = None) -> None:
        super().__init__()
        if every_n_seconds < 0:
            raise ValueError(f"every_n_seconds must be >= 0, got {every_n_seconds}")
        self.every_n_seconds = every_n_seconds
        self.stream = stream
        self._enabled = True
        self._last_print = 0.0
        self._epoch_start = 0.0
        self._first_batch: int | None = None  # the epoch's first batch index (not 0 when a run resumes mid-epoch)
        self._val_start = 0.0

    # ---- ProgressBar API -------------------------------------------------------------------------------
    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def _print(self, line: str) -> None:
        if self._enabled:
            print(line, file=self.stream or sys.stdout, flush=True)

    def _epoch(self, trainer: pl.Trainer) -> str:
        total = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None
        return f"epoch {trainer.current_epoch + 1}" + (f"/{total}" if total else "")

    # ---- training --------------------------------------------------------------------------------------
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_start = self._last_print = time.monotonic()
        self._first_batch = None

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        now = time.monotonic()
        if self._first_batch is None:
            self._first_batch = batch_idx
        total = self.total_train_batches
        last = isinstance(total, int) and batch_idx + 1 >= total
        if now - self._last_print < self.every_n_seconds and not last:
            return
        self._last_print = now
        done = batch_idx + 1
        rate = (done - self._first_batch) / max(now - self._epoch_start, 1e-9)  # batches per second
        parts = [self._epoch(trainer)]
        if isinstance(total, int) and total > 0:
            parts.append(f"step {done}/{total} ({100 * done // total}%)")
        else:
            parts.append(f"step {done}")
        loss = trainer.callback_metrics.get("train/loss")
        if loss is not None:
            parts.append(f"loss {_fmt_value(loss)}")
        for name in UNSUPERVISED_TERMS:  # with unlabelled video: its terms (px beyond ε), unweighted
            value = trainer.callback_metrics.get(f"train/{name}")
            if value is not None:
                parts.append(f"{name} {_fmt_value(value)}")
        parts.append(f"{rate:.1f} it/s")
        if isinstance(total, int) and total > 0 and rate > 0:
            parts.append(f"ETA {format_duration((total - done) / rate)}")
        self._print("  ".join(parts))

    # ---- validation and test -----------------------------------------------------------------------------
    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._val_start = time.monotonic()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics
        shown = [f"{k} {_fmt_value(metrics[k])}" for k in ("val/score", "val/loss") if k in metrics]
        self._print("  ".join([self._epoch(trainer), "validation", *shown,
                               f"({time.monotonic() - self._val_start:.1f} s)"]))

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._val_start = time.monotonic()
        self._print("evaluating …")

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._print(f"evaluated in {time.monotonic() - self._val_start:.1f} s")
