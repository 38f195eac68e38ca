"""The dataset-agnostic part of every datamodule: loaders, keypoint layout, the evaluation declaration.

A subclass provides the datasets (``_build_datasets``), the keypoint layout (names, flip pairs, skeleton, OKS
sigmas), its evaluation protocol (``evaluation()``: which scale normalises errors, the metric families it is scored
with, a COCO ground truth where there is one), where each evaluated sample comes from (``prediction_sources``) and its
own predictions files (``write_dataset_predictions``) beside the ``predictions.json`` every dataset writes the same
way. ``KeypointModule`` and the CLI read only what is declared here, so they never know which dataset runs;
``kpreg.metrics.build_metrics`` turns the declaration into metrics.
"""

from __future__ import annotations

import os
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from kpreg.data.budget import BudgetDataset, nested_subset, parse_budget
from kpreg.data.errors import DataError
from kpreg.data.samplers import (
    PaddedEvalSampler,
    PaddingFlagDataset,
    ResumableDataLoader,
    ResumableTrainSampler,
    padded_eval_length,
)
from kpreg.data.topdown import Augmentation
from kpreg.data.unlabelled import (
    ClipOptions,
    ClipSampler,
    VideoClipDataset,
    clip_batches_needed,
    expand_videos,
    probe_video,
)
from kpreg.formats.layout import EvaluationSpec, KeypointLayout, MetricFamily, ScaleKind
from kpreg.formats.oks import instance_score
from kpreg.formats.predictions import write_predictions

if TYPE_CHECKING:
    from kpreg.data.topdown import PersonRecord


@dataclass(frozen=True, eq=False)  # eq=False: arrays have no single truth value
class PredictionSources:
    """Where each sample of an evaluated split comes from (the fields of ``kpreg.formats.predictions``), S samples."""

    image_id: np.ndarray  # (S,) int64: the ground truth's image id, else frame_index
    file_name: tuple[str, ...]  # (S,) the image, relative to the dataset's image folder; "" for generated images
    frame_index: np.ndarray  # (S,) int64: the image's position among the split's images (first appearance)
    box_score: np.ndarray  # (S,) float64: the box's detector score (1 for ground-truth boxes)

    def __len__(self) -> int:
        return len(self.file_name)

    @classmethod
    def of_records(cls, records: Sequence[PersonRecord], root: Path | None = None) -> PredictionSources:
        """From top-down records: their images (relative to ``root`` where they lie under it), ``extra``'s
        ``image_id`` and ``box_score`` where given."""
        names = [_relative(r.image_path, root) for r in records]
        first: dict[str, int] = {}
        frames = np.array([first.setdefault(n, len(first)) for n in names], dtype=np.int64)  # (S,)
        ids = [r.extra.get("image_id", f) for r, f in zip(records, frames)]
        return cls(np.array(ids, dtype=np.int64), tuple(names), frames,
                   np.array([r.extra.get("box_score", 1.0) for r in records], dtype=np.float64))


def _relative(path: str, root: Path | None) -> str:
    """``path`` relative to ``root`` (POSIX separators) where it lies under it, else as given."""
    if root is not None:
        try:
            return Path(path).relative_to(root).as_posix()
        except ValueError:
            pass
    return str(path)


class KeypointDataModule(pl.LightningDataModule):
    """Args:
    batch_size: samples per device and step (the total batch is ``batch_size × devices × num_nodes``).
    num_workers: loader processes (0 = load in the main process).
    pin_memory: page-locked host memory for faster host → GPU copies.
    persistent_workers: keep loader processes alive between epochs.
    unlabelled_videos: videos (paths or glob patterns) whose frames train the unsupervised losses (temporal
        difference, pose PCA: ``kpreg.training.unsupervised``), as clips of consecutive frames seen whole
        (``kpreg.data.unlabelled``); training steps then get a labelled batch and a batch of clips together.
    unlabelled_clips: how those clips are drawn (``ClipOptions``: frames per clip, their step, clips per step,
        loader processes).
    primary_metric: the metric key that selects the best checkpoint (``None``: the primary key of the first of the
        dataset's ``metric_families``: PCKh's on MPII, OKS AP's on COCO, the pixel error's on DeepLabCut projects).
        Any key the dataset's metrics report is allowed (``evaluate.py`` prints them); checkpointing follows its
        direction.
    train_budget: train on this many labelled frames (``40``) or this share of them (``"25%"``) only: a nested,
        seeded subset that keeps the epoch length (``kpreg.data.budget``); None: every training frame.
    budget_seed: the seed of the budget's frame order (a study sets it to the run's seed).
    """

    keypoint_names: list[str]
    flip_pairs: list[tuple[int, int]]
    skeleton: list[tuple[int, int]]
    sigmas: list[float]  # OKS sigmas per keypoint (COCOeval units)
    kp_score_thr: float = 0.2  # keypoint confidence above which it counts in the instance score (formats.oks)
    # The metrics it is scored with, in table order (kpreg.formats.layout.MetricFamily); the first one's primary key
    # is the default primary metric.
    metric_families: ClassVar[tuple[MetricFamily, ...]] = ("pixel",)
    scale_kind: ClassVar[ScaleKind] = "box"  # what meta.norm_length is (kpreg.formats.layout)
    title: ClassVar[str] = "validation"

    def __init__(
        self,
        batch_size: int = 32,
        num_workers: int = 2,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        primary_metric: str | None = None,
        train_budget: int | str | None = None,
        budget_seed: int = 0,
        unlabelled_videos: Sequence[str] | None = None,
        unlabelled_clips: ClipOptions | None = None,
    ) -> None:
        super().__init__()
        if train_budget is not None:
            parse_budget(train_budget)  # a malformed budget fails here, before any file is read
        self.train_budget = train_budget
        self.budget_seed = int(budget_seed)
        self.train_frames: int | None = None  # labelled frames trained on, known after setup("fit")
        self.unlabelled_videos = [str(v) for v in (unlabelled_videos or [])]
        if isinstance(unlabelled_clips, Mapping):  # a run's config.yaml read back without jsonargparse
            unlabelled_clips = ClipOptions(**unlabelled_clips)
        self.unlabelled_clips = unlabelled_clips or ClipOptions()
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers
        self.primary_metric = primary_metric or None
        self.datasets: dict[str, Dataset] = {}
        # Class-level keypoint layouts (MPII's, the synthetic data's) are copied per instance: the CLI links these
        # lists into the model, and nothing done to an instance's copy may change the class's.
        for name in ("keypoint_names", "flip_pairs", "skeleton", "sigmas"):
            if hasattr(self, name):
                setattr(self, name, [tuple(v) if isinstance(v, (list, tuple)) else v for v in getattr(self, name)])

    # ---- what the model is linked to -------------------------------------------------------------
    @property
    def num_keypoints(self) -> int:
        return len(self.keypoint_names)

    @property
    def flip_augmentation(self) -> bool:
        """Whether training flips images (then the model has learned mirrored images, and a flip test is sound even
        without left/right pairs). Datamodules with augmentation override this."""
        return False

    @property
    def layout(self) -> KeypointLayout:
        """The keypoints: names, skeleton, flip pairs, OKS sigmas."""
        sigmas = getattr(self, "sigmas", None)
        return KeypointLayout(
            names=tuple(self.keypoint_names),
            skeleton=tuple(tuple(e) for e in self.skeleton),  # type: ignore[misc]
            flip_pairs=tuple(tuple(p) for p in self.flip_pairs),  # type: ignore[misc]
            sigmas=tuple(float(s) for s in sigmas) if sigmas is not None and len(sigmas) else (),
        )

    @property
    @abstractmethod
    def input_size(self) -> tuple[int, int]:
        """(H, W) of the network input."""

    # ---- datasets and loaders ----------------------------------------------------------------------
    @abstractmethod
    def _build_datasets(self, stage: str | None) -> dict[str, Dataset]:
        """Return the datasets needed for ``stage`` under the keys 'train', 'val', 'test'."""

    def setup(self, stage: str | None = None) -> None:
        built = self._build_datasets(stage)
        if self.unlabelled_videos and stage in ("fit", None) and "unlabelled" not in self.datasets:
            built["unlabelled"] = self._unlabelled_dataset()
        for split, dataset in built.items():
            # An empty validation split would train with no validation, no checkpoint selection and no warning
            # (Lightning skips a loader without batches): refuse any empty split, saying where it came from.
            if len(dataset) == 0:  # type: ignore[arg-type]
                summary = self.split_summary(split)
                raise DataError(
                    f"the {split} split has no samples" + (f" ({summary})" if summary else "")
                    + ": check the annotation files and the split settings of the data config"
                )
        if "train" in built:
            built["train"] = self._budgeted(built["train"])
        self.datasets.update(built)

    def _budgeted(self, dataset: Dataset) -> Dataset:
        """The training set under ``train_budget`` (itself without one); sets ``train_frames``."""
        records = getattr(dataset, "records", None)
        keys = [r.image_path for r in records] if records is not None else list(range(len(dataset)))  # type: ignore[arg-type]
        self.train_frames = len(set(keys))
        if self.train_budget is None:
            return dataset
        summary = self.split_summary("train")
        indices = nested_subset(keys, self.train_budget, self.budget_seed,
                                what="the training split" + (f" ({summary})" if summary else ""))
        self.train_frames = len({keys[i] for i in indices})
        return BudgetDataset(dataset, indices, len(dataset))  # type: ignore[arg-type]

    def split_summary(self, split: str) -> str:
        """Where a split's samples come from and what was skipped (for messages); datamodules that read files
        override it."""
        return ""

    def _replicas(self) -> tuple[int, int]:
        """(world size, global rank) of the attached trainer; (1, 0) outside a trainer."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 1, 0
        return int(trainer.world_size), int(trainer.global_rank)

    def _loader(self, split: str, train: bool) -> DataLoader:
        # Our own DistributedSampler subclasses (kpreg.data.samplers): Lightning leaves them in place. Training:
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
            # Training drops the last incomplete batch (every step has the same batch): a split smaller than one
            # batch per device would train nothing, and Lightning ends such a run with exit code 0 and no checkpoint.
            if len(dataset) < self.batch_size * world:  # type: ignore[arg-type]
                raise DataError(
                    f"the train split has {len(dataset)} sample(s), fewer than one batch (data.init_args.batch_size "  # type: ignore[arg-type]
                    f"{self.batch_size}" + (f" × {world} devices" if world > 1 else "") + "): nothing would be "
                    "trained; lower the batch size or add samples"
                )
            # PL_GLOBAL_SEED is set by seed_everything (the config's seed_everything), as for Lightning's own sampler.
            seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
            sampler = ResumableTrainSampler(dataset, num_replicas=world, rank=rank, seed=seed)
            return ResumableDataLoader(dataset, sampler=sampler, drop_last=True, **options)
        flagged = PaddingFlagDataset(dataset, padded_eval_length(len(dataset), world))  # type: ignore[arg-type]
        return DataLoader(flagged, sampler=PaddedEvalSampler(flagged, num_replicas=world, rank=rank), **options)

    def train_dataloader(self) -> Any:
        """The labelled loader; with ``unlabelled_videos``, a ``CombinedLoader`` of it and the clips' loader, whose
        batches are ``{"labelled": batch, "unlabelled": clips}`` (as many clip batches as labelled ones)."""
        labelled = self._loader("train", train=True)
        if not self.unlabelled_videos:
            return labelled
        from pytorch_lightning.utilities import CombinedLoader

        return CombinedLoader({"labelled": labelled, "unlabelled": self._clip_loader(len(labelled))},
                              mode="max_size_cycle")

    # ---- unlabelled video --------------------------------------------------------------------------
    def unlabelled_view_error(self) -> str | None:
        """Why this data part cannot take unlabelled frames, seen whole (None: it can). A data part that trains on
        crops around the animal only overrides it."""
        return None

    def unlabelled_augmentation(self) -> Augmentation | None:
        """The augmentation drawn once per unlabelled clip (its training augmentation, where it has one)."""
        return None

    def _unlabelled_dataset(self) -> VideoClipDataset:
        why = self.unlabelled_view_error()
        if why is not None:
            raise DataError(f"unlabelled_videos: {why}")
        videos = [probe_video(path) for path in expand_videos(self.unlabelled_videos)]
        return VideoClipDataset(videos, self.unlabelled_clips, self.input_size, self.flip_pairs,
                                self.unlabelled_augmentation())

    def _clip_loader(self, labelled_batches: int) -> DataLoader:
        if "unlabelled" not in self.datasets:
            self.setup("fit")
        world, rank = self._replicas()
        options = self.unlabelled_clips
        dataset = self.datasets["unlabelled"]
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        sampler = ClipSampler(dataset, clip_batches_needed(labelled_batches, options), seed, world, rank)  # type: ignore[arg-type]
        return DataLoader(dataset, batch_size=options.clips_per_batch, sampler=sampler, drop_last=True,
                          num_workers=options.num_workers, persistent_workers=options.num_workers > 0,
                          pin_memory=self.pin_memory and torch.cuda.is_available())


    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    # ---- evaluation --------------------------------------------------------------------------------
    def evaluation(self) -> EvaluationSpec:
        """How this dataset is evaluated (``kpreg.metrics.build_metrics`` builds its metrics from this)."""
        return EvaluationSpec(layout=self.layout, scale=self.scale_kind, primary=self.primary_metric,
                              title=self.title, families=self.metric_families)

    # ---- predictions -------------------------------------------------------------------------------
    def write_predictions(
        self, out_dir: Path, indices: torch.Tensor, coords: torch.Tensor, scores: torch.Tensor
    ) -> list[Path]:
        """Write test-split predictions: the dataset's own files (``write_dataset_predictions``), then
        ``predictions.json`` (``kpreg.formats.predictions``: the one schema of every dataset and of ``predict.py``).

        indices (N,) test-split positions; coords (N, K, 2) x,y original pixels; scores (N, K) keypoint confidences.
        """
        idx = indices.detach().cpu().long().numpy()  # (N,)
        xy = coords.detach().cpu().double().numpy()  # (N, K, 2) x,y original pixels
        conf = scores.detach().cpu().double().numpy()  # (N, K)
        sources = self.prediction_sources()
        outside = idx[(idx < 0) | (idx >= len(sources))]
        if outside.size:
            raise DataError(f"prediction indices {outside[:5].tolist()} are outside the test split "
                            f"({len(sources)} samples)")
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        written = self.write_dataset_predictions(out_dir, idx, xy, conf)
        instance = instance_score(conf, sources.box_score[idx], self.kp_score_thr)  # (N,)
        path = write_predictions(out_dir / "predictions.json", xy, conf, instance, sources.image_id[idx],
                                 [sources.file_name[i] for i in idx], sources.frame_index[idx], idx,
                                 self.category_id)
        return [path, *written]

    def write_dataset_predictions(
        self, out_dir: Path, indices: np.ndarray, coords: np.ndarray, scores: np.ndarray
    ) -> list[Path]:
        """The dataset's own predictions files where users need them (COCO results, MPII's ``pred.mat``, a DeepLabCut
        table); none by default. indices (N,), coords (N, K, 2) x,y original pixels, scores (N, K)."""
        return []

    @property
    def category_id(self) -> int:
        """The COCO category of the predicted instances (``predictions.json``)."""
        return 1

    @property
    def image_root(self) -> Path | None:
        """The folder the predictions file names images relative to (None: the paths as the records give them)."""
        return None

    def prediction_sources(self) -> PredictionSources:
        """Where each sample of the test split comes from: by default, the images of its top-down records."""
        if "test" not in self.datasets:
            self.setup("test")
        records = getattr(self.datasets["test"], "records", None)
        if records is None:
            raise NotImplementedError(f"{type(self).__name__}: a test split without records needs prediction_sources")
        return PredictionSources.of_records(records, self.image_root)

    def describe(self) -> dict[str, Any]:
        """Keypoint metadata for logging, drawing and checkpoints."""
        return self.layout.describe()

    # ---- what a head may learn from before training (``Head.fit``) ---------------------------------
    def training_keypoints(self) -> tuple[np.ndarray, np.ndarray]:
        """The training set's keypoints in input pixels without augmentation, (N, K, 2), and their visibility
        (N, K): what ``Head.fit`` sees once before training (e.g. to cluster anchor poses)."""
        if "train" not in self.datasets:
            self.setup("fit")
        dataset = self.datasets["train"]
        fast = getattr(dataset, "keypoints_only", None)  # top-down datasets: no image is read
        if fast is not None:
            return fast()
        samples = [dataset[i] for i in range(len(dataset))]  # type: ignore[arg-type]
        keypoints = np.stack([s["keypoints"].numpy() for s in samples]).astype(np.float64)
        visibility = np.stack([s["visibility"].numpy() for s in samples]) > 0
        return keypoints, visibility


    def labelled_poses(self) -> tuple[np.ndarray, np.ndarray]:
        """The training split's labelled poses in *original* pixels, (N, K, 2), and their labelled mask (N, K): what
        the pose PCA of the unsupervised losses is fitted on (``kpreg.training.unsupervised``), in the pixels of the
        frames whose predictions it scores. Top-down datasets read their records; a dataset drawn at its input size
        (the synthetic figures) has input pixels = original pixels."""
        if "train" not in self.datasets:
            self.setup("fit")
        records = getattr(self.datasets["train"], "records", None)
        if records is None:
            return self.training_keypoints()
        poses = np.stack([np.asarray(r.keypoints, dtype=np.float64) for r in records])  # (N, K, 2) original px
        return poses, np.stack([np.asarray(r.visible, dtype=bool) for r in records])


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
