"""COCO keypoints — and any COCO-format keypoint dataset — as a top-down datamodule.

One sample is one person (or animal, or object) box in one image, cropped by the shared top-down
pipeline (``kpreg.data.topdown``) exactly as MPII is:

* **train**: one sample per annotation of the keypoint category that is not a crowd and has at least
  one labelled keypoint (SimpleBaseline / HRNet / mmpose all train on these).
* **val / test** (the same split: the community reports COCO on val2017): one sample per GT box chosen
  by the same rule (the protocol of "AP with GT boxes"), or, with ``bbox_file``, one sample per detected
  box of a COCO detection results file (SimpleBaseline's ``COCO_val2017_detections_AP_H_56_person.json``).
  A detected box has no GT keypoints: its ``visibility`` is all zero (no loss), and AP is computed
  against the GT file, as always.

Boxes are COCO ``[x, y, w, h]`` (top-left edge, original pixels), expanded to the input's aspect ratio and
padded by ``padding`` (1.25) with ``kpreg.coords.box_to_center_size``. Where a dataset has no boxes,
``box_source`` takes the box from the labelled keypoints' extent or the whole image instead.

Keypoint names, skeleton, flip pairs and OKS sigmas come from the JSON's ``categories`` (see
``kpreg.formats.coco.read_category``), overridable in the config, so a user trains on their own data
by pointing ``train_ann`` / ``val_ann`` / ``*_images`` at their files.

Bad input never disappears silently: structural errors (no ``keypoints`` field, a length other than 3·K,
NaN, an image id or file that does not exist, an unknown image in ``bbox_file``) raise a ``DataError``
naming the file and the id; recoverable ones (zero-size boxes, keypoints outside their image, crowd and
unlabelled annotations, filtered detections) are skipped and counted in the summary ``setup`` prints.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from torch.utils.data import Dataset

from kpreg.coords import box_to_center_size
from kpreg.data.datamodule import KeypointDataModule, check_flip_pairs
from kpreg.data.sample import BOX_AREA_FACTOR, extent_box
from kpreg.data.topdown import (
    Augmentation,
    DataError,
    PersonRecord,
    SplitReport,
    TopDownDataset,
    TopDownTransform,
    print_report,
)
from kpreg.data.unlabelled import ClipOptions
from kpreg.formats.coco import (
    COCO_KEYPOINT_NAMES,
    CocoImage,
    KeypointCategory,
    load_coco,
    prepare_gt,
    read_category,
    read_images,
    validate_coco_keypoints,
    write_results_json,
)
from kpreg.formats.detections import read_coco_detections
from kpreg.formats.files import read_json
from kpreg.formats.layout import EvaluationSpec
from kpreg.formats.oks import make_results

BoxSource = Literal["bbox", "keypoints", "image"]

# SimpleBaseline's COCO augmentation: scale ±30 %, rotation ±40° (with probability 0.6), horizontal flip;
# no half-body crops and no colour jitter (both came later, with HRNet / mmpose).
COCO_AUGMENTATION = Augmentation(
    scale_factor=0.3,
    rotation=40.0,
    rotation_prob=0.6,
    flip_prob=0.5,
    half_body_prob=0.0,
    half_body_min_joints=8,
    photometric=False,
)

# Upper-body joints of COCO-17 for half-body crops (nose … wrists), as HRNet / mmpose define them.
COCO_UPPER_BODY_IDS: tuple[int, ...] = tuple(range(11))

# Standard layout under ``root`` (cocodataset.org 2017 release).
_LAYOUT = {
    "train_ann": "annotations/person_keypoints_train2017.json",
    "val_ann": "annotations/person_keypoints_val2017.json",
    "train_images": "train2017",
    "val_images": "val2017",
}


def _check_images_exist(records: Sequence[PersonRecord], split: str) -> None:
    """Fail at setup, not hours into an epoch, when image files are missing (usually a wrong path)."""
    seen: dict[str, int] = {}
    for rec in records:
        seen.setdefault(rec.image_path, int(rec.extra["image_id"]))
    missing = [(p, iid) for p, iid in seen.items() if not Path(p).is_file()]
    if missing:
        path, iid = missing[0]
        raise DataError(
            f"{len(missing)} of {len(seen)} images of the {split} split are missing, e.g. {path} "
            f"(image_id {iid}); check the images folder in the config"
        )


class COCODataModule(KeypointDataModule):
    """COCO-format keypoints, top-down (see the module docstring for what becomes a sample).

    Args:
        root: folder with the standard COCO 2017 layout (``annotations/person_keypoints_{train,val}2017.json``,
            ``train2017/``, ``val2017/``); any explicit path below overrides its part.
        train_ann / val_ann: COCO keypoint annotation files (``val_ann`` is also the test split and the
            ground truth of the metric).
        train_images / val_images: image folders that ``file_name`` is relative to; either defaults to
            the other, for datasets that keep every image in one folder.
        bbox_file: COCO detection results (``[{image_id, category_id, bbox, score}]``) whose boxes replace
            the GT boxes in val / test; ``None`` = GT boxes.
        det_score_thr: detections scoring below this are dropped (SimpleBaseline: 0.0).
        det_category_id: category of the detections to keep (default: the keypoint category, person = 1).
        category_id: the keypoint category (default: the only category that has keypoints).
        input_size: (H, W) of the network input; boxes are expanded to its aspect ratio.
        padding: box enlargement after the aspect-ratio expansion (SimpleBaseline: 1.25).
        box_source: where a GT instance's box comes from: ``bbox`` (the annotation's box), ``keypoints``
            (the labelled keypoints' extent) or ``image`` (the whole image, one instance per image).
        flip_pairs: 0-based left/right pairs; default inferred from the keypoint names.
        sigmas: per-keypoint OKS sigmas (COCOeval units, nose = 0.026); default COCO's for the COCO-17
            names, else ``default_sigma`` for every keypoint.
        default_sigma: the sigma of keypoint layouts without known sigmas.
        augmentation: training augmentation (default ``COCO_AUGMENTATION``, SimpleBaseline's).
        upper_body_ids: joints of the upper body for half-body crops (default COCO's for COCO-17 names).
        use_nms / nms_thr / kp_score_thr: OKS-NMS and instance rescoring of the metric (``OKSAP``).
        batch_size / num_workers / pin_memory / persistent_workers / primary_metric: see ``KeypointDataModule``.
        unlabelled_videos / unlabelled_clips: video for the unsupervised losses (``KeypointDataModule``): whole
            frames, so with ``box_source: image``.

    Every sample's scale (``meta.norm_length``, ``meta.box_size``) is the larger side of its instance box (the
    annotation's ``bbox``, or its labelled keypoints' extent where it has none), and its OKS area the annotation's
    ``area`` (else 0.53 × box area): pixel error, PCK and the uncertainty figures are box-relative here.
    """

    metric_families = ("oks", "pixel")
    scale_kind = "box"

    def __init__(
        self,
        root: str | None = None,
        train_ann: str | None = None,
        val_ann: str | None = None,
        train_images: str | None = None,
        val_images: str | None = None,
        bbox_file: str | None = None,
        det_score_thr: float = 0.0,
        det_category_id: int | None = None,
        category_id: int | None = None,
        input_size: tuple[int, int] = (256, 192),
        padding: float = 1.25,
        box_source: BoxSource = "bbox",
        flip_pairs: list[tuple[int, int]] | None = None,
        sigmas: list[float] | None = None,
        default_sigma: float = 0.05,
        augmentation: Augmentation | None = None,
        upper_body_ids: list[int] | None = None,
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
        paths = {"train_ann": train_ann, "val_ann": val_ann, "train_images": train_images, "val_images": val_images}
        for key, rel in _LAYOUT.items():
            if paths[key] is None and root is not None:
                paths[key] = str(Path(root) / rel)
        paths["val_images"] = paths["val_images"] or paths["train_images"]
        paths["train_images"] = paths["train_images"] or paths["val_images"]
        self.train_ann = Path(paths["train_ann"]) if paths["train_ann"] else None
        self.val_ann = Path(paths["val_ann"]) if paths["val_ann"] else None
        self.train_images = Path(paths["train_images"]) if paths["train_images"] else None
        self.val_images = Path(paths["val_images"]) if paths["val_images"] else None
        if self.val_ann is None and self.train_ann is None:
            raise ValueError("COCODataModule needs annotation files: set root, or train_ann and val_ann")
        if box_source not in ("bbox", "keypoints", "image"):
            raise ValueError(f"box_source must be bbox, keypoints or image, got {box_source!r}")
        if padding <= 0:
            raise ValueError(f"padding must be positive, got {padding}")
        self.bbox_file = Path(bbox_file) if bbox_file else None
        self.det_score_thr = float(det_score_thr)
        self._input_size = (int(input_size[0]), int(input_size[1]))
        self.padding = float(padding)
        self.box_source = box_source
        self.augmentation = augmentation if augmentation is not None else COCO_AUGMENTATION
        self.use_nms, self.nms_thr, self.kp_score_thr = use_nms, float(nms_thr), float(kp_score_thr)

        # The keypoint layout must be known when the model is built (the CLI links num_keypoints and
        # flip_pairs at instantiation), so the category is read now, from the val file when there is
        # one: it is the metric's ground truth and far smaller than COCO's train file.
        self._data: dict[str, dict[str, Any]] = {}
        meta_split = "val" if self.val_ann is not None else "train"
        self.category: KeypointCategory = read_category(
            self._load(meta_split), category_id, sigmas=sigmas, default_sigma=default_sigma, flip_pairs=flip_pairs
        )
        self.det_category_id = self.category.id if det_category_id is None else int(det_category_id)
        self.keypoint_names = list(self.category.keypoint_names)
        self.sigmas = [float(v) for v in self.category.sigmas]
        self.skeleton = [tuple(e) for e in self.category.skeleton]
        self.flip_pairs = check_flip_pairs(self.category.flip_pairs, self.num_keypoints)
        if upper_body_ids is None:
            upper_body_ids = list(COCO_UPPER_BODY_IDS) if self.category.keypoint_names == COCO_KEYPOINT_NAMES else []
        self.upper_body_ids = [int(i) for i in upper_body_ids]
        self.records: dict[str, list[PersonRecord]] = {}
        self.reports: dict[str, SplitReport] = {}
        self._coco_gt: Any = None

    # ---- what the model is linked to -------------------------------------------------------------
    @property
    def input_size(self) -> tuple[int, int]:
        return self._input_size

    @property
    def flip_augmentation(self) -> bool:
        return self.augmentation.flip_prob > 0

    def unlabelled_view_error(self) -> str | None:
        if self.box_source != "image":
            return (f"unlabelled frames are seen whole, and box_source: {self.box_source} trains the network on "
                    "crops around each instance only (it has never seen a whole frame); use box_source: image")
        return None

    def unlabelled_augmentation(self) -> Augmentation | None:
        return self.augmentation

    # ---- files → records ---------------------------------------------------------------------------
    def _ann_path(self, split: str) -> Path:
        path = self.train_ann if split == "train" else self.val_ann
        if path is None:
            key = "train_ann" if split == "train" else "val_ann"
            raise ValueError(f"the {split} split needs '{key}' (or 'root') in the data config")
        return path

    def _load(self, split: str) -> dict[str, Any]:
        """The parsed annotation file of 'train' or 'val' (cached: COCO's train file takes seconds)."""
        path = self._ann_path(split)
        if split not in self._data:
            data = read_json(path, f"{split} annotation file", DataError)
            if not isinstance(data, dict):
                raise DataError(f"{path}: a COCO annotation file holds a JSON object, got {type(data).__name__}")
            self._data[split] = data
        return self._data[split]

    def _crop_box(
        self, ann: dict[str, Any], img: CocoImage, xy: np.ndarray, labelled: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """(center (2,), size (2,)) original pixels of an instance's crop, or None if it has no extent."""
        aspect = self._input_size[1] / self._input_size[0]
        if self.box_source == "bbox":
            box = ann["bbox"]  # validated before: four finite numbers, positive w and h
        elif self.box_source == "keypoints":
            pts = xy[labelled]  # (L, 2) pixel centres
            lo, hi = pts.min(axis=0), pts.max(axis=0)
            if not np.any(hi > lo):  # a single point (or all on one spot): no extent to crop
                return None
            # as an edge box whose centre (x + w/2 - 0.5) is the extent's middle
            box = [lo[0] + 0.5, lo[1] + 0.5, hi[0] - lo[0], hi[1] - lo[1]]
        else:  # image
            if img.width is None or img.height is None:
                raise DataError(f"image id {img.id} has no width/height, which box_source 'image' needs")
            box = [0.0, 0.0, float(img.width), float(img.height)]
        return box_to_center_size(box, aspect, self.padding)

    def _gt_records(self, split: str) -> tuple[list[PersonRecord], SplitReport]:
        data = self._load(split)
        path = self._ann_path(split)
        image_dir = self.train_images if split == "train" else self.val_images
        if image_dir is None:
            raise ValueError(f"the {split} split needs an images folder ('{split}_images' or 'root')")
        images = read_images(data, path, DataError)
        report = SplitReport("COCO", split, str(path))
        cat, k = self.category, self.num_keypoints
        anns = data.get("annotations")
        if not isinstance(anns, list):
            raise DataError(f"{path}: no 'annotations' list (not a COCO file?)")
        for ann in anns:
            if "category_id" not in ann:
                raise DataError(f"{path}: annotation id {ann.get('id')} has no 'category_id'")
        ours = [a for a in anns if a["category_id"] == cat.id]
        if len(ours) < len(anns):
            report.skipped[f"annotation(s) of other categories than {cat.id} ({cat.name})"] = len(anns) - len(ours)
        if split == "train" and self.val_ann is not None:
            train_cat = read_category(data, cat.id, sigmas=cat.sigmas, flip_pairs=cat.flip_pairs)
            if train_cat.keypoint_names != cat.keypoint_names:
                raise DataError(
                    f"{path}: keypoints {list(train_cat.keypoint_names)} differ from those of {self.val_ann} "
                    f"{list(cat.keypoint_names)}"
                )
        # Structural problems raise (naming the file and the annotation id). The three allowed kinds are
        # recoverable; they are re-derived per annotation below, because validation reports an annotation
        # under its first problem only and box problems do not matter unless box_source is 'bbox'.
        validate_coco_keypoints(
            path, {**data, "annotations": ours}, allow=("zero_size_box", "keypoint_outside_image", "unknown_image")
        )
        bad_box = {id(ann) for ann in ours if self.box_source == "bbox" and _zero_size(ann)}

        records: list[PersonRecord] = []
        for ann in ours:
            if ann.get("iscrowd", 0):
                report.skipped["crowd annotation(s)"] += 1
                continue
            kp = np.asarray(ann["keypoints"], dtype=np.float64).reshape(k, 3)  # (K, 3) x, y, v
            xy, labelled = kp[:, :2], kp[:, 2] > 0  # (K, 2) original pixels, (K,) labelled
            if not labelled.any():
                report.skipped["annotation(s) without labelled keypoints"] += 1
                continue
            img = images.get(ann["image_id"])
            if img is None:
                report.skipped["annotation(s) whose image_id is not in 'images'"] += 1
                continue
            if id(ann) in bad_box:
                report.skipped["annotation(s) with a zero or negative size box"] += 1
                continue
            if img.width is not None and img.height is not None:
                # pixel-centre convention: the image spans [-0.5, W - 0.5] × [-0.5, H - 0.5]
                inside = (
                    (xy[:, 0] >= -0.5) & (xy[:, 0] <= img.width - 0.5)
                    & (xy[:, 1] >= -0.5) & (xy[:, 1] <= img.height - 0.5)
                )  # fmt: skip
                outside = labelled & ~inside
                if outside.any():
                    report.skipped["keypoint(s) outside their image (set unlabelled)"] += int(outside.sum())
                    labelled = labelled & inside
                    if not labelled.any():
                        report.skipped["annotation(s) without labelled keypoints"] += 1
                        continue
            crop = self._crop_box(ann, img, xy, labelled)
            if crop is None:
                report.skipped["annotation(s) whose keypoints span no area (box_source keypoints)"] += 1
                continue
            center, size = crop
            instance_w, instance_h = _instance_box(ann, xy, labelled)
            instance_size = max(instance_w, instance_h)
            records.append(
                PersonRecord(
                    image_path=str(image_dir / img.file_name),
                    center=center,
                    box_size=size,
                    keypoints=np.where(labelled[:, None], xy, 0.0),
                    visible=labelled,
                    norm_length=instance_size,
                    instance_size=instance_size,
                    area=_object_area(ann, instance_w, instance_h),
                    # the padded crop box's area is HRNet / mmpose's OKS-NMS area
                    extra={"image_id": img.id, "box_score": 1.0, "nms_area": float(size[0] * size[1])},
                )
            )
        report.samples, report.images = len(records), len({r.extra["image_id"] for r in records})
        return records, report

    def _det_records(self) -> tuple[list[PersonRecord], SplitReport]:
        assert self.bbox_file is not None
        path, gt_path = self.bbox_file, self._ann_path("val")
        images = read_images(self._load("val"), gt_path, DataError)
        detections, _ = read_coco_detections(path, "bbox_file", DataError)
        report = SplitReport("COCO", "val/test (detected boxes)", str(path))
        aspect = self._input_size[1] / self._input_size[0]
        k = self.num_keypoints
        records: list[PersonRecord] = []
        for det in detections:
            if det.image_id is None:
                raise DataError(f"{path}: entry {det.entry} names no image_id (a bbox_file names the images of "
                                f"{gt_path} by their ids)")
            if det.category_id != self.det_category_id:
                report.skipped[f"detection(s) of other categories than {self.det_category_id}"] += 1
                continue
            if not det.score >= self.det_score_thr:  # also drops NaN scores
                report.skipped[f"detection(s) scoring below det_score_thr={self.det_score_thr}"] += 1
                continue
            img = images.get(det.image_id)
            if img is None:
                raise DataError(f"{path}: entry {det.entry} has image_id {det.image_id!r}, which is not in {gt_path}")
            if det.box[2] <= 0 or det.box[3] <= 0:
                report.skipped["detection(s) with a zero or negative size box"] += 1
                continue
            center, size = box_to_center_size(list(det.box), aspect, self.padding)
            det_w, det_h = det.box[2], det.box[3]
            records.append(
                PersonRecord(
                    image_path=str(self.val_images / img.file_name),  # type: ignore[operator]
                    center=center,
                    box_size=size,
                    keypoints=np.zeros((k, 2)),  # unknown for a detected box: no loss, AP against the GT file
                    visible=np.zeros(k, dtype=bool),
                    norm_length=max(det_w, det_h),
                    instance_size=max(det_w, det_h),
                    area=BOX_AREA_FACTOR * det_w * det_h,
                    extra={"image_id": img.id, "box_score": det.score, "nms_area": float(size[0] * size[1])},
                )
            )
        report.samples, report.images = len(records), len({r.extra["image_id"] for r in records})
        return records, report

    def _split_records(self, split: str) -> list[PersonRecord]:
        """Records of 'train' or 'val' (val is also test), built once and reported once."""
        if split not in self.records:
            if split == "val" and self.val_images is None:
                raise ValueError("the val split needs an images folder ('val_images' or 'root')")
            if split == "val" and self.bbox_file is not None:
                records, report = self._det_records()
            else:
                records, report = self._gt_records(split)
                if split == "train":
                    # COCO's parsed train file weighs gigabytes of Python objects; the records are all
                    # that is needed from it (val stays: it is the metric's ground truth).
                    self._data.pop("train", None)
            _check_images_exist(records, split)
            self.records[split], self.reports[split] = records, report
            print_report(report.message())
        return self.records[split]

    def split_summary(self, split: str) -> str:
        report = self.reports.get("train" if split == "train" else "val")
        return report.message() if report is not None else ""

    def _build_datasets(self, stage: str | None) -> dict[str, Dataset]:
        out: dict[str, Dataset] = {}
        if stage in ("fit", None):
            train_tf = TopDownTransform(self._input_size, self.flip_pairs, self.augmentation, self.upper_body_ids)
            out["train"] = TopDownDataset(self._split_records("train"), train_tf, train=True)
        if stage in ("fit", "validate", "test", "predict", None):
            eval_tf = TopDownTransform(self._input_size, self.flip_pairs)
            val = TopDownDataset(self._split_records("val"), eval_tf, train=False)
            out["val"] = out["test"] = val  # the community evaluates COCO on val2017
        return out

    # ---- evaluation --------------------------------------------------------------------------------
    def coco_gt(self) -> Any:
        """The pycocotools ``COCO`` of ``val_ann`` that AP is computed against (built once, shared)."""
        if self._coco_gt is None:
            # prepare_gt fills area / num_keypoints exactly as `evaluate.py score` does, so that a
            # results file scores the same there as in evaluation.
            self._coco_gt = load_coco(prepare_gt(self._load("val")))
        return self._coco_gt

    def evaluation(self) -> EvaluationSpec:
        boxes = f"detected boxes ({self.bbox_file.name})" if self.bbox_file else "GT boxes"
        return EvaluationSpec(
            layout=self.layout,
            scale="box",
            primary=self.primary_metric,
            families=self.metric_families,
            title=f"{self.category.name or 'COCO'} keypoints, {boxes}",
            coco_gt=self.coco_gt(),
            oks={"use_nms": self.use_nms, "nms_thr": self.nms_thr, "kp_score_thr": self.kp_score_thr,
                 "category_id": self.category.id},
        )

    @property
    def category_id(self) -> int:
        return self.category.id

    @property
    def image_root(self) -> Path | None:
        return self.val_images

    def write_dataset_predictions(
        self, out_dir: Path, indices: np.ndarray, coords: np.ndarray, scores: np.ndarray
    ) -> list[Path]:
        """``results.json``: COCO keypoint results, rescored and OKS-NMS'd exactly as the metric does (what
        pycocotools scores to the evaluated AP).

        indices (N,) test-split positions; coords (N, K, 2) x,y original pixels; scores (N, K).
        """
        records = self._split_records("val")
        extra = {key: np.array([records[i].extra[key] for i in indices]) for key in ("image_id", "box_score", "nms_area")}
        results = make_results(coords, scores, extra["image_id"], extra["box_score"], extra["nms_area"], self.category.id,
                               self.sigmas, self.use_nms, self.nms_thr, self.kp_score_thr)
        return [write_results_json(Path(out_dir) / "results.json", results)]


def _instance_box(ann: dict[str, Any], xy: np.ndarray, labelled: np.ndarray) -> tuple[float, float]:
    """(w, h) of an annotation's instance: its ``bbox`` when valid, else its labelled keypoints' extent."""
    if not _zero_size(ann):
        return float(ann["bbox"][2]), float(ann["bbox"][3])
    return extent_box(xy, labelled)


def _object_area(ann: dict[str, Any], w: float, h: float) -> float:
    """The annotation's segment ``area`` (COCO's OKS scale s²) when given and positive, else 0.53 × w × h."""
    area = ann.get("area")
    if isinstance(area, (int, float)) and math.isfinite(area) and area > 0:
        return float(area)
    return BOX_AREA_FACTOR * w * h


def _zero_size(entry: dict[str, Any]) -> bool:
    """True for a missing, malformed, non-finite or zero / negative size ``bbox``."""
    box = entry.get("bbox")
    if not isinstance(box, (list, tuple)) or len(box) != 4:
        return True
    try:
        values = [float(v) for v in box]
    except (TypeError, ValueError):
        return True
    return not all(math.isfinite(v) for v in values) or values[2] <= 0 or values[3] <= 0
