"""Crops equal the evaluation pipeline's, and predictions map back to the frame exactly."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from testkit.media import colour_image

from kpreg.coords import apply_affine, box_to_center_size
from kpreg.data.topdown import PersonRecord, TopDownDataset, TopDownTransform
from kpreg.inference.boxes import Box
from kpreg.inference.crops import Cropper, crops_to_batch, to_original


def test_crop_geometry_by_hand() -> None:
    """Box (10, 20, 40, 80) for a 64 × 32 (H × W) input: aspect 0.5 already, padded 1.25 → 50 × 100 pixels
    centred on the box's middle pixel (29.5, 59.5); the crop's corner (-0.5, -0.5) is (4.5, 9.5)."""
    crop = Cropper((64, 32))(np.zeros((120, 80, 3), np.uint8), Box(10, 20, 40, 80))
    corners = np.array([[-0.5, -0.5], [15.5, 31.5], [31.5, 63.5]])  # (3, 2) input pixels
    np.testing.assert_allclose(apply_affine(corners, crop.affine_inv), [[4.5, 9.5], [29.5, 59.5], [54.5, 109.5]],
                               atol=1e-12)


def test_crop_equals_the_evaluation_sample_of_the_same_box(tmp_path: Path) -> None:
    bgr = colour_image(90, 70, seed=5)
    path = tmp_path / "img.png"
    cv2.imwrite(str(path), bgr)
    box, size = Box(12.3, 7.9, 30.4, 61.2), (64, 48)
    center, box_size = box_to_center_size(box.xywh, size[1] / size[0], 1.25)
    record = PersonRecord(str(path), center, box_size, np.zeros((2, 2)), np.zeros(2, bool), 1.0, 1.0, 1.0, {})
    sample = TopDownDataset([record], TopDownTransform(size, []), train=False)[0]
    crop = Cropper(size)(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), box)
    torch.testing.assert_close(crops_to_batch([crop])[0], sample["image"], atol=0, rtol=0)
    np.testing.assert_array_equal(crop.affine_inv, sample["meta"]["affine_inv"].numpy())


def test_predictions_map_back_through_each_crops_affine() -> None:
    image = np.zeros((100, 100, 3), np.uint8)
    cropper = Cropper((32, 32))
    crops = [cropper(image, Box(0, 0, 100, 100)), cropper(image, Box(50, 10, 20, 20))]
    batch = crops_to_batch(crops)
    assert batch.shape == (2, 3, 32, 32) and batch.dtype == torch.float32
    coords = torch.tensor([[[15.5, 15.5]], [[-0.5, -0.5]]])  # (2, 1, 2) input pixels
    # whole image: 125 × 125 around 49.5 → the crop's centre is 49.5; box 2: 25 × 25 around (59.5, 19.5)
    np.testing.assert_allclose(to_original(coords, crops), [[[49.5, 49.5]], [[47.0, 7.0]]], atol=1e-12)


def test_bad_padding() -> None:
    with pytest.raises(ValueError, match="padding"):
        Cropper((32, 32), padding=0)
