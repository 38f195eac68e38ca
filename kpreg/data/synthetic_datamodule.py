"""The embedded default datamodule: synthetic figures (``kpreg.data.synthetic``), no files needed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.table import Table
from torch.utils.data import Dataset

from kpreg.data.datamodule import KeypointDataModule
from kpreg.data.sample import make_sample
from kpreg.data.synthetic import render_figure
from kpreg.metrics.batch_pckh import BatchPCKh, pckh_table
from kpreg.metrics.pckh import MPII_FLIP_PAIRS, MPII_JOINT_NAMES, MPII_SKELETON

# Offsets that give each split its own random stream, so no validation figure is a training figure.
_SPLIT_STREAM = {"train": 0, "val": 1_000_003}


class SyntheticPoseDataset(Dataset):
    """``length`` figures of stream ``seed``; sample ``i`` is always the same image and labels."""

    def __init__(self, seed: int, length: int, image_size: int) -> None:
        self.seed, self.length, self.image_size = seed, length, image_size

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} synthetic samples")
        fig = render_figure(self.seed, index, self.image_size)
        identity = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # the figure is drawn at the input size
        visible = np.ones(len(fig.keypoints), dtype=bool)  # every joint is labelled, occluded ones too
        return make_sample(
            image=fig.image,
            keypoints=fig.keypoints,
            visibility=visible.astype(np.float32),
            index=index,
            affine_inv=identity,
            keypoints_orig=fig.keypoints,
            visible_orig=visible,
            norm_length=fig.head_size,
            occluded=fig.occluded,
        )


class SyntheticPoseDataModule(KeypointDataModule):
    """Synthetic 16-joint figures in MPII's joint order, scored with PCKh exactly as MPII.

    Args:
        image_size: side of the square images (the input size).
        num_train / num_val: samples per split; the test split is the validation split.
        seed: selects the random streams; the same seed always gives the same dataset.
    """

    keypoint_names = list(MPII_JOINT_NAMES)
    flip_pairs = [tuple(p) for p in MPII_FLIP_PAIRS]
    skeleton = [tuple(e) for e in MPII_SKELETON]

    def __init__(
        self,
        image_size: int = 64,
        num_train: int = 8000,
        num_val: int = 500,
        seed: int = 0,
        batch_size: int = 32,
        num_workers: int = 1,
        pin_memory: bool = True,
        persistent_workers: bool = True,
    ) -> None:
        super().__init__(batch_size, num_workers, pin_memory, persistent_workers)
        self.image_size, self.num_train, self.num_val, self.seed = image_size, num_train, num_val, seed

    @property
    def input_size(self) -> tuple[int, int]:
        return (self.image_size, self.image_size)

    def _build_datasets(self, stage: str | None) -> dict[str, Dataset]:
        def split(name: str, length: int) -> SyntheticPoseDataset:
            return SyntheticPoseDataset(self.seed + _SPLIT_STREAM[name], length, self.image_size)

        val = split("val", self.num_val)
        return {"train": split("train", self.num_train), "val": val, "test": val}

    def build_metric(self) -> BatchPCKh:
        return BatchPCKh(joint_names=self.keypoint_names)

    def write_predictions(
        self, out_dir: Path, indices: torch.Tensor, coords: torch.Tensor, scores: torch.Tensor
    ) -> list[Path]:
        path = Path(out_dir) / "predictions.json"
        records = [
            {"index": int(i), "keypoints": c.tolist(), "scores": s.tolist()}
            for i, c, s in zip(indices, coords.double(), scores.double())
        ]
        path.write_text(json.dumps({"keypoint_names": self.keypoint_names, "predictions": records}))
        return [path]

    def metric_table(self, metrics: dict[str, float]) -> Table:
        return pckh_table(metrics, title="Synthetic validation — PCKh (MPII protocol)")
