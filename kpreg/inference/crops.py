"""Box → network input crop, and predictions back to the frame: the evaluation pipeline's exact geometry.

A box is grown to the input's aspect ratio and padded (``kpreg.coords.box_to_center_size``, SimpleBaseline's
1.25, as COCO evaluation on detected boxes does), and the crop is made by the top-down pipeline's own
evaluation transform (``kpreg.data.topdown.TopDownTransform`` without augmentation: ``crop_affine`` and one
``cv2.warpAffine``, bilinear, black border). A prediction on a frame therefore sees the same pixels as
evaluation on the same box, and coordinates go back through the same inverse affine.

The one difference: evaluation reads a JPEG that the crop shrinks at least 2× with OpenCV's reduced
decoding (``kpreg.data.topdown.decode_reduction``) for speed; prediction crops the fully decoded frame (it
also draws on it). The geometry is identical; the pixels differ by the decoder's resampling.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from kpreg.coords import apply_affine, box_to_center_size, invert_affine
from kpreg.data.sample import image_to_tensor
from kpreg.data.topdown import PersonRecord, TopDownTransform
from kpreg.inference.boxes import Box
from kpreg.validation import check_number

DEFAULT_PADDING = 1.25  # SimpleBaseline / HRNet, and kpreg's COCO data module


@dataclass(frozen=True)
class Crop:
    """One instance's network input and the map back to its frame."""

    image: np.ndarray  # (H, W, 3) uint8 RGB, the network input before normalisation
    affine_inv: np.ndarray  # (2, 3) float64 input pixels → original pixels
    box: Box


class Cropper:
    """Crops boxes of frames for a network input of ``input_size`` (H, W)."""

    def __init__(self, input_size: tuple[int, int], padding: float = DEFAULT_PADDING) -> None:
        check_number(padding, "padding", minimum=0.0, above=True)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.padding = float(padding)
        # The evaluation transform: no augmentation, no flip, no photometric jitter.
        self.transform = TopDownTransform(self.input_size, flip_pairs=[])

    def __call__(self, image: np.ndarray, box: Box) -> Crop:
        """(H, W, 3) uint8 RGB frame and a box in its pixels → ``Crop``."""
        h, w = self.input_size
        center, size = box_to_center_size(box.xywh, aspect_ratio=w / h, padding=self.padding)
        record = PersonRecord(  # no keypoints: only the crop geometry is used
            image_path="", center=center, box_size=size, keypoints=np.zeros((0, 2)),
            visible=np.zeros(0, dtype=bool), norm_length=0.0, instance_size=0.0, area=0.0, extra={},
        )
        affine, flip = self.transform.draw(record, None)  # (2, 3) original → input pixels, never flipped
        crop, _, _ = self.transform.apply(image, record, affine, flip)
        return Crop(crop, invert_affine(affine), box)


def crops_to_batch(crops: Sequence[Crop]) -> torch.Tensor:
    """(B, 3, H, W) float32 normalised with ImageNet statistics, as ``kpreg.data.sample`` feeds training."""
    return torch.stack([image_to_tensor(c.image) for c in crops])


def to_original(coords: torch.Tensor | np.ndarray, crops: Sequence[Crop]) -> np.ndarray:
    """(B, K, 2) x,y input pixels of ``crops`` → (B, K, 2) float64 x,y original pixels of their frames."""
    if isinstance(coords, torch.Tensor):
        coords = coords.detach().cpu().double().numpy()
    affines = np.stack([c.affine_inv for c in crops])  # (B, 2, 3) input → original
    return apply_affine(np.asarray(coords, dtype=np.float64), affines)  # (B, K, 2) original pixels
