"""The dataset-agnostic part of every datamodule: loaders, keypoint metadata, the metric factory.

A subclass provides the datasets (``_build_datasets``), the keypoint metadata (names, flip pairs,
skeleton), the validation metric, and how to write predictions. ``KeypointModule`` and the CLI read only
what is declared here, so they never know which dataset runs.
"""

from __future__ import annotations

import os
from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torchmetrics
from rich.table import Table
from torch.utils.data import DataLoader, Dataset

from kpreg.samplers import (
    PaddedEvalSampler,
    PaddingFlagDataset,
    ResumableDataLoader,
    ResumableTrainSampler,
    padded_eval_length,
)


class KeypointDataModule(pl.LightningDataModule):
    """Args:
    batch_size: samples per device and step (the total batch is ``batch_size × devices × num_nodes``).
    num_workers: loader processes (0 = load in the main process).
    pin_memory: page-locked host memory for faster host → GPU copies.
    persistent_workers: keep loader processes alive between epochs.
    """

    keypoint_names: list[str]
    flip_pairs: list[tuple[int, int]]
    skeleton: list[tuple[int, int]]
    primary_metric: str = "Mean"  # the key of ``build_metric().compute()`` that selects the best checkpoint

    def __init__(
        self,
        batch_size: int = 32,
        num_workers: int = 2,
        pin_memory: bool = True,
        persistent_workers: bool = True,
    ) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers
        self.datasets: dict[str, Dataset] = {}

    # ---- what the model is linked to -------------------------------------------------------------
    @property
    def num_keypoints(self) -> int:
        return len(self.keypoint_names)

    @property
    @abstractmethod
    def input_size(self) -> tuple[int, int]:
        """(H, W) of the network input."""

    # ---- datasets and loaders ----------------------------------------------------------------------
    @abstractmethod
    def _build_datasets(self, stage: str | None) -> dict[str, Dataset]:
        """Return the datasets needed for ``stage`` under the keys 'train', 'val', 'test'."""

    def setup(self, stage: str | None = None) -> None:
        self.datasets.update(self._build_datasets(stage))

    def _replicas(self) -> tuple[int, int]:
        """(world size, global rank) of the attached trainer; (1, 0) outside a trainer."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 1, 0
        return int(trainer.world_size), int(trainer.global_rank)

    def _loader(self, split: str, train: bool) -> DataLoader:
        # Our own DistributedSampler subclasses (kpreg.samplers): Lightning leaves them in place. Training:
        # a seeded, epoch-dependent shard whose position is checkpointed (exact mid-epoch resume). Evaluation:
        # in-order shards padded to equal length with the pads flagged, so every sample counts exactly once.
        if split not in self.datasets:
            self.setup("fit" if split in ("train", "val") else "test")
        world, rank = self._replicas()
        options: dict[str, Any] = dict(
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.persistent_workers and self.num_workers > 0,
        )
        dataset = self.datasets[split]
        if train:
            # PL_GLOBAL_SEED is set by seed_everything (the config's seed_everything), as for Lightning's own sampler.
            seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
            sampler = ResumableTrainSampler(dataset, num_replicas=world, rank=rank, seed=seed)
            return ResumableDataLoader(dataset, sampler=sampler, drop_last=True, **options)
        flagged = PaddingFlagDataset(dataset, padded_eval_length(len(dataset), world))  # type: ignore[arg-type]
        return DataLoader(flagged, sampler=PaddedEvalSampler(flagged, num_replicas=world, rank=rank), **options)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    # ---- evaluation --------------------------------------------------------------------------------
    @abstractmethod
    def build_metric(self) -> torchmetrics.Metric:
        """A fresh metric with ``update(pred (B,K,2) original px, scores (B,K), meta)``; ``compute()``
        returns a flat dict of floats that includes ``primary_metric``."""

    @abstractmethod
    def write_predictions(
        self, out_dir: Path, indices: torch.Tensor, coords: torch.Tensor, scores: torch.Tensor
    ) -> list[Path]:
        """Write test-split predictions (in dataset order, original pixels) in the dataset's own format."""

    @abstractmethod
    def metric_table(self, metrics: dict[str, float]) -> Table:
        """The metric table printed by evaluate.py."""

    def describe(self) -> dict[str, Any]:
        """Keypoint metadata for logging and drawing."""
        return {
            "keypoint_names": list(self.keypoint_names),
            "flip_pairs": [list(p) for p in self.flip_pairs],
            "skeleton": [list(e) for e in self.skeleton],
        }


def check_flip_pairs(flip_pairs: Sequence[Sequence[int]], num_keypoints: int) -> list[tuple[int, int]]:
    """Validate left/right pairs: in range, disjoint."""
    seen: set[int] = set()
    pairs = []
    for a, b in flip_pairs:
        if not (0 <= a < num_keypoints and 0 <= b < num_keypoints) or a == b or {a, b} & seen:
            raise ValueError(f"invalid flip pair ({a}, {b}) for {num_keypoints} keypoints")
        seen |= {a, b}
        pairs.append((int(a), int(b)))
    return pairs
