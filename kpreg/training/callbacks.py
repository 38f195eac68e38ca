"""Fault tolerance: the ``last.ckpt`` that a run resumes from, atomic checkpoint files, timm-aware SyncBatchNorm.

The last two are Trainer plugins (``Trainer(plugins=[...])``, Lightning's public plugin API), added by the CLI.

``LastCheckpoint`` owns ``<dirpath>/last.ckpt`` (the ``checkpoint`` callback keeps ``best.ckpt``). It is written

* every ``every_n_train_steps`` optimizer steps and/or ``every_n_minutes`` (mid-epoch: with the training
  loader's position, see ``kpreg.data.samplers``, a killed run loses at most that much work),
* after every validation, at the end of training,
* when the process receives SIGTERM (pre-emption): Lightning finishes the current batch and raises
  ``SIGTERMException``; the checkpoint is written then and the process exits.

It never writes parameters that are NaN or infinite, so the file on disk is always the last good state.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.cloud_io import get_filesystem
from pytorch_lightning.callbacks import Checkpoint
from pytorch_lightning.plugins.io import TorchCheckpointIO
from pytorch_lightning.plugins.layer_sync import TorchSyncBatchNorm
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from pytorch_lightning.utilities.exceptions import SIGTERMException
from torch import nn


class LastCheckpoint(Checkpoint):
    """Args:
    every_n_train_steps: write ``last.ckpt`` every this many optimizer steps (0 = never mid-epoch).
    every_n_minutes: also write it when this much wall time has passed since the last write (None = off).
    dirpath: where ``last.ckpt`` goes (the CLI sets it to ``checkpoint.dirpath``).
    """

    FILENAME = "last.ckpt"

    def __init__(self, every_n_train_steps: int = 100, every_n_minutes: float | None = None,
                 dirpath: str | None = None) -> None:
        if every_n_train_steps < 0:
            raise ValueError(f"every_n_train_steps must be >= 0, got {every_n_train_steps}")
        self.every_n_train_steps = every_n_train_steps
        self.every_n_minutes = every_n_minutes
        self.dirpath = dirpath
        self.last_model_path = ""
        self._last_step_saved = -1
        self._last_time = time.monotonic()

    @property
    def path(self) -> str:
        if self.dirpath is None:
            raise ValueError("LastCheckpoint.dirpath is not set")
        return str(Path(self.dirpath) / self.FILENAME)

    def save(self, trainer: pl.Trainer, reason: str) -> bool:
        """Write ``last.ckpt`` unless the weights are not finite. Called on every rank (it is collective)."""
        module = trainer.lightning_module
        bad = [name for name, p in module.named_parameters() if not bool(torch.isfinite(p.detach()).all())]
        if bad:
            # DDP replicas hold identical weights, so every rank takes the same decision.
            rank_zero_warn(f"not writing {self.path} ({reason}) at global step {trainer.global_step}: "
                           f"non-finite parameters ({', '.join(bad[:3])}{' …' if len(bad) > 3 else ''}); "
                           "the previous last.ckpt is kept")
            return False
        trainer.save_checkpoint(self.path, weights_only=False)
        self.last_model_path = self.path
        self._last_step_saved = trainer.global_step
        self._last_time = time.monotonic()
        return True

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero and self.dirpath is not None:
            # A process killed while writing leaves its temporary file (never last.ckpt itself): tidy up.
            for stale in Path(self.dirpath).glob(f".{self.FILENAME}.tmp-*"):
                stale.unlink(missing_ok=True)
        # A resumed run must not re-save the step it resumed from in the middle of an accumulation window.
        self._last_step_saved = trainer.global_step
        self._last_time = time.monotonic()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        # global_step only moves on optimizer steps, so a save always falls right after one (never in the
        # middle of gradient accumulation, whose partial gradients are not in the checkpoint).
        if step == self._last_step_saved or trainer.sanity_checking:
            return
        due = self.every_n_train_steps > 0 and step % self.every_n_train_steps == 0
        if self.every_n_minutes is not None:
            elapsed = torch.tensor(time.monotonic() - self._last_time)
            # Clocks differ between processes: rank 0 decides, so that every rank joins the collective save.
            elapsed = trainer.strategy.broadcast(elapsed, src=0)
            due = due or float(elapsed) >= 60.0 * self.every_n_minutes
        if due and not _after_last_batch(trainer):
            self.save(trainer, "periodic")

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # After the epoch's validation (Lightning 2.x runs it before this hook), like ModelCheckpoint.
        self.save(trainer, "end of epoch")

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_step != self._last_step_saved or not self.last_model_path:
            self.save(trainer, "end of training")

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException) and trainer.state.fn == "fit":
            # Lightning raises this after the current batch has completed: a consistent state to resume from,
            # except right after an epoch's last batch (see _after_last_batch).
            if _after_last_batch(trainer):
                rank_zero_warn(f"SIGTERM after the last batch of an epoch: keeping {self.path} from step "
                               f"{self._last_step_saved} (Lightning cannot resume exactly from this point)")
                return
            if self.save(trainer, "SIGTERM"):
                rank_zero_info(f"SIGTERM: saved {self.path} at global step {trainer.global_step}; "
                               "resume with --ckpt_path last")

    def state_dict(self) -> dict[str, Any]:
        return {"dirpath": self.dirpath, "last_model_path": self.last_model_path}


def _after_last_batch(trainer: pl.Trainer) -> bool:
    """True between an epoch's last training batch and its end-of-epoch hooks. Lightning 2.6 resumes from a
    checkpoint taken there as if the epoch were over but skips its validation and miscounts epochs, so
    ``last.ckpt`` is written a moment later, at the end of the epoch, instead."""
    progress = trainer.fit_loop.epoch_loop.batch_progress.current
    return progress.processed >= trainer.num_training_batches


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to a temporary file in the target directory, fsync, then ``os.replace``.

    Lightning 2.6 writes through an fsspec transaction whose temporary file lives in the system temp
    directory and is *moved* into place: across file systems (``/tmp`` on tmpfs, runs on a network disk)
    that move is a copy, and a process killed during it leaves a truncated checkpoint. A rename within one
    directory is atomic on POSIX: readers see the old file or the new one, never a partial one.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if "://" in str(path):  # remote storage: fsspec's own transaction is the best available
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO does not take storage_options")
        target = Path(path)
        get_filesystem(str(target)).makedirs(str(target.parent), exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                tmp.unlink()
        try:  # make the rename itself durable
            dir_fd = os.open(target.parent, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class TimmSyncBatchNorm(TorchSyncBatchNorm):
    """``trainer.sync_batchnorm: true`` with timm's converter, which keeps the activation of timm's fused
    ``BatchNormAct2d`` layers (torch's ``convert_sync_batchnorm`` would silently drop it)."""

    def apply(self, model: nn.Module) -> nn.Module:
        from timm.layers import convert_sync_batchnorm

        return convert_sync_batchnorm(model)

    def revert(self, model: nn.Module) -> nn.Module:
        from timm.layers import BatchNormAct2d
        from timm.layers.norm_act import SyncBatchNormAct

        if isinstance(model, SyncBatchNormAct):
            reverted = BatchNormAct2d(model.num_features, model.eps, model.momentum, model.affine,
                                      model.track_running_stats)
            reverted.act, reverted.drop = model.act, model.drop
            if model.affine:
                reverted.weight, reverted.bias = model.weight, model.bias
            reverted.running_mean, reverted.running_var = model.running_mean, model.running_var
            reverted.num_batches_tracked = model.num_batches_tracked
            for name, child in model.named_children():
                if name not in ("act", "drop"):
                    reverted.add_module(name, self.revert(child))
            return reverted
        if isinstance(model, nn.SyncBatchNorm):
            return super().revert(model)
        for name, child in model.named_children():
            model.add_module(name, self.revert(child))
        return model


__all__ = ["AtomicCheckpointIO", "LastCheckpoint", "TimmSyncBatchNorm"]
