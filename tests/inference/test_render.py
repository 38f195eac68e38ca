"""Drawn frames: a valid image, a colour per keypoint where confident, hollow or nothing where not."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from kpreg.inference.boxes import Box
from kpreg.inference.render import SKELETON_COLOR, draw_legend, draw_predictions, keypoint_colours

SKELETON = [(0, 1), (1, 2)]


def frame() -> np.ndarray:
    return np.zeros((60, 80, 3), np.uint8)


def near(pixel: np.ndarray, colour) -> bool:
    """An anti-aliased thin line covers a pixel centre only partly: its colour, up to a quarter of the intensity."""
    return bool(np.abs(pixel.astype(int) - np.asarray(colour, dtype=int)).max() <= 64)


def test_colours_follow_the_colormap_as_deeplabcut_spreads_it() -> None:
    import matplotlib

    colours = keypoint_colours(3, "jet")
    want = np.round(matplotlib.colormaps["jet"]([0.0, 0.5, 1.0])[:, :3] * 255).astype(np.uint8)
    assert colours.dtype == np.uint8 and np.array_equal(colours, want)
    assert len({tuple(c) for c in keypoint_colours(17)}) == 17  # every keypoint its own colour
    with pytest.raises(ValueError, match="unknown colormap 'nope'"):
        keypoint_colours(3, "nope")


def test_drawn_frame_is_a_valid_image_and_hides_unconfident_keypoints() -> None:
    image = frame()
    keypoints = np.array([[[10.0, 10.0], [40.0, 10.0], [40.0, 45.0]]])  # (1, 3, 2) original pixels
    confidence = np.array([[0.9, 0.8, 0.1]])  # joint 2 below the threshold
    out = draw_predictions(image, keypoints, confidence, SKELETON, min_confidence=0.3)
    assert out.dtype == np.uint8 and out.shape == image.shape and not image.any()  # input untouched
    ok, png = cv2.imencode(".png", out)
    assert ok and cv2.imdecode(png, cv2.IMREAD_COLOR).shape == (60, 80, 3)
    colours = keypoint_colours(3)
    assert out[10, 10].tolist() == colours[0].tolist() and out[10, 40].tolist() == colours[1].tolist()
    assert out[10, 25].tolist() == list(SKELETON_COLOR)  # the limb 0-1 between them
    assert not out[30:, :].any()  # joint 2 and the limb 1-2 are hidden: nothing below the first limb


def test_hollow_rings_for_unconfident_keypoints() -> None:
    keypoints = np.array([[[20.0, 30.0], [60.0, 30.0]]])
    out = draw_predictions(frame(), keypoints, np.array([[0.9, 0.1]]), [(0, 1)], min_confidence=0.5, radius=5,
                           thickness=1, low_confidence="hollow")
    colours = keypoint_colours(2)
    assert out[30, 60].tolist() == [0, 0, 0]  # hollow: the centre is not painted
    assert near(out[30, 65], colours[1]) and near(out[30, 55], colours[1])  # the ring
    assert out[30, 20].tolist() == colours[0].tolist()  # filled
    assert not out[30, 30:50].any()  # no limb to an unconfident keypoint


def test_trail_draws_the_last_positions_in_the_keypoints_colour() -> None:
    now = np.array([[[60.0, 30.0]]])
    trail = np.array([[[[20.0, 30.0]]], [[[40.0, 30.0]]]])  # (L=2, N=1, K=1, 2), oldest first
    colours = np.array([[0, 200, 0]], np.uint8)
    out = draw_predictions(frame(), now, np.ones((1, 1)), [], radius=2, thickness=1, colours=colours, trail=trail)
    assert near(out[30, 30], [0, 200, 0]) and near(out[30, 50], [0, 200, 0])
    cut = draw_predictions(frame(), now, np.ones((1, 1)), [], radius=2, thickness=1, colours=colours, trail=trail,
                           trail_confidence=np.array([[[0.1]], [[0.9]]]))
    assert not cut[30, 22:38].any() and near(cut[30, 50], [0, 200, 0])  # an unconfident point breaks the line


@pytest.mark.parametrize("x", [20.0, 20.25, 20.5])
def test_sub_pixel_position_is_not_rounded(x: float) -> None:
    """The drawn disc's intensity centroid sits on the sub-pixel position (rounding would put it on 20 or 21)."""
    white = np.array([[255, 255, 255]], np.uint8)
    out = draw_predictions(frame(), np.array([[[x, 30.0]]]), np.ones((1, 1)), [], radius=4, colours=white)
    weight = out.astype(np.float64).sum(axis=(0, 2))  # (W,) intensity per column
    assert abs((weight * np.arange(out.shape[1])).sum() / weight.sum() - x) < 0.1


def test_boxes_non_finite_points_and_several_instances() -> None:
    keypoints = np.array([[[10.0, 10.0], [np.nan, 5.0], [12.0, 20.0]], [[60.0, 40.0], [70.0, 40.0], [70.0, 50.0]]])
    out = draw_predictions(frame(), keypoints, np.ones((2, 3)), SKELETON, boxes=[Box(2, 2, 20, 25), Box(50, 30, 25, 25)],
                           radius=1, thickness=1)
    assert out[40, 60].tolist() == keypoint_colours(3)[0].tolist() and out[45, 70].tolist() == list(SKELETON_COLOR)
    assert out[2 + 12, 2].any()  # the first box's left edge, on the pixel centres x = 2 … 21
    assert not out[5, 30:40].any()  # the NaN joint is hidden, and its limbs


def test_legend_names_every_keypoint_in_its_colour() -> None:
    names = ["snout", "leftear", "rightear", "tailbase"]
    legend = draw_legend(names, "jet")
    assert legend.dtype == np.uint8 and legend.ndim == 3 and legend.shape[0] >= 4 * 22
    for colour in keypoint_colours(4, "jet"):
        assert (legend == colour).all(-1).sum() > 10  # each disc is there


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"skeleton": [(0, 3)]}, r"edge \(0, 3\) is out of range for 3"), ({"boxes": [Box(0, 0, 1, 1)] * 2}, "2 boxes for 1"),
     ({"low_confidence": "grey"}, "hide' or 'hollow"), ({"colours": np.zeros((2, 3))}, r"colours must be \(3, 3\)")],
)
def test_bad_drawing_requests(kwargs: dict, message: str) -> None:
    args = {"skeleton": SKELETON, **kwargs}
    with pytest.raises(ValueError, match=message):
        draw_predictions(frame(), np.zeros((1, 3, 2)), np.ones((1, 3)), **args)
    with pytest.raises(ValueError, match="uint8"):
        draw_predictions(frame().astype(np.float32), np.zeros((1, 3, 2)), np.ones((1, 3)), SKELETON)
