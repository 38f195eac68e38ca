"""Drawn frames: a valid image, keypoints and limbs where confident, nothing where not."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from kpreg.inference.boxes import Box
from kpreg.inference.render import KEYPOINT_COLOR, PALETTE, draw_predictions

SKELETON = [(0, 1), (1, 2)]


def frame() -> np.ndarray:
    return np.zeros((60, 80, 3), np.uint8)


def test_drawn_frame_is_a_valid_image_and_hides_unconfident_keypoints() -> None:
    image = frame()
    keypoints = np.array([[[10.0, 10.0], [40.0, 10.0], [40.0, 45.0]]])  # (1, 3, 2) original pixels
    confidence = np.array([[0.9, 0.8, 0.1]])  # joint 2 below the threshold
    out = draw_predictions(image, keypoints, confidence, SKELETON, min_confidence=0.3)
    assert out.dtype == np.uint8 and out.shape == image.shape and not image.any()  # input untouched
    ok, png = cv2.imencode(".png", out)
    assert ok and cv2.imdecode(png, cv2.IMREAD_COLOR).shape == (60, 80, 3)
    assert out[10, 10].tolist() == list(KEYPOINT_COLOR) and out[10, 40].tolist() == list(KEYPOINT_COLOR)
    assert out[10, 25].tolist() == list(PALETTE[0])  # the limb 0-1 between them, in its colour
    assert not out[30:, :].any()  # joint 2 and the limb 1-2 are hidden: nothing below the first limb


@pytest.mark.parametrize("x", [20.0, 20.25, 20.5])
def test_sub_pixel_position_is_not_rounded(x: float) -> None:
    """The drawn disc's intensity centroid sits on the sub-pixel position (rounding would put it on 20 or 21)."""
    out = draw_predictions(frame(), np.array([[[x, 30.0]]]), np.ones((1, 1)), [], radius=4)
    weight = out.astype(np.float64).sum(axis=(0, 2))  # (W,) intensity per column
    assert abs((weight * np.arange(out.shape[1])).sum() / weight.sum() - x) < 0.1


def test_boxes_non_finite_points_and_several_instances() -> None:
    keypoints = np.array([[[10.0, 10.0], [np.nan, 5.0], [12.0, 20.0]], [[60.0, 40.0], [70.0, 40.0], [70.0, 50.0]]])
    out = draw_predictions(frame(), keypoints, np.ones((2, 3)), SKELETON, boxes=[Box(2, 2, 20, 25), Box(50, 30, 25, 25)],
                           radius=1, thickness=1)
    assert out[40, 60].tolist() == list(KEYPOINT_COLOR) and out[45, 70].tolist() == list(PALETTE[1])
    assert out[2 + 12, 2].any()  # the first box's left edge, on the pixel centres x = 2 … 21
    assert not out[5, 30:40].any()  # the NaN joint is hidden, and its limbs


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"skeleton": [(0, 3)]}, r"edge \(0, 3\) is out of range for 3"), ({"boxes": [Box(0, 0, 1, 1)] * 2}, "2 boxes for 1")],
)
def test_bad_drawing_requests(kwargs: dict, message: str) -> None:
    args = {"skeleton": SKELETON, **kwargs}
    with pytest.raises(ValueError, match=message):
        draw_predictions(frame(), np.zeros((1, 3, 2)), np.ones((1, 3)), **args)
    with pytest.raises(ValueError, match="uint8"):
        draw_predictions(frame().astype(np.float32), np.zeros((1, 3, 2)), np.ones((1, 3)), SKELETON)
