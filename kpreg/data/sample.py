"""The head-agnostic sample contract shared by every dataset.

A sample is a dict::

    image       (3, H, W) float32   normalised input crop (ImageNet mean / std)
    keypoints   (K, 2)    float32   x,y input pixels (kpreg.coords convention)
    visibility  (K,)      float32   1 = labelled (counts in losses and metrics), 0 = not labelled
    scale       ()        float32   the object's scale in input pixels: sqrt(area), COCO's OKS ``s`` (the area is
                                    the annotation's segment area where a dataset has one, else 0.53 × its box's
                                    w × h, xtcocoapi's convention), for scale-aware losses (OKS loss)
    meta        dict:
      index           int64          position of the sample in its dataset (predictions are written in this order)
      affine_inv      (2, 3) float64 input pixels → original pixels
      keypoints_orig  (K, 2) float64 ground truth in original pixels (what metrics compare against)
      visible_orig    (K,)   bool    keypoints that count in metrics
      norm_length     float64        the sample's scale in original pixels, what normalised errors divide by:
                                     PCKh's head size (0.6 × head-box diagonal) on head-normalised datasets (MPII,
                                     synthetic), ``box_size`` on every other (``kpreg.formats.layout.ScaleKind``)
      box_size        float64        the larger side of the instance's box in original pixels (box-relative PCK)
      + dataset-specific entries (e.g. occluded flags, image ids, box scores)

Heads only ever see ``image``, ``keypoints``, ``visibility`` and ``scale``; metrics only ``meta``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

# (x / 255 - mean) / std as one multiply-add per channel: x * _SCALE + _SHIFT, (3, 1, 1) to broadcast on (3, H, W).
_SCALE = torch.from_numpy(1.0 / (255.0 * IMAGENET_STD)).view(3, 1, 1)
_SHIFT = torch.from_numpy(-IMAGENET_MEAN / IMAGENET_STD).view(3, 1, 1)

SAMPLE_KEYS = ("image", "keypoints", "visibility", "scale", "meta")
META_KEYS = ("index", "affine_inv", "keypoints_orig", "visible_orig", "norm_length", "box_size")

# xtcocoapi's (CrowdPose's) object area for instances without a segment: this fraction of the box's w × h.
BOX_AREA_FACTOR = 0.53


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 RGB → (3, H, W) float32 normalised with ImageNet statistics.

    One strided uint8 → float32 copy into channel-first layout, then an in-place multiply-add: ~6× faster
    than converting, normalising and transposing with numpy temporaries (it matters at ~300 samples/s)."""
    h, w, _ = image.shape
    out = torch.empty(3, h, w, dtype=torch.float32)
    out.copy_(torch.from_numpy(image).permute(2, 0, 1))  # (3, H, W) float32 0..255
    return out.mul_(_SCALE).add_(_SHIFT)


def tensor_to_image(image: torch.Tensor) -> np.ndarray:
    """Inverse of ``image_to_tensor``: (3, H, W) → (H, W, 3) uint8 RGB (for drawing)."""
    x = image.detach().float().cpu().numpy().transpose(1, 2, 0) * IMAGENET_STD + IMAGENET_MEAN
    return np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)


def make_sample(
    image: np.ndarray,
    keypoints: np.ndarray,
    visibility: np.ndarray,
    index: int,
    affine_inv: np.ndarray,
    keypoints_orig: np.ndarray,
    visible_orig: np.ndarray,
    norm_length: float,
    box_size: float,
    scale: float,
    **extra_meta: Any,
) -> dict[str, Any]:
    """Assemble a sample in the contract's types and shapes (``scale`` in input pixels, the rest as above)."""
    meta: dict[str, Any] = {
        "index": torch.tensor(index, dtype=torch.int64),
        "affine_inv": torch.as_tensor(affine_inv, dtype=torch.float64),
        "keypoints_orig": torch.as_tensor(keypoints_orig, dtype=torch.float64),
        "visible_orig": torch.as_tensor(visible_orig, dtype=torch.bool),
        "norm_length": torch.tensor(float(norm_length), dtype=torch.float64),
        "box_size": torch.tensor(float(box_size), dtype=torch.float64),
    }
    meta.update({k: torch.as_tensor(v) for k, v in extra_meta.items()})
    return {
        "image": image_to_tensor(image),
        "keypoints": torch.as_tensor(keypoints, dtype=torch.float32),
        "visibility": torch.as_tensor(visibility, dtype=torch.float32),
        "scale": torch.tensor(float(scale), dtype=torch.float32),
        "meta": meta,
    }


def extent_box(points: np.ndarray, labelled: np.ndarray) -> tuple[float, float]:
    """(w, h) of the labelled points' extent (original pixels); (0, 0) when fewer than two are labelled."""
    pts = np.asarray(points, dtype=np.float64)[np.asarray(labelled, dtype=bool)]  # (L, 2)
    if len(pts) < 2:
        return 0.0, 0.0
    w, h = pts.max(axis=0) - pts.min(axis=0)
    return float(w), float(h)


def affine_zoom(affine: np.ndarray) -> float:
    """Input pixels per original pixel of a (2, 3) original → input affine (sqrt of its linear part's |det|)."""
    return float(np.sqrt(abs(np.linalg.det(np.asarray(affine, dtype=np.float64)[:, :2]))))
