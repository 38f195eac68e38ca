"""MPII Human Pose, in the community layout of SimpleBaseline / HRNet / mmpose::

    root/
      annot/train.json      per person: image, center, scale (× 200 px), joints (16×2), joints_vis (16)
      annot/valid.json      the 2958-person validation split (Tompson et al.), same fields
      annot/gt_valid.mat    its official ground truth: pos_gt_src, jnt_missing, headboxes_src
      images/*.jpg          the MPII images

All files are MATLAB 1-based; ``kpreg.formats.mpii`` converts them to kpreg's 0-based convention on
read (and back on write), so nothing here adds or subtracts 1.

Crop. HRNet's ``lib/dataset/mpii.py`` (as SimpleBaseline) enlarges the annotated person before cropping,
"to avoid cropping limbs": the centre moves down by ``15 × scale`` pixels and the scale is multiplied by
1.25. We apply the same (``center_shift``, ``scale_padding``), then crop a box ``scale × 200`` pixels
wide whose height follows the input's aspect ratio (HRNet's ``get_affine_transform`` also sets the zoom
from the width alone). The only difference: kpreg maps the box centre onto the input's centre *pixel
centre* (``W/2 - 0.5``, see ``kpreg.coords``) rather than HRNet's ``W/2``, a 0.5-input-pixel shift of
the crop that the inverse affine undoes exactly.

Evaluation. The test split is the validation split (the community reports MPII val). ``valid.json`` entry
``i`` and ``gt_valid.mat`` row ``i`` are the same person (HRNet writes ``pred.mat`` in ``valid.json`` order
and scores it row by row against ``gt_valid.mat``). Validation samples therefore carry the ground truth of
``gt_valid.mat`` row ``i`` (joints, ``jnt_missing``, head size) in ``meta``, so the in-training PCKh is
exactly what ``evaluate.py score`` computes from the written ``pred.mat``. The JSON joints are still
compared with the .mat rows on load, to catch files from different releases or in a different order.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from kpreg.data.datamodule import KeypointDataModule
from kpreg.data.sample import BOX_AREA_FACTOR
from kpreg.data.topdown import Augmentation, DataError, PersonRecord, TopDownDataset, TopDownTransform
from kpreg.formats.mpii import (
    MPII_FLIP_PAIRS,
    MPII_JOINT_NAMES,
    MPII_SIGMAS,
    MPII_SKELETON,
    MPIIAnnotation,
    MPIIGroundTruth,
    load_annotation_json,
    load_gt_mat,
    save_pred_mat,
)

PIXEL_STD = 200.0  # MPII's ``scale`` is the person height / 200 px
# Joints of the upper body for half-body augmentation (HRNet: thorax, neck, head, arms).
MPII_UPPER_BODY_IDS: tuple[int, ...] = (7, 8, 9, 10, 11, 12, 13, 14, 15)
# A valid.json row is "another person" than its gt_valid.mat row when the median distance of their
# commonly labelled joints exceeds this many head sizes. On the real files (the hourglass valid.h5 vs
# detections_our_format.mat: same 2958 rows, labels re-rounded) no row exceeds 0.5, while a shift of the
# order by one row makes 99 % of the rows exceed it.
ORDER_CHECK_HEAD_SIZES = 0.5


def crop_box(
    ann: MPIIAnnotation, input_size: tuple[int, int], scale_padding: float, center_shift: float
) -> tuple[np.ndarray, np.ndarray]:
    """HRNet's MPII crop: (center (2,), box size (2,) w,h) in original pixels for one annotation."""
    center = ann.center.copy()  # (2,) x,y original pixels, 0-based
    center[1] += center_shift * ann.scale  # down towards the legs, which the annotated centre cuts short
    width = ann.scale * scale_padding * PIXEL_STD
    h, w = input_size
    return center, np.array([width, width * h / w])


def check_valid_order(anns: list[MPIIAnnotation], gt: MPIIGroundTruth, json_path: Path, gt_path: Path) -> None:
    """Raise ``DataError`` unless ``valid.json`` entry i and ``gt_valid.mat`` row i are the same person."""
    if len(anns) != len(gt):
        raise DataError(
            f"{json_path} has {len(anns)} persons but {gt_path} has {len(gt)} rows: they must describe the "
            "same validation persons in the same order (the HRNet / SimpleBaseline release pair)"
        )
    joints = np.stack([a.joints for a in anns])  # (N, 16, 2) original pixels, 0-based
    both = np.stack([a.joints_vis for a in anns]) & gt.visible  # (N, 16)
    dist = np.linalg.norm(joints - gt.joints, axis=-1) / gt.head_size[:, None]  # (N, 16) head sizes
    dist[~both] = np.nan
    with warnings.catch_warnings():  # all-NaN rows (no joint labelled in both) are fine: NaN, no warning
        warnings.simplefilter("ignore", RuntimeWarning)
        median = np.nanmedian(dist, axis=1)  # (N,) NaN where no joint is labelled in both
    bad = np.flatnonzero(median > ORDER_CHECK_HEAD_SIZES)
    if bad.size:
        i = int(bad[0])
        raise DataError(
            f"{json_path} entry {i} and {gt_path} row {i} are not the same person (their joints are "
            f"{median[i]:.1f} head sizes apart; {bad.size} such rows): the files must be in the same order"
        )


class MPIIDataModule(KeypointDataModule):
    """MPII Human Pose (16 joints), top-down crops of annotated persons, scored with the official PCKh.

    Args:
        root: folder with ``annot/{train,valid}.json``, ``annot/gt_valid.mat`` and ``images/``.
        input_size: (H, W) of the network input (256 × 256 in SimpleBaseline / HRNet).
        scale_factor / rotation / rotation_prob / flip_prob / half_body_prob / photometric: training
            augmentation (``kpreg.data.topdown.Augmentation``); defaults = SimpleBaseline / HRNet MPII:
            scale ±25 %, rotation ±30° with probability 0.6, flip 0.5, no half-body, no colour jitter.
        scale_padding: the person box is ``scale × 200 × scale_padding`` pixels wide (HRNet: 1.25).
        center_shift: the box centre moves down by ``center_shift × scale`` pixels (HRNet: 15).
        batch_size / num_workers / pin_memory / persistent_workers / primary_metric: see ``KeypointDataModule``.
    """

    keypoint_names = list(MPII_JOINT_NAMES)
    flip_pairs = [tuple(p) for p in MPII_FLIP_PAIRS]
    skeleton = [tuple(e) for e in MPII_SKELETON]
    sigmas = list(MPII_SIGMAS)
    metric_families = ("pckh", "pixel")
    scale_kind = "head"
    title = "MPII validation"

    def __init__(
        self,
        root: str,
        input_size: tuple[int, int] = (256, 256),
        scale_factor: float = 0.25,
        rotation: float = 30.0,
        rotation_prob: float = 0.6,
        flip_prob: float = 0.5,
        half_body_prob: float = 0.0,
        photometric: bool = False,
        scale_padding: float = 1.25,
        center_shift: float = 15.0,
        batch_size: int = 32,
        num_workers: int = 4,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        primary_metric: str | None = None,
        train_budget: int | str | None = None,
        budget_seed: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers, pin_memory, persistent_workers, primary_metric, train_budget,
                         budget_seed)
        self.root = Path(root)
        self._input_size = (int(input_size[0]), int(input_size[1]))
        self.augmentation = Augmentation(
            scale_factor=scale_factor,
            rotation=rotation,
            rotation_prob=rotation_prob,
            flip_prob=flip_prob,
            half_body_prob=half_body_prob,
            photometric=photometric,
        )
        self.scale_padding = scale_padding
        self.center_shift = center_shift

    @property
    def input_size(self) -> tuple[int, int]:
        return self._input_size

    @property
    def flip_augmentation(self) -> bool:
        return self.augmentation.flip_prob > 0

    # ---- files -------------------------------------------------------------------------------------
    @property
    def gt_path(self) -> Path:
        return self.root / "annot" / "gt_valid.mat"

    def _file(self, relative: str) -> Path:
        path = self.root / relative
        if not path.is_file():
            raise FileNotFoundError(
                f"MPII file not found: {path} (expected root/annot/{{train,valid}}.json, "
                "root/annot/gt_valid.mat and root/images/; see docs/mpii.md)"
            )
        return path

    def _record(self, ann: MPIIAnnotation, keypoints: np.ndarray, visible: np.ndarray, norm_length: float) -> PersonRecord:
        center, box_size = crop_box(ann, self.input_size, self.scale_padding, self.center_shift)
        person = ann.scale * PIXEL_STD  # MPII's person box: scale × 200 px on a side (no segment areas)
        return PersonRecord(
            image_path=str(self.root / "images" / ann.image),
            center=center,
            box_size=box_size,
            keypoints=keypoints,
            visible=visible,
            norm_length=norm_length,
            instance_size=person,
            area=BOX_AREA_FACTOR * person**2,
            extra={},
        )

    def train_records(self) -> list[PersonRecord]:
        """``train.json`` persons. No head boxes there, so ``norm_length`` is NaN (PCKh refuses it)."""
        anns = self._load_json("annot/train.json")
        return [self._record(a, a.joints, a.joints_vis, float("nan")) for a in anns]

    def valid_records(self) -> list[PersonRecord]:
        """``valid.json`` crops with ``gt_valid.mat`` row i as the ground truth of person i."""
        json_path, gt_path = self._file("annot/valid.json"), self._file("annot/gt_valid.mat")
        anns = self._load_json("annot/valid.json")
        gt = load_gt_mat(gt_path)
        check_valid_order(anns, gt, json_path, gt_path)
        return [
            self._record(a, gt.joints[i], gt.visible[i], float(gt.head_size[i])) for i, a in enumerate(anns)
        ]

    def _load_json(self, relative: str) -> list[MPIIAnnotation]:
        try:
            return load_annotation_json(self._file(relative))
        except ValueError as e:  # names the file and the entry; re-raised as the data error it is
            raise DataError(str(e)) from None

    # ---- datasets ----------------------------------------------------------------------------------
    def _build_datasets(self, stage: str | None) -> dict[str, Dataset]:
        datasets: dict[str, Dataset] = {}
        if "val" not in self.datasets:  # built once: the order check reads every row
            plain = TopDownTransform(self.input_size, self.flip_pairs)
            val = TopDownDataset(self.valid_records(), plain, train=False)
            datasets.update(val=val, test=val)
        if stage in (None, "fit") and "train" not in self.datasets:
            augmented = TopDownTransform(self.input_size, self.flip_pairs, self.augmentation, MPII_UPPER_BODY_IDS)
            datasets["train"] = TopDownDataset(self.train_records(), augmented, train=True)
        return datasets

    # ---- evaluation --------------------------------------------------------------------------------
    @property
    def image_root(self) -> Path | None:
        return self.root / "images"

    def write_dataset_predictions(
        self, out_dir: Path, indices: np.ndarray, coords: np.ndarray, scores: np.ndarray
    ) -> list[Path]:
        """``out_dir/pred.mat``: ``preds`` N×16×2 in gt_valid.mat's row order, MATLAB 1-based (the
        community format; ``python evaluate.py score --dataset mpii --gt … --pred …`` scores it)."""
        n = len(self.datasets["test"]) if "test" in self.datasets else len(load_gt_mat(self.gt_path))
        if not np.array_equal(indices, np.arange(n)):
            missing = sorted(set(range(n)) - set(indices.tolist()))
            raise ValueError(
                f"pred.mat needs one prediction per validation person in order (0..{n - 1}); got "
                f"{len(indices)} predictions (first missing index: {missing[0] if missing else 'none'}; "
                "was the test loop limited, e.g. by --trainer.limit_test_batches?)"
            )
        path = Path(out_dir) / "pred.mat"
        save_pred_mat(path, coords)  # (N, 16, 2) 0-based → written 1-based
        return [path]
