"""The one coordinate convention of kpreg. Every other module uses these helpers.

Pixel centres are integers (as in OpenCV): pixel ``(row i, column j)`` is the unit square centred on
``(x=j, y=i)``. An image of width ``W`` therefore spans ``x ∈ [-0.5, W - 0.5]``.

::

      x = -0.5   0     1     2          W-1   W-0.5          input pixels (0-based centres)
           |  •  |  •  |  •  |  ...  |  •  |
      u = -1                                 +1               normalised: u = (2x + 1) / W - 1
           |     •     |     •     |                          heatmap cells at stride s = 2:
                 0           1                                x_cell = (x + 0.5) / s - 0.5

Four spaces appear in kpreg, each named in the shape comments of the code:

* **original pixels** — the image file's pixels, 0-based centres. Metrics are computed here.
  (MPII's ``.mat`` files are 1-based; they are converted once, in ``kpreg.formats.mpii``.)
* **input pixels** — the network input crop (``H × W``), 0-based centres. Samples and heads' decoded
  outputs are in this space. An affine ``A`` (2×3) maps original → input; ``invert_affine(A)`` maps back.
* **normalised** — ``[-1, 1]`` from the left edge of the first pixel to the right edge of the last
  (the DSNT convention): a pixel centre ``x`` is at ``(2x + 1) / W - 1``.
* **heatmap cells** — the output grid of a head with stride ``s`` (``W / s`` cells): cell ``j`` covers
  input pixels ``[s·j - 0.5, s·(j+1) - 0.5]`` and its centre is the input pixel ``s·j + (s - 1) / 2``.

Horizontal flip of an image of width ``W`` maps ``x → W - 1 - x`` (it keeps pixel centres on pixel
centres), and swaps left/right joints. The same formula flips heatmap cells with ``W`` replaced by the
heatmap width, which is exactly consistent with the cell ↔ pixel mapping above when ``W = s · W_cells``.

All point functions take arrays of shape ``(..., 2)`` ordered ``(x, y)`` and work on both numpy arrays
and torch tensors (they only use elementwise arithmetic).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import torch

Array = TypeVar("Array", np.ndarray, torch.Tensor)


# ----------------------------------------------------------------------------------------------------
# input pixels <-> normalised <-> heatmap cells
# ----------------------------------------------------------------------------------------------------
def pixels_to_normalized(points: Array, size: Sequence[int]) -> Array:
    """(..., 2) x,y input pixels → (..., 2) normalised [-1, 1]; ``size`` is (H, W) of the input."""
    h, w = size
    x = (2.0 * points[..., 0] + 1.0) / w - 1.0
    y = (2.0 * points[..., 1] + 1.0) / h - 1.0
    return _stack(points, x, y)


def normalized_to_pixels(points: Array, size: Sequence[int]) -> Array:
    """(..., 2) normalised [-1, 1] → (..., 2) x,y input pixels; ``size`` is (H, W) of the input."""
    h, w = size
    x = ((points[..., 0] + 1.0) * w - 1.0) / 2.0
    y = ((points[..., 1] + 1.0) * h - 1.0) / 2.0
    return _stack(points, x, y)


def pixels_to_cells(points: Array, stride: float) -> Array:
    """(..., 2) x,y input pixels → (..., 2) heatmap cell coordinates at ``stride``."""
    return (points + 0.5) / stride - 0.5


def cells_to_pixels(points: Array, stride: float) -> Array:
    """(..., 2) heatmap cell coordinates at ``stride`` → (..., 2) x,y input pixels."""
    return (points + 0.5) * stride - 0.5


def pixel_grid(length: int, stride: float = 1.0, device: torch.device | None = None) -> torch.Tensor:
    """(length,) input-pixel coordinates of the centres of ``length`` cells at ``stride``."""
    return cells_to_pixels(torch.arange(length, dtype=torch.float32, device=device), stride)


def _stack(like: Array, x: Array, y: Array) -> Array:
    if isinstance(like, torch.Tensor):
        return torch.stack((x, y), dim=-1)
    return np.stack((x, y), axis=-1)


# ----------------------------------------------------------------------------------------------------
# affine maps between original and input pixels
# ----------------------------------------------------------------------------------------------------
def crop_affine(
    center: Sequence[float],
    box_size: Sequence[float],
    output_size: Sequence[int],
    rotation_deg: float = 0.0,
) -> np.ndarray:
    """(2, 3) affine mapping original pixels → input pixels of a rotated crop.

    The box of ``box_size = (w, h)`` original pixels centred at ``center = (x, y)`` is mapped onto the
    whole ``output_size = (H, W)`` input, edge to edge: the box's left edge ``cx - w/2`` lands on input
    ``x = -0.5`` and its right edge on ``W - 0.5``. ``rotation_deg`` rotates the crop's content
    counter-clockwise (as seen on screen) about the centre. Use with ``cv2.warpAffine(img, A, (W, H))``.
    """
    out_h, out_w = output_size
    sx = out_w / float(box_size[0])
    sy = out_h / float(box_size[1])
    theta = math.radians(rotation_deg)
    # y points down in images, so a counter-clockwise rotation on screen is R(-theta) in (x, y).
    cos, sin = math.cos(theta), math.sin(theta)
    rot = np.array([[cos, sin], [-sin, cos]], dtype=np.float64)
    linear = np.diag([sx, sy]) @ rot
    out_center = np.array([out_w / 2.0 - 0.5, out_h / 2.0 - 0.5])
    translation = out_center - linear @ np.asarray(center, dtype=np.float64)
    return np.concatenate([linear, translation[:, None]], axis=1)


def invert_affine(affine: np.ndarray) -> np.ndarray:
    """(2, 3) → (2, 3) inverse affine (exact up to float64 rounding)."""
    linear = affine[:, :2]
    inv_linear = np.linalg.inv(linear)
    return np.concatenate([inv_linear, -inv_linear @ affine[:, 2:3]], axis=1)


def apply_affine(points: Array, affine: Array) -> Array:
    """Map (..., K, 2) points with a (..., 2, 3) affine (batch dims broadcast)."""
    a = affine[..., None, :, :]  # (..., 1, 2, 3) so it broadcasts over K
    x = a[..., 0, 0] * points[..., 0] + a[..., 0, 1] * points[..., 1] + a[..., 0, 2]
    y = a[..., 1, 0] * points[..., 0] + a[..., 1, 1] * points[..., 1] + a[..., 1, 2]
    return _stack(points, x, y)


def box_to_center_size(
    box_xywh: Sequence[float], aspect_ratio: float, padding: float = 1.25
) -> tuple[np.ndarray, np.ndarray]:
    """COCO box (x, y, w, h) in original pixels → (center (2,), size (2,)) expanded to ``aspect_ratio``.

    ``aspect_ratio`` is the input's width / height. The box is grown (never shrunk) along one side to
    match it, then both sides are multiplied by ``padding`` (SimpleBaseline's 1.25). A COCO box's
    ``x, y`` is the top-left *edge*, so its centre in pixel-centre coordinates is ``x + w/2 - 0.5``.
    """
    x, y, w, h = (float(v) for v in box_xywh)
    center = np.array([x + w / 2.0 - 0.5, y + h / 2.0 - 0.5])
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    else:
        w = h * aspect_ratio
    return center, np.array([w * padding, h * padding])


# ----------------------------------------------------------------------------------------------------
# horizontal flip with left/right pairs
# ----------------------------------------------------------------------------------------------------
def flip_permutation(num_keypoints: int, flip_pairs: Sequence[Sequence[int]]) -> list[int]:
    """Index list ``perm`` such that ``flipped[k] = original[perm[k]]`` swaps every left/right pair."""
    perm = list(range(num_keypoints))
    for a, b in flip_pairs:
        perm[a], perm[b] = b, a
    return perm


def flip_points(points: Array, width: int, flip_pairs: Sequence[Sequence[int]]) -> Array:
    """Mirror (..., K, 2) points in an image of ``width`` and swap left/right joints."""
    perm = flip_permutation(points.shape[-2], flip_pairs)
    flipped = points[..., perm, :]
    x = (width - 1) - flipped[..., 0]
    return _stack(flipped, x, flipped[..., 1])


def flip_values(values: Array, flip_pairs: Sequence[Sequence[int]]) -> Array:
    """Swap left/right entries of a (..., K) per-keypoint array (visibility, scores)."""
    return values[..., flip_permutation(values.shape[-1], flip_pairs)]
