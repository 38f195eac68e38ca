"""A DeepLabCut / Lightning Pose project folder as a top-down datamodule.

The project (see ``kpreg.formats.deeplabcut`` for the table format)::

    my_project/
      config.yaml                              optional: DeepLabCut's project config (Task, skeleton)
      labeled-data/<video>/CollectedData_<scorer>.csv   (or .h5; several video folders)
      labeled-data/<video>/img0042.png …       the frames, named in the tables relative to the project
      CollectedData.csv                        Lightning Pose: one table at the root, used when labeled-data has none

One sample is one labelled frame (single animal: one instance per frame), cropped by the shared top-down pipeline
(``kpreg.data.topdown``) as COCO and MPII are:

* **box** (``box_source``): ``keypoints`` = the labelled keypoints' extent, expanded to the input's aspect ratio
  and padded by ``padding`` (1.25; the protocol of "AP with ground-truth boxes": the animal fills the input, but a
  new video needs a box from elsewhere), ``image`` = the whole frame (no padding; what a video without boxes
  gives, at a lower resolution per animal), or ``both``: every training frame twice, once cropped to its labelled
  extent and once whole, so that one network finds the animal on a whole frame (coarsely) and then refines on the
  crop of what it found (``kpreg.inference.locate``); validation and evaluation use the labelled-extent crops, the
  network's fine pass. A frame whose labelled keypoints span no area cannot give a ``keypoints`` box: it is skipped
  and counted (with ``both``, its whole frame is still used).
* **scale**: the larger side of the labelled extent (unpadded) is the sample's ``box_size`` and ``norm_length``
  (PCK@0.1 is 0.1 of it); its square × 0.53 is the OKS area. A square of the larger side rather than the extent's
  w × h: an elongated animal lying along an image axis has an extent of almost no area, and its OKS would change
  with its heading.
* **split** (``kpreg.data.splits``): explicit lists, every n-th frame of each video (``val_every``), or a seeded
  fraction by frame or by video folder (``split_by``). Validation is also the test split (``evaluate.py``).
* **keypoints**: names from the tables' header; flip pairs inferred from left/right in the names (``leftear`` /
  ``rightear``) or given; the skeleton given, else read from the project's ``config.yaml``; OKS sigmas given, else
  ``default_sigma`` for every keypoint. The validation frames form an in-memory COCO ground truth, so OKS AP is
  reported beside the pixel errors (primary: the mean pixel error, lower is better).

Bad input is one error naming the file and the line (``DLCFormatError``, from the reader: a wrong header, an
``individuals`` row (multi-animal), a duplicated image, a missing image, a keypoint outside its image) or the
setting (``DataError``: a split rule, an unknown frame in a list, an empty split). Frames with every keypoint empty
and frames a ``keypoints`` box cannot crop are skipped, counted and printed when the splits are built.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from torch.utils.data import Dataset

from kpreg.coords import box_to_center_size
from kpreg.data.datamodule import KeypointDataModule, check_flip_pairs
from kpreg.data.errors import DataError
from kpreg.data.sample import BOX_AREA_FACTOR, extent_box
from kpreg.data.splits import Split, SplitBy, normalise_path, split_frames
from kpreg.data.topdown import (
    Augmentation,
    PersonRecord,
    SplitReport,
    TopDownDataset,
    TopDownTransform,
    print_report,
)
from kpreg.data.unlabelled import ClipOptions
from kpreg.formats.coco import load_coco
from kpreg.formats.deeplabcut import (
    DLCLabels,
    check_config_bodyparts,
    check_inside_images,
    read_image_sizes,
    read_project,
    read_project_config,
    write_collected_data,
)
from kpreg.formats.layout import EvaluationSpec

BoxSource = Literal["keypoints", "image", "both"]

# The COCO datamodule's augmentation (SimpleBaseline's scale ±30 %, rotation ±40° with p = 0.6) plus colour jitter
# (lab videos vary in lighting); horizontal flips only where the keypoints have left/right pairs (see __init__).
DLC_AUGMENTATION = Augmentation(
    scale_factor=0.3,
    rotation=40.0,
    rotation_prob=0.6,
    flip_prob=0.5,
    half_body_prob=0.0,
    half_body_min_joints=8,
    photometric=True,
)

CATEGORY_ID = 1  # the one category of the in-memory COCO ground truth


def _resolve_skeleton(
    edges: Sequence[Sequence[int | str]], names: Sequence[str], source: str
) -> list[tuple[int, int]]:
    """Skeleton edges given as index pairs or name pairs (DeepLabCut's config.yaml) → 0-based index pairs."""
    index = {n: i for i, n in enumerate(names)}
    out: list[tuple[int, int]] = []
    for n, edge in enumerate(edges):
        if len(edge) != 2:
            raise DataError(f"{source}: skeleton edge {n} is {list(edge)}, expected two keypoints")
        pair = []
        for end in edge:
            if isinstance(end, str) and not end.lstrip("-").isdigit():
                if end not in index:
                    raise DataError(f"{source}: skeleton edge {n} names {end!r}, which is not a keypoint "
                                    f"(keypoints: {list(names)})")
                pair.append(index[end])
            else:
                i = int(end)
                if not 0 <= i < len(names):
                    raise DataError(f"{source}: skeleton edge {n} has index {i}, out of range for {len(names)} "
                                    "keypoints")
                pair.append(i)
        out.append((pair[0], pair[1]))
    return out


def warn_mixed_sizes(labels: DLCLabels, sizes: np.ndarray) -> None:
    """Say so when the frames of one video folder differ in size. Training takes it (every frame is cropped in its
    own pixels, and a label outside its frame is refused), but the frames of one video share a size: another one is
    usually a frame from elsewhere, or rescaled after it was labelled."""
    folders: dict[str, list[int]] = {}
    for i, path in enumerate(labels.image_paths):
        folders.setdefault(str(Path(path.replace("\\", "/")).parent), []).append(i)
    for folder, rows in folders.items():
        counts = Counter((int(sizes[i, 1]), int(sizes[i, 0])) for i in rows)  # (W, H) → frames
        if len(counts) < 2:
            continue
        common = counts.most_common(1)[0][0]
        odd = [labels.image_paths[i] for i in rows if (int(sizes[i, 1]), int(sizes[i, 0])) != common]
        sizes_text = ", ".join(f"{w}x{h} ({n})" for (w, h), n in counts.most_common())
        warnings.warn(f"{folder}: its frames differ in size ({sizes_text} frame(s)); each is cropped in its own "
                      f"pixels, but a video's frames share one size: check {', '.join(odd[:3])}"
                      + (f", … {len(odd) - 3} more" if len(odd) > 3 else ""), stacklevel=2)


class DeepLabCutDataModule(KeypointDataModule):
    """A single-animal DeepLabCut / Lightning Pose project (see the module docstring for what becomes a sample).

    Args:
        project: the project folder (tables under ``labeled-data/*/`` or a Lightning Pose ``CollectedData*.csv``).
        scorer: read only ``CollectedData_<scorer>`` tables (when several annotators' files exist).
        val_files / train_files: explicit split: lists of frame paths or folders as the tables name them, or a
            text file of them (``kpreg.data.splits``).
        val_every: every n-th frame of each video folder to validation (frames 0, n, 2n …).
        val_fraction: the share of frames (or folders) drawn for validation with ``split_seed``; the default rule
            (0.2) when no other is given.
        split_seed: the seed of the ``val_fraction`` draw.
        split_by: ``image`` (any frame) or ``folder`` (whole videos) for ``val_fraction``.
        input_size: (H, W) of the network input; boxes are expanded to its aspect ratio.
        box_source: ``keypoints`` (labelled extent, padded), ``image`` (the whole frame) or ``both`` (training on
            both views of every frame, evaluation on the labelled extent).
        padding: enlargement of a ``keypoints`` box after the aspect-ratio expansion.
        flip_pairs: 0-based left/right pairs; default inferred from the names.
        skeleton: edges as name pairs (``[[snout, leftear], …]``) or 0-based index pairs; default the project
            ``config.yaml``'s ``skeleton``, else none (drawing only).
        sigmas: per-keypoint OKS sigmas (COCOeval units); default ``default_sigma`` for every keypoint.
        default_sigma: the OKS sigma of every keypoint when ``sigmas`` is not given.
        augmentation: training augmentation (default ``DLC_AUGMENTATION``, without flips when there are no flip
            pairs).
        use_nms / nms_thr / kp_score_thr: the OKS AP metric's options (one instance per frame: NMS changes nothing).
        batch_size / num_workers / pin_memory / persistent_workers / primary_metric: see ``KeypointDataModule``
            (primary default: the mean pixel error, lower is better).
        unlabelled_videos / unlabelled_clips: video for the unsupervised losses (``KeypointDataModule``): whole frames, so with
            ``box_source`` ``image`` or ``both``.
    """

    metric_families = ("pixel", "oks")  # pixel errors lead: what a lab judges its tracking by
    scale_kind = "box"

    def __init__(
        self,
        project: str,
        scorer: str | None = None,
        val_files: list[str] | str | None = None,
        train_files: list[str] | str | None = None,
        val_every: int | None = None,
        val_fraction: float | None = None,
        split_seed: int = 0,
        split_by: SplitBy = "image",
        input_size: tuple[int, int] = (256, 256),
        box_source: BoxSource = "keypoints",
        padding: float = 1.25,
        flip_pairs: list[tuple[int, int]] | None = None,
        skeleton: list[tuple[int | str, int | str]] | None = None,
        sigmas: list[float] | None = None,
        default_sigma: float = 0.05,
        augmentation: Augmentation | None = None,
        use_nms: bool = True,
        nms_thr: float = 0.9,
        kp_score_thr: float = 0.2,
        batch_size: int = 32,
        num_workers: int = 4,
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
        if box_source not in ("keypoints", "image", "both"):
            raise DataError(f"box_source must be 'keypoints', 'image' or 'both', got {box_source!r}")
        if padding <= 0:
            raise DataError(f"padding must be positive, got {padding}")
        self.project = Path(project)
        self._input_size = (int(input_size[0]), int(input_size[1]))
        self.box_source: BoxSource = box_source
        self.padding = float(padding)
        self.split_options = dict(val_files=val_files, train_files=train_files, val_every=val_every,
                                  val_fraction=val_fraction, split_seed=int(split_seed), split_by=split_by)
        self.use_nms, self.nms_thr, self.kp_score_thr = use_nms, float(nms_thr), float(kp_score_thr)

        # The keypoint layout must be known when the model is built (the CLI links it into the model), so the
        # tables are read now; they are small (one row per labelled frame). Images are checked in setup.
        self.labels: DLCLabels = read_project(self.project, scorer)
        project_config = read_project_config(self.project)
        check_config_bodyparts(project_config, self.labels)
        self.task = project_config.task or self.project.resolve().name
        self.keypoint_names = list(self.labels.bodyparts)
        k = self.num_keypoints
        pairs = self.labels.flip_pairs if flip_pairs is None else [tuple(p) for p in flip_pairs]
        self.flip_pairs = check_flip_pairs(pairs, k)
        if skeleton is None:
            edges, source = project_config.skeleton, str(project_config.path)
        else:
            edges, source = skeleton, "data.init_args.skeleton"
        self.skeleton = _resolve_skeleton(edges, self.keypoint_names, source)
        if sigmas is not None and len(sigmas) != k:
            raise DataError(f"data.init_args.sigmas has {len(sigmas)} values for {k} keypoints {self.keypoint_names}")
        self.sigmas = [float(s) for s in (sigmas if sigmas is not None else [default_sigma] * k)]
        if not all(np.isfinite(s) and s > 0 for s in self.sigmas):
            raise DataError(f"OKS sigmas must be positive, got {self.sigmas}")
        if isinstance(augmentation, Mapping):  # a run's config.yaml read back without jsonargparse (study report)
            augmentation = Augmentation(**augmentation)
        if augmentation is None:
            augmentation = DLC_AUGMENTATION
            if not self.flip_pairs:  # no left/right pairs: flipping would teach the model mirror images
                augmentation = Augmentation(**{**augmentation.__dict__, "flip_prob": 0.0})
        self.augmentation = augmentation
        self.records: dict[str, list[PersonRecord]] = {}
        self.frames: dict[str, list[int]] = {}  # split → row of self.labels of each record
        self.reports: dict[str, SplitReport] = {}
        self.split: Split | None = None
        self.image_sizes = np.zeros((0, 2), dtype=np.int64)  # (N, 2) H, W of every labelled frame, read in setup
        self._coco_gt: Any = None

    # ---- what the model is linked to -------------------------------------------------------------
    @property
    def input_size(self) -> tuple[int, int]:
        return self._input_size

    @property
    def flip_augmentation(self) -> bool:
        return self.augmentation.flip_prob > 0

    # ---- unlabelled video ---------------------------------------------------------------------------
    def unlabelled_view_error(self) -> str | None:
        if self.box_source == "keypoints":
            return ("unlabelled frames are seen whole, and box_source: keypoints trains the network on crops around "
                    "the animal only (it has never seen a whole frame); set data.init_args.box_source both (crops "
                    "and whole frames) or image")
        return None

    def unlabelled_augmentation(self) -> Augmentation | None:
        return self.augmentation

    # ---- tables → records ----------------------------------------------------------------------------
    def _record(self, i: int, height: int, width: int, whole: bool) -> PersonRecord | None:
        """Frame ``i`` of the labels as a record cropped to the whole frame or to its labelled extent; None when the
        labelled keypoints have no extent to crop."""
        xy, labelled = self.labels.keypoints[i], self.labels.labelled[i]  # (K, 2) original pixels, (K,)
        aspect = self._input_size[1] / self._input_size[0]
        if whole:
            center, size = box_to_center_size([0.0, 0.0, float(width), float(height)], aspect, 1.0)
        else:
            pts = xy[labelled]  # (L, 2) pixel centres
            lo, hi = pts.min(axis=0), pts.max(axis=0)
            if not np.any(hi > lo):  # one keypoint, or all on one spot
                return None
            # an edge box whose centre (x + w/2 - 0.5) is the extent's middle
            center, size = box_to_center_size([lo[0] + 0.5, lo[1] + 0.5, *(hi - lo)], aspect, self.padding)
        instance = max(extent_box(xy, labelled))  # px, 0 with fewer than two labelled keypoints
        return PersonRecord(
            image_path=str(self.labels.image_file(i, self.project)),
            center=center,
            box_size=size,
            keypoints=np.where(labelled[:, None], xy, 0.0),
            visible=labelled.copy(),
            norm_length=instance,
            instance_size=instance,
            area=BOX_AREA_FACTOR * instance**2,
            extra={"image_id": i + 1, "box_score": 1.0, "nms_area": float(size[0] * size[1])},
        )

    def _build_records(self) -> None:
        """Check the images, split the frames and build both splits' records (once)."""
        if self.split is not None:
            return
        sizes = read_image_sizes(self.labels, self.project)  # (N, 2) H, W; a missing image names its table line
        check_inside_images(self.labels, sizes)
        warn_mixed_sizes(self.labels, sizes)
        self.image_sizes = sizes
        split = split_frames(self.labels.image_paths, **self.split_options)  # type: ignore[arg-type]
        source = str(self.project)
        project_skips: Counter[str] = Counter()
        if self.labels.skipped_empty_rows:
            project_skips["frame(s) with every keypoint empty"] = self.labels.skipped_empty_rows
        if split.unused:
            project_skips["frame(s) in neither val_files nor train_files"] = len(split.unused)
        tables = len(set(self.labels.sources))
        head = (f"DeepLabCut project: {self.labels.num_images} labelled frames in {tables} table(s) ({source}); "
                f"split: {split.rule}")
        tail = ("; skipped " + ", ".join(f"{n} {why}" for why, n in project_skips.items())) if project_skips else ""
        print_report(head + tail)
        for name, rows in (("train", split.train), ("val", split.val)):
            report = SplitReport("DeepLabCut", name, source)
            records, frames = [], []
            views = {"keypoints": (False,), "image": (True,), "both": (False, True) if name == "train" else (False,)}
            for i in rows:
                for whole in views[self.box_source]:
                    rec = self._record(i, int(sizes[i, 0]), int(sizes[i, 1]), whole)
                    if rec is None:
                        report.skipped["frame(s) whose labelled keypoints span no area (a keypoints box)"] += 1
                        continue
                    records.append(rec)
                    frames.append(i)
            report.samples, report.images = len(records), len(set(frames))
            self.records[name], self.frames[name], self.reports[name] = records, frames, report
            print_report(report.message())
        self.split = split

    def split_summary(self, split: str) -> str:
        report = self.reports.get("train" if split == "train" else "val")
        rule = f"; split: {self.split.rule}" if self.split is not None else ""
        return (report.message() if report is not None else str(self.project)) + rule

    def _build_datasets(self, stage: str | None) -> dict[str, Dataset]:
        self._build_records()
        out: dict[str, Dataset] = {}
        if stage in ("fit", None):
            train_tf = TopDownTransform(self._input_size, self.flip_pairs, self.augmentation)
            out["train"] = TopDownDataset(self.records["train"], train_tf, train=True)
        if stage in ("fit", "validate", "test", "predict", None):
            val = TopDownDataset(self.records["val"], TopDownTransform(self._input_size, self.flip_pairs), train=False)
            out["val"] = out["test"] = val
        return out

    # ---- evaluation --------------------------------------------------------------------------------
    def coco_gt_dict(self) -> dict[str, Any]:
        """The validation frames as a COCO keypoint ground truth (one annotation per frame; ids = table row + 1)."""
        self._build_records()
        images, annotations = [], []
        for rec, i in zip(self.records["val"], self.frames["val"]):
            xy, labelled = self.labels.keypoints[i], self.labels.labelled[i]  # (K, 2), (K,)
            pts = xy[labelled]  # (L, 2)
            lo, hi = pts.min(axis=0), pts.max(axis=0)
            image_id = int(rec.extra["image_id"])
            images.append({"id": image_id, "file_name": normalise_path(self.labels.image_paths[i]),
                           "height": int(self.image_sizes[i, 0]), "width": int(self.image_sizes[i, 1])})
            flat = np.column_stack([np.where(labelled[:, None], xy, 0.0), np.where(labelled, 2.0, 0.0)])  # (K, 3)
            annotations.append({
                "id": image_id, "image_id": image_id, "category_id": CATEGORY_ID, "iscrowd": 0,
                "keypoints": [float(v) for v in flat.reshape(-1)], "num_keypoints": int(labelled.sum()),
                "bbox": [float(lo[0] + 0.5), float(lo[1] + 0.5), float(hi[0] - lo[0]), float(hi[1] - lo[1])],
                "area": float(rec.area),
            })
        category = {"id": CATEGORY_ID, "name": self.task, "keypoints": list(self.keypoint_names),
                    "skeleton": [[a + 1, b + 1] for a, b in self.skeleton]}  # COCO's skeleton is 1-based
        return {"images": images, "annotations": annotations, "categories": [category]}

    def coco_gt(self) -> Any:
        """The pycocotools ``COCO`` of ``coco_gt_dict`` that OKS AP is computed against (built once)."""
        if self._coco_gt is None:
            self._coco_gt = load_coco(self.coco_gt_dict())
        return self._coco_gt

    def evaluation(self) -> EvaluationSpec:
        box = "whole frames" if self.box_source == "image" else "labelled-extent boxes"
        return EvaluationSpec(
            layout=self.layout,
            scale="box",
            primary=self.primary_metric,
            families=self.metric_families,
            title=f"DeepLabCut {self.task}, validation frames, {box}",
            coco_gt=self.coco_gt(),
            oks={"use_nms": self.use_nms, "nms_thr": self.nms_thr, "kp_score_thr": self.kp_score_thr,
                 "category_id": CATEGORY_ID},
        )

    @property
    def image_root(self) -> Path | None:
        return self.project

    def write_dataset_predictions(
        self, out_dir: Path, indices: np.ndarray, coords: np.ndarray, scores: np.ndarray
    ) -> list[Path]:
        """``predictions.csv``, a DeepLabCut table (x, y, likelihood = the confidence) that DeepLabCut's and
        Lightning Pose's tools read, one row per validation frame named as the tables name it.

        indices (N,) test-split positions; coords (N, K, 2) x,y original pixels; scores (N, K)."""
        self._build_records()
        rows = self.frames["val"]
        frames = [normalise_path(self.labels.image_paths[rows[i]]) for i in indices]
        return [write_collected_data(Path(out_dir) / "predictions.csv", "kpreg", self.keypoint_names, frames, coords,
                                     likelihood=scores)]
