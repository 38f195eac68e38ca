"""The top-down pipeline shared by every file-backed dataset (MPII, COCO, any COCO-format data).

One sample = one person box in one image. The pipeline draws the augmentation (scale, rotation, flip,
half-body), composes everything into **one** affine from original pixels to input pixels, and warps the
image **once** (``cv2.warpAffine``). Keypoints go through the same affine, so labels and pixels can never
disagree. Photometric augmentation (albumentations) runs on the small crop, after the warp.

The affine stored in the sample (``meta.affine_inv``) includes the flip, and a flipped sample's
``keypoints_orig`` / ``visible_orig`` are permuted like its joints, so that
``apply_affine(keypoints, affine_inv) == keypoints_orig`` holds for every sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from kpreg.coords import apply_affine, crop_affine, flip_permutation, invert_affine
from kpreg.data.sample import make_sample


class DataError(ValueError):
    """Bad input data: names the file and the index or id of the offending entry."""


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
class PersonRecord:
    """One person instance to crop. Coordinates are original pixels (kpreg convention, 0-based)."""

    image_path: str
    center: np.ndarray  # (2,) x,y box centre
    box_size: np.ndarray  # (2,) w,h of the box to crop, already at the input's aspect ratio
    keypoints: np.ndarray  # (K, 2) x,y
    visible: np.ndarray  # (K,) bool, labelled joints
    norm_length: float  # the metric's normaliser (PCKh head size; box area for COCO)
    extra: dict[str, Any]  # dataset-specific meta (image id, box score …), numbers only


def read_image(path: str | Path, index: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB, or a ``DataError`` naming the file and the sample index."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image not found: {path} (sample {index})")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(f"cannot decode image (corrupt or not an image): {path} (sample {index})")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


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

    def __call__(
        self, image: np.ndarray, rec: PersonRecord, rng: np.random.Generator | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]:
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
        crop = cv2.warpAffine(image, affine, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        keypoints = apply_affine(rec.keypoints, affine)  # (K, 2) input pixels, joint order of the original
        visible = rec.visible.copy()
        if flip:
            perm = flip_permutation(len(keypoints), self.flip_pairs)
            keypoints, visible = keypoints[perm], visible[perm]
        if self.photometric is not None:
            crop = self.photometric(image=crop)["image"]
        return crop, keypoints, visible, affine, flip


class TopDownDataset(Dataset):
    """Person records → samples of the kpreg contract (``kpreg.data.sample``).

    ``train=True`` draws a fresh augmentation per access from torch's RNG (seeded per worker by
    Lightning's ``seed_everything(workers=True)``, hence reproducible); ``train=False`` is deterministic.
    A joint pushed outside the input by the augmentation stops counting in the loss.
    """

    def __init__(self, records: Sequence[PersonRecord], transform: TopDownTransform, train: bool) -> None:
        self.records = list(records)
        self.transform = transform
        self.train = train

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        rec = self.records[index]
        image = read_image(rec.image_path, index)
        rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item())) if self.train else None
        crop, keypoints, visible, affine, flip = self.transform(image, rec, rng)
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
            **rec.extra,
        )
