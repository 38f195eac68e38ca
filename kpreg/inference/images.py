"""Images handed to the Python API → (H, W, 3) uint8 RGB, the layout the whole pipeline works in.

Accepted, one image or a batch:

* NumPy arrays are channel-last, as OpenCV, PIL and imageio give them: (H, W, 3) RGB, (H, W) or (H, W, 1)
  grayscale, (H, W, 4) RGBA; a (B, H, W, C) array or a list is a batch (a list may mix sizes).
* torch tensors are channel-first, as torchvision gives them: (3, H, W), (1, H, W), (H, W); (B, C, H, W)
  is a batch.
* uint8 as is; uint16 → 8-bit by its high byte (``v >> 8``, what OpenCV's ``IMREAD_COLOR`` and therefore the
  training pipeline do); floating point must lie in [0, 1] (torchvision's ``to_tensor``) and is rounded to
  uint8, because the network was trained on 8-bit images cropped by the same pipeline.
* grayscale becomes RGB (the gray value in all three channels), an alpha channel is dropped.

Anything else is one ``ImageInputError`` naming the image's index in the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

# The smallest image side a prediction is made on: below it no keypoint layout can be told apart (a 1×1 image is
# one colour, and the crop, that colour magnified). Folder and video sources skip such images with this reason.
MIN_IMAGE_SIDE = 4


class ImageInputError(ValueError):
    """An image the predictor cannot take: names its index and what is wrong."""


def image_size_problem(height: int, width: int) -> str | None:
    """Why an image of this size cannot be predicted on (``MIN_IMAGE_SIDE``), or None."""
    if min(height, width) < MIN_IMAGE_SIDE:
        return f"{width}x{height} pixels: too small to crop (at least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE})"
    return None


def as_rgb8_batch(images: Any) -> tuple[list[np.ndarray], bool]:
    """→ (list of (H, W, 3) uint8 RGB arrays, whether a single image was given)."""
    if isinstance(images, (list, tuple)):
        if not images:
            raise ImageInputError("no image given (an empty list)")
        return [_one(im, f"image {i}") for i, im in enumerate(images)], False
    if isinstance(images, torch.Tensor):
        if images.ndim == 4:
            return [_one(im, f"image {i}") for i, im in enumerate(images)], False
        return [_one(images, "the image")], True
    if isinstance(images, np.ndarray):
        if images.ndim == 4:
            return [_one(im, f"image {i}") for i, im in enumerate(images)], False
        return [_one(images, "the image")], True
    raise ImageInputError(f"images must be a NumPy array, a torch tensor or a list of them, got {type(images).__name__}")


def _one(image: Any, where: str) -> np.ndarray:
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.ndim == 3:
            if t.shape[0] not in (1, 3, 4):
                raise ImageInputError(f"{where}: a tensor image is (C, H, W) with C = 1, 3 or 4, got {tuple(t.shape)}")
            t = t.permute(1, 2, 0)  # (H, W, C)
        elif t.ndim != 2:
            raise ImageInputError(f"{where}: a tensor image is (C, H, W) or (H, W), got {tuple(t.shape)}")
        if t.dtype == getattr(torch, "uint16", None):  # NumPy conversion of torch.uint16 is not universal
            array = t.to(torch.int32).numpy().astype(np.uint16)
        else:
            array = t.numpy()
    elif isinstance(image, np.ndarray):
        array = image
        if array.ndim == 3 and array.shape[-1] not in (1, 3, 4):
            hint = " (channel-first? NumPy images are (H, W, 3); pass a torch tensor or transpose)" \
                if array.shape[0] in (1, 3) else ""
            raise ImageInputError(f"{where}: a NumPy image is (H, W, 3), (H, W, 4), (H, W, 1) or (H, W), got "
                                  f"{array.shape}{hint}")
        if array.ndim not in (2, 3):
            raise ImageInputError(f"{where}: a NumPy image is (H, W, C) or (H, W), got {array.shape}")
    else:
        raise ImageInputError(f"{where}: expected a NumPy array or a torch tensor, got {type(image).__name__}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageInputError(f"{where}: empty image {array.shape}")
    problem = image_size_problem(array.shape[0], array.shape[1])
    if problem is not None:
        raise ImageInputError(f"{where}: {problem}")
    return _to_rgb(_to_uint8(array, where))


def _to_uint8(array: np.ndarray, where: str) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return (array >> 8).astype(np.uint8)  # the high byte: OpenCV's IMREAD_COLOR rule for 16-bit files
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ImageInputError(f"{where}: NaN or infinite pixel values")
        lo, hi = float(array.min()), float(array.max())
        if lo < 0.0 or hi > 1.0:
            raise ImageInputError(f"{where}: floating-point images must lie in [0, 1], got values in "
                                  f"[{lo:g}, {hi:g}] (pass uint8 for 0…255)")
        return np.rint(array * 255.0).astype(np.uint8)
    raise ImageInputError(f"{where}: unsupported pixel type {array.dtype} (uint8, uint16 or float in [0, 1])")


def _to_rgb(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2:
        array = array[..., None]  # (H, W, 1)
    channels = array.shape[-1]
    if channels == 1:
        return np.ascontiguousarray(np.repeat(array, 3, axis=-1))  # (H, W, 3) gray in all three
    if channels == 4:
        return np.ascontiguousarray(array[..., :3])  # alpha dropped
    return np.ascontiguousarray(array)


def as_box_lists(boxes: Any, count: int, single: bool) -> list[np.ndarray | None]:
    """The ``boxes`` argument → per image an (N, 5) float64 array of x, y, w, h, score (or None = whole image).

    For one image: (N, 4) / (N, 5) or a list of [x, y, w, h(, score)]; for a batch: a list with one such
    entry (or None) per image.
    """
    if boxes is None:
        return [None] * count
    per_image: Sequence[Any] = [boxes] if single else boxes
    if single is False and (not isinstance(boxes, Sequence) or len(boxes) != count):
        raise ImageInputError(f"boxes: give one entry (an (N, 4) array or None) per image: {count} image(s), "
                              f"got {len(boxes) if isinstance(boxes, Sequence) else type(boxes).__name__}")
    out: list[np.ndarray | None] = []
    for i, entry in enumerate(per_image):
        if entry is None:
            out.append(None)
            continue
        where = "boxes" if single else f"boxes of image {i}"
        try:
            array = np.asarray(entry, dtype=np.float64)
        except (TypeError, ValueError):
            raise ImageInputError(f"{where}: expected numbers [x, y, w, h(, score)] per box") from None
        if array.ndim == 1 and array.size:
            array = array[None]  # one box given flat
        if array.size == 0:
            out.append(np.zeros((0, 5)))
            continue
        if array.ndim != 2 or array.shape[1] not in (4, 5):
            raise ImageInputError(f"{where}: expected (N, 4) x, y, w, h or (N, 5) with a score, got {array.shape}")
        if not np.isfinite(array).all():
            raise ImageInputError(f"{where}: NaN or infinite values")
        if (array[:, 2:4] <= 0).any():
            raise ImageInputError(f"{where}: box {int(np.argwhere(array[:, 2:4] <= 0)[0, 0])} has a zero or "
                                  "negative size")
        if array.shape[1] == 4:
            array = np.concatenate([array, np.ones((len(array), 1))], axis=1)  # (N, 5) score 1
        out.append(array)
    return out
