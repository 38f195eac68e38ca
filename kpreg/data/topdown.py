"""The top-down pipeline shared by every file-backed dataset (MPII, COCO, any COCO-format data).

One sample = one person box in one image. The pipeline draws the augmentation (scale, rotation, flip,
half-body), composes everything into **one** affine from original pixels to input pixels, and warps the
image **once** (``cv2.warpAffine``). Keypoints go through the same affine, so labels and pixels can never
disagree. Photometric augmentation (albumentations) runs on the small crop, after the warp.

Speed (``benchmarks/mpii_pipeline.py``): the augmentation is drawn *before* the image is read, so a JPEG
that the crop shrinks ≥ 2× is decoded at 1/2, 1/4 or 1/8 resolution (``decode_reduction``) with the affine
re-expressed exactly on the reduced grid (``reduced_affine``); colour conversion and normalisation touch
only the crop.

The affine stored in the sample (``meta.affine_inv``) includes the flip, and a flipped sample's
``keypoints_orig`` / ``visible_orig`` are permuted like its joints, so that
``apply_affine(keypoints, affine_inv) == keypoints_orig`` holds for every sample.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch
from pytorch_lightning.utilities import rank_zero_only
from torch.utils.data import Dataset

from kpreg.coords import apply_affine, crop_affine, flip_permutation, invert_affine
from kpreg.data.errors import DataError
from kpreg.data.sample import affine_zoom, make_sample

__all__ = ["Augmentation", "DataError", "NO_AUGMENTATION", "PersonRecord", "SplitReport", "TopDownDataset",
           "TopDownTransform", "print_report", "read_image"]


@dataclass(frozen=True)
class Augmentation:
    """Training augmentation of the top-down pipeline (SimpleBaseline / HRNet defaults).

    scale_factor: the box is scaled by a factor in [1 - s, 1 + s] (±25 %).
    rotation: maximum rotation in degrees (±30°), applied with probability ``rotation_prob``.
    flip_prob: probability of a horizontal flip (with left/right joints swapped).
    half_body_prob: probability of cropping to the upper or the lower body only (0 = off).
    half_body_min_joints: visible joints needed before a half-body crop is considered.
    photometric: brightness / contrast / hue jitter on the crop (albumentations).
    """

    scale_factor: float = 0.25
    rotation: float = 30.0
    rotation_prob: float = 0.6
    flip_prob: float = 0.5
    half_body_prob: float = 0.0
    half_body_min_joints: int = 8
    photometric: bool = True


NO_AUGMENTATION = Augmentation(0.0, 0.0, 0.0, 0.0, 0.0, 8, False)


@dataclass
class SplitReport:
    """What loading one split kept and what it skipped; every skip is counted and printed (``print_report``)."""

    dataset: str  # "COCO", "DeepLabCut" …: the first word of the message
    split: str
    source: str  # the file (or project folder) the samples come from
    samples: int = 0
    images: int = 0
    skipped: Counter[str] = field(default_factory=Counter)  # reason → count

    def message(self) -> str:
        head = f"{self.dataset} {self.split}: {self.samples} samples from {self.images} images ({self.source})"
        if not self.skipped:
            return head + "; nothing skipped"
        return head + "; skipped " + ", ".join(f"{n} {reason}" for reason, n in self.skipped.items())


@rank_zero_only
def print_report(text: str) -> None:
    """Print a split's summary once (rank 0 under DDP)."""
    print(text)


@dataclass
class PersonRecord:
    """One person instance to crop. Coordinates are original pixels (kpreg convention, 0-based)."""

    image_path: str
    center: np.ndarray  # (2,) x,y box centre
    box_size: np.ndarray  # (2,) w,h of the box to crop, already at the input's aspect ratio
    keypoints: np.ndarray  # (K, 2) x,y
    visible: np.ndarray  # (K,) bool, labelled joints
    norm_length: float  # the sample's scale: PCKh's head size (MPII), else instance_size (kpreg.data.sample)
    instance_size: float  # the larger side of the instance's (unpadded) box, for box-relative PCK
    area: float  # the object's area, px² (segment area, else 0.53 × box w × h): the OKS scale s² of the sample
    extra: dict[str, Any]  # dataset-specific meta (image id, box score …), numbers only


def read_image(path: str | Path, index: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB, or a ``DataError`` naming the file and the sample index."""
    return cv2.cvtColor(_read_bgr(path, index), cv2.COLOR_BGR2RGB)


# JPEG decoders can decode at 1/2, 1/4, 1/8 resolution directly (scaled IDCT): much cheaper than a full
# decode, and a better anti-aliased source than a bilinear warp that shrinks by more than 2×.
_REDUCED_FLAGS = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
                  8: cv2.IMREAD_REDUCED_COLOR_8}
_JPEG_SUFFIXES = (".jpg", ".jpeg", ".jpe")


def _read_bgr(path: str | Path, index: int, reduction: int = 1) -> np.ndarray:
    """(H / reduction, W / reduction, 3) uint8 BGR (OpenCV's order: colour is converted on the crop)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image not found: {path} (sample {index})")
    image = cv2.imread(str(path), _REDUCED_FLAGS[reduction])
    if image is None:
        raise DataError(f"cannot decode image (corrupt or not an image): {path} (sample {index})")
    return image


def decode_reduction(affine: np.ndarray, path: str | Path) -> int:
    """The largest JPEG decode reduction f ∈ {1, 2, 4, 8} after which the warp still does not enlarge.

    ``affine`` maps original → input pixels; its largest singular value is the most input pixels per
    original pixel in any direction, so decoding at 1/f never upsamples while ``f · σ_max ≤ 1``. Only for
    JPEG files: other formats are reduced by a resize whose grid is not exactly ``f`` for odd sizes.
    """
    if not str(path).lower().endswith(_JPEG_SUFFIXES):
        return 1
    zoom = float(np.linalg.norm(affine[:, :2], ord=2))  # σ_max, input px per original px
    f = 1
    while f < 8 and 2 * f * zoom <= 1.0:
        f *= 2
    return f


def reduced_affine(affine: np.ndarray, reduction: int) -> np.ndarray:
    """(2, 3) original → input affine re-expressed on an image decoded at 1/``reduction``.

    Reduced pixel ``j`` averages original pixels ``f·j … f·j + f - 1``, so its centre is the original
    pixel ``x = f·j + (f - 1) / 2`` (same in y): compose the affine with that map (exact, no resampling).
    """
    if reduction == 1:
        return affine
    f = float(reduction)
    linear = affine[:, :2]
    return np.concatenate([linear * f, (linear @ np.full(2, (f - 1) / 2) + affine[:, 2])[:, None]], axis=1)


def _aspect_box(lo: np.ndarray, hi: np.ndarray, aspect: float, padding: float) -> tuple[np.ndarray, np.ndarray]:
    center = (lo + hi) / 2.0
    w, h = hi - lo
    if w > aspect * h:
        h = w / aspect
    else:
        w = h * aspect
    return center, np.array([w, h]) * padding


class TopDownTransform:
    """Record → (crop, keypoints in input pixels, visibility, affine original → input, flipped?)."""

    def __init__(
        self,
        input_size: tuple[int, int],
        flip_pairs: Sequence[Sequence[int]],
        augmentation: Augmentation | None = None,
        upper_body_ids: Sequence[int] = (),
    ) -> None:
        self.input_size = input_size
        self.flip_pairs = [tuple(p) for p in flip_pairs]
        self.aug = augmentation or NO_AUGMENTATION
        self.upper_body_ids = np.asarray(upper_body_ids, dtype=int)
        self.photometric = (
            A.Compose([A.RandomBrightnessContrast(0.25, 0.25, p=0.6), A.HueSaturationValue(8, 15, 10, p=0.3)])
            if self.aug.photometric
            else None
        )

    def _half_body(
        self, rec: PersonRecord, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray] | None:
        visible = np.flatnonzero(rec.visible)
        if len(self.upper_body_ids) == 0 or len(visible) < self.aug.half_body_min_joints:
            return None
        upper = np.isin(visible, self.upper_body_ids)
        chosen = visible[upper] if (rng.random() < 0.5 and upper.sum() > 2) else visible[~upper]
        if len(chosen) < 2:
            return None
        pts = rec.keypoints[chosen]
        aspect = self.input_size[1] / self.input_size[0]
        return _aspect_box(pts.min(axis=0), pts.max(axis=0), aspect, padding=1.5)

    def draw(self, rec: PersonRecord, rng: np.random.Generator | None) -> tuple[np.ndarray, bool]:
        """The sample's (2, 3) affine original → input pixels (flip folded in) and whether it flips.

        ``rng=None`` is evaluation: no augmentation. Drawn before the image is read, so that the decoder
        can already shrink the image (``decode_reduction``)."""
        center, size = rec.center.astype(np.float64), rec.box_size.astype(np.float64)
        rotation, flip = 0.0, False
        if rng is not None:  # training: draw the augmentation
            if self.aug.half_body_prob > 0 and rng.random() < self.aug.half_body_prob:
                half = self._half_body(rec, rng)
                if half is not None:
                    center, size = half
            size = size * rng.uniform(1 - self.aug.scale_factor, 1 + self.aug.scale_factor)
            if rng.random() < self.aug.rotation_prob:
                rotation = float(rng.uniform(-self.aug.rotation, self.aug.rotation))
            flip = bool(rng.random() < self.aug.flip_prob)
        h, w = self.input_size
        affine = crop_affine(center, size, (h, w), rotation)  # (2, 3) original → input
        if flip:  # fold the mirror x → W - 1 - x into the same single warp
            mirror = np.array([[-1.0, 0.0, w - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
            affine = (mirror @ np.vstack([affine, [0.0, 0.0, 1.0]]))[:2]
        return affine, flip

    def apply(
        self,
        image: np.ndarray,
        rec: PersonRecord,
        affine: np.ndarray,
        flip: bool,
        reduction: int = 1,
        bgr: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Warp ``image`` (decoded at 1/``reduction``; BGR if ``bgr``) once → (crop (H, W, 3) uint8 RGB,
        keypoints (K, 2) input pixels, visible (K,)), joints permuted if ``flip``."""
        h, w = self.input_size
        crop = cv2.warpAffine(image, reduced_affine(affine, reduction), (w, h), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT)
        if bgr:  # converting the small crop is cheaper than converting the whole image
            crop = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)
        keypoints = apply_affine(rec.keypoints, affine)  # (K, 2) input pixels, joint order of the original
        visible = rec.visible.copy()
        if flip:
            perm = flip_permutation(len(keypoints), self.flip_pairs)
            keypoints, visible = keypoints[perm], visible[perm]
        if self.photometric is not None:
            crop = self.photometric(image=crop)["image"]
        return crop, keypoints, visible

    def __call__(
        self, image: np.ndarray, rec: PersonRecord, rng: np.random.Generator | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]:
        """(H, W, 3) RGB image → (crop, keypoints, visible, affine original → input, flipped?)."""
        affine, flip = self.draw(rec, rng)
        crop, keypoints, visible = self.apply(image, rec, affine, flip)
        return crop, keypoints, visible, affine, flip


class TopDownDataset(Dataset):
    """Person records → samples of the kpreg contract (``kpreg.data.sample``).

    ``train=True`` draws a fresh augmentation per access from torch's RNG (seeded per worker by
    Lightning's ``seed_everything(workers=True)``, hence reproducible); ``train=False`` is deterministic.
    A joint pushed outside the input by the augmentation stops counting in the loss.

    ``reduced_decode``: decode JPEGs at 1/2, 1/4 or 1/8 resolution when the crop shrinks them at least that
    much (``decode_reduction``; the affine is adjusted exactly, so labels and ``meta`` are unchanged).
    """

    def __init__(
        self, records: Sequence[PersonRecord], transform: TopDownTransform, train: bool, reduced_decode: bool = True
    ) -> None:
        self.records = list(records)
        self.transform = transform
        self.train = train
        self.reduced_decode = reduced_decode

    def __len__(self) -> int:
        return len(self.records)

    def keypoints_only(self) -> tuple[np.ndarray, np.ndarray]:
        """Every record's keypoints in input pixels as evaluation crops them (no augmentation, no image read):
        (N, K, 2) and visibility (N, K) bool. For ``Head.fit`` (see ``KeypointDataModule.training_keypoints``)."""
        h, w = self.transform.input_size
        keypoints, visible = [], []
        for rec in self.records:
            affine, _ = self.transform.draw(rec, None)  # (2, 3) original → input, no augmentation
            kp = apply_affine(rec.keypoints, affine)  # (K, 2) input pixels
            inside = (kp[:, 0] >= -0.5) & (kp[:, 0] <= w - 0.5) & (kp[:, 1] >= -0.5) & (kp[:, 1] <= h - 0.5)
            keypoints.append(kp)
            visible.append(rec.visible & inside)
        if not self.records:
            raise DataError("the training split has no samples: nothing to fit the head on")
        return np.stack(keypoints), np.stack(visible)

    def __getitem__(self, index: int) -> dict[str, Any]:
        rec = self.records[index]
        rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item())) if self.train else None
        affine, flip = self.transform.draw(rec, rng)  # (2, 3) original → input pixels
        reduction = decode_reduction(affine, rec.image_path) if self.reduced_decode else 1
        image = _read_bgr(rec.image_path, index, reduction)
        crop, keypoints, visible = self.transform.apply(image, rec, affine, flip, reduction, bgr=True)
        h, w = self.transform.input_size
        inside = (
            (keypoints[:, 0] >= -0.5) & (keypoints[:, 0] <= w - 0.5)
            & (keypoints[:, 1] >= -0.5) & (keypoints[:, 1] <= h - 0.5)
        )
        keypoints_orig, visible_orig = rec.keypoints, rec.visible
        if flip:
            perm = flip_permutation(len(keypoints), self.transform.flip_pairs)
            keypoints_orig, visible_orig = keypoints_orig[perm], visible_orig[perm]
        return make_sample(
            image=crop,
            keypoints=keypoints,
            visibility=(visible & inside).astype(np.float32),
            index=index,
            affine_inv=invert_affine(affine),
            keypoints_orig=keypoints_orig,
            visible_orig=visible_orig,
            norm_length=rec.norm_length,
            box_size=rec.instance_size,
            scale=np.sqrt(max(rec.area, 0.0)) * affine_zoom(affine),  # input pixels
            **rec.extra,
        )
