"""The embedded default datamodule: synthetic figures (``kpreg.data.synthetic``), no files needed."""

from __future__ import annotations

from typing import Any

import numpy as np
from torch.utils.data import Dataset

from kpreg.data.datamodule import KeypointDataModule, PredictionSources
from kpreg.data.sample import BOX_AREA_FACTOR, extent_box, make_sample
from kpreg.data.synthetic import SyntheticFigure, render_figure
from kpreg.data.unlabelled import ClipOptions
from kpreg.formats.mpii import MPII_FLIP_PAIRS, MPII_JOINT_NAMES, MPII_SIGMAS, MPII_SKELETON

# Offsets that give each split its own random stream, so no validation figure is a training figure.
_SPLIT_STREAM = {"train": 0, "val": 1_000_003}
_IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # the figure is drawn at the input size


class SyntheticPoseDataset(Dataset):
    """``length`` figures of stream ``seed``; sample ``i`` is always the same image and labels.

    ``cache``: keep every rendered figure in memory (≈ 12 kB each at 64 × 64), so that each is drawn once per
    process instead of once per epoch. The data is a pure function of ``(seed, i)`` and the synthetic training
    set has no augmentation, so a cached figure is exactly the one that would be drawn again.
    """

    def __init__(self, seed: int, length: int, image_size: int, joint_markers: bool = True,
                 cache: bool = True) -> None:
        self.seed, self.length, self.image_size = seed, length, image_size
        self.joint_markers = joint_markers
        self._cache: dict[int, SyntheticFigure] | None = {} if cache else None

    def __len__(self) -> int:
        return self.length

    def figure(self, index: int) -> SyntheticFigure:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} synthetic samples")
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        fig = render_figure(self.seed, index, self.image_size, self.joint_markers)
        if self._cache is not None:
            self._cache[index] = fig
        return fig

    def __getitem__(self, index: int) -> dict[str, Any]:
        fig = self.figure(index)
        visible = np.ones(len(fig.keypoints), dtype=bool)  # every joint is labelled, occluded ones too
        w, h = extent_box(fig.keypoints, visible)  # the figure's box: the extent of its joints
        return make_sample(
            image=fig.image,
            keypoints=fig.keypoints,
            visibility=visible.astype(np.float32),
            index=index,
            affine_inv=_IDENTITY,
            keypoints_orig=fig.keypoints,
            visible_orig=visible,
            norm_length=fig.head_size,
            box_size=max(w, h),
            scale=np.sqrt(BOX_AREA_FACTOR * w * h),
            occluded=fig.occluded,
        )

    def keypoints_only(self) -> tuple[np.ndarray, np.ndarray]:
        """(N, K, 2) input pixels and (N, K) visibility of every figure (``Head.fit``)."""
        keypoints = np.stack([self.figure(i).keypoints for i in range(self.length)])
        return keypoints, np.ones(keypoints.shape[:2], dtype=bool)


class SyntheticPoseDataModule(KeypointDataModule):
    """Synthetic 16-joint figures in MPII's joint order, scored with PCKh exactly as MPII (and with the pixel
    figures of every dataset).

    Args:
        image_size: side of the square images (the input size).
        num_train / num_val: samples per split; the test split is the validation split.
        seed: selects the random streams; the same seed always gives the same dataset.
        joint_markers: draw a small dark disc on every joint (real images have none; see the README).
        cache: keep rendered figures in memory (each is drawn once per process, not once per epoch).
    unlabelled_videos / unlabelled_clips: video for the unsupervised losses (``KeypointDataModule``), e.g. the
            synthetic video's clips (``kpreg.data.synthetic_video.write_clip``); frames are seen whole, as the figures.
    """

    keypoint_names = list(MPII_JOINT_NAMES)
    flip_pairs = [tuple(p) for p in MPII_FLIP_PAIRS]
    skeleton = [tuple(e) for e in MPII_SKELETON]
    sigmas = list(MPII_SIGMAS)
    metric_families = ("pckh", "pixel")
    scale_kind = "head"
    title = "Synthetic validation (MPII protocol)"

    def __init__(
        self,
        image_size: int = 64,
        num_train: int = 8000,
        num_val: int = 500,
        seed: int = 0,
        joint_markers: bool = True,
        cache: bool = True,
        batch_size: int = 32,
        num_workers: int = 1,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        primary_metric: str | None = None,
        train_budget: int | str | None = None,
        budget_seed: int = 0,
        unlabelled_videos: list[str] | None = None,
        unlabelled_clips: ClipOptions | None = None,
    ) -> None:
        super().__init__(batch_size, num_workers, pin_memory, persistent_workers, primary_metric, train_budget,
                         budget_seed, unlabelled_videos, unlabelled_clips)
        self.image_size, self.num_train, self.num_val, self.seed = image_size, num_train, num_val, seed
        self.joint_markers, self.cache = joint_markers, cache

    @property
    def input_size(self) -> tuple[int, int]:
        return (self.image_size, self.image_size)

    def _build_datasets(self, stage: str | None) -> dict[str, Dataset]:
        def split(name: str, length: int) -> SyntheticPoseDataset:
            return SyntheticPoseDataset(self.seed + _SPLIT_STREAM[name], length, self.image_size,
                                        self.joint_markers, self.cache)

        val = split("val", self.num_val)
        return {"train": split("train", self.num_train), "val": val, "test": val}

    def prediction_sources(self) -> PredictionSources:
        """Every sample is its own generated image: no file, no ground-truth id (``frame_index`` is the sample's)."""
        if "test" not in self.datasets:
            self.setup("test")
        n = len(self.datasets["test"])  # type: ignore[arg-type]
        frames = np.arange(n, dtype=np.int64)  # (S,)
        return PredictionSources(frames, ("",) * n, frames, np.ones(n))
