"""Predictions drawn on a frame with OpenCV, as DeepLabCut's labelled videos draw them: a colour per keypoint.

Each keypoint gets its own colour from a matplotlib colormap (``rainbow``, DeepLabCut's ``create_labeled_video``
default; ``jet``, ``viridis`` … any name matplotlib knows), spread evenly over the keypoints in their order, on a
dark rim so that it shows on light and dark scenes. The skeleton, when the model has one, is drawn in one colour
(white, DeepLabCut's default) under the keypoints. A keypoint whose confidence is below ``min_confidence``
(DeepLabCut's ``pcutoff``; ``kpreg.inference.filtering``) or that is not finite is hidden, or drawn as a hollow
ring with ``low_confidence="hollow"`` (e.g. a gap that a smoother bridged); a limb is drawn only between two
confident keypoints. ``trail`` draws the last frames' positions of every keypoint as a thin line in its colour.
``draw_legend`` makes the picture that names the colours, written beside a drawn video.

Coordinates are original-image pixels, 0-based pixel centres, which is OpenCV's integer grid; points are drawn with
4 fractional bits (``shift=4``), so sub-pixel predictions are not rounded to whole pixels. Unlike
``kpreg.drawing`` (matplotlib, for reports), this is fast enough for every frame of a video.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import cv2
import numpy as np

from kpreg.inference.boxes import Box
from kpreg.inference.filtering import DEFAULT_MIN_CONFIDENCE, confident

_SHIFT = 4  # fractional bits of OpenCV's drawing coordinates
_ONE = 1 << _SHIFT
DEFAULT_COLORMAP = "rainbow"
SKELETON_COLOR = (255, 255, 255)
RIM_COLOR = (20, 20, 20)
BOX_COLOR = (255, 220, 0)
LowConfidence = Literal["hide", "hollow"]


def keypoint_colours(num_keypoints: int, colormap: str = DEFAULT_COLORMAP) -> np.ndarray:
    """(K, 3) uint8 RGB: the colormap sampled at K evenly spaced points (DeepLabCut's ``linspace(0, 1, K)``)."""
    import matplotlib

    try:
        cmap = matplotlib.colormaps[colormap]
    except KeyError:
        raise ValueError(f"unknown colormap {colormap!r}: use a matplotlib name such as rainbow, jet, viridis, "
                         "tab20") from None
    rgba = cmap(np.linspace(0.0, 1.0, max(num_keypoints, 1)))[:num_keypoints]  # (K, 4) floats in [0, 1]
    return np.round(rgba[:, :3] * 255).astype(np.uint8)


def _point(p: np.ndarray) -> tuple[int, int]:
    return int(p[0]), int(p[1])


def draw_predictions(
    image: np.ndarray,
    keypoints: np.ndarray,
    confidence: np.ndarray,
    skeleton: Sequence[Sequence[int]],
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    boxes: Sequence[Box] | None = None,
    radius: int | None = None,
    thickness: int | None = None,
    *,
    colormap: str = DEFAULT_COLORMAP,
    colours: np.ndarray | None = None,
    low_confidence: LowConfidence = "hide",
    trail: np.ndarray | None = None,
    trail_confidence: np.ndarray | None = None,
) -> np.ndarray:
    """A copy of ``image`` (H, W, 3) uint8 RGB with N instances drawn.

    keypoints: (N, K, 2) x,y original pixels; confidence: (N, K); skeleton: 0-based keypoint index pairs;
    boxes: the N instances' boxes, drawn when given. ``radius`` / ``thickness`` default to sizes that grow with the
    frame (2 px / 1 px on small frames). ``colours`` (K, 3) RGB overrides ``colormap``. ``trail``: (L, N, K, 2) the
    positions of the L previous frames, oldest first, and ``trail_confidence`` (L, N, K) (default: all confident).
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"draw_predictions needs an (H, W, 3) uint8 image, got {image.dtype} {image.shape}")
    if low_confidence not in ("hide", "hollow"):
        raise ValueError(f"low_confidence must be 'hide' or 'hollow', got {low_confidence!r}")
    keypoints = np.asarray(keypoints, dtype=np.float64).reshape(-1, *np.shape(keypoints)[-2:])  # (N, K, 2)
    confidence = np.asarray(confidence, dtype=np.float64).reshape(keypoints.shape[:2])  # (N, K)
    n, k = keypoints.shape[:2]
    for a, b in skeleton:
        if not (0 <= a < k and 0 <= b < k):
            raise ValueError(f"skeleton edge ({a}, {b}) is out of range for {k} keypoints")
    if boxes is not None and len(boxes) != n:
        raise ValueError(f"{len(boxes)} boxes for {n} instances")
    palette = keypoint_colours(k, colormap) if colours is None else np.asarray(colours, dtype=np.uint8)
    if palette.shape != (k, 3):
        raise ValueError(f"colours must be ({k}, 3) RGB, got {palette.shape}")
    side = min(image.shape[:2])
    radius = radius if radius is not None else max(2, round(side / 160))
    thickness = thickness if thickness is not None else max(1, round(side / 320))
    canvas = np.ascontiguousarray(image).copy()  # the frame may be shared (a source's buffer): never draw on it
    shown = confident(confidence, min_confidence, keypoints)  # (N, K)
    finite = np.isfinite(keypoints).all(-1)  # (N, K)
    fixed = np.where(np.isfinite(keypoints), keypoints * _ONE, 0).round().astype(np.int64)  # (N, K, 2) fixed point
    if trail is not None:
        _draw_trail(canvas, np.asarray(trail, dtype=np.float64), trail_confidence, keypoints, min_confidence,
                    palette, thickness)
    for i in range(n):
        if boxes is not None:
            x, y, w, h = boxes[i].xywh  # edges: the box spans pixel centres x + 0.5 … x + w - 0.5
            top_left = (round((x + 0.5) * _ONE), round((y + 0.5) * _ONE))
            bottom_right = (round((x + w - 0.5) * _ONE), round((y + h - 0.5) * _ONE))
            cv2.rectangle(canvas, top_left, bottom_right, BOX_COLOR, thickness, cv2.LINE_AA, _SHIFT)
        for a, b in skeleton:
            if shown[i, a] and shown[i, b]:
                cv2.line(canvas, _point(fixed[i, a]), _point(fixed[i, b]), SKELETON_COLOR, thickness + 1,
                         cv2.LINE_AA, _SHIFT)
        for j in range(k):
            colour = tuple(int(c) for c in palette[j])
            if shown[i, j]:
                cv2.circle(canvas, _point(fixed[i, j]), (radius + 1) * _ONE, RIM_COLOR, -1, cv2.LINE_AA, _SHIFT)
                cv2.circle(canvas, _point(fixed[i, j]), radius * _ONE, colour, -1, cv2.LINE_AA, _SHIFT)
            elif low_confidence == "hollow" and finite[i, j]:
                cv2.circle(canvas, _point(fixed[i, j]), radius * _ONE, colour, max(1, thickness), cv2.LINE_AA, _SHIFT)
    return canvas


def _draw_trail(
    canvas: np.ndarray,
    trail: np.ndarray,
    trail_confidence: np.ndarray | None,
    current: np.ndarray,
    min_confidence: float,
    palette: np.ndarray,
    thickness: int,
) -> None:
    """Lines through each keypoint's last positions (L, N, K, 2) and its current one, in its colour; a position that
    is not confident breaks the line."""
    path = np.concatenate([trail.reshape(-1, *current.shape), current[None]])  # (L + 1, N, K, 2)
    conf = np.ones(path.shape[:3])  # (L + 1, N, K); the current frame's own confidence is checked by the caller
    if trail_confidence is not None:
        conf[:-1] = np.asarray(trail_confidence, dtype=np.float64).reshape(-1, *current.shape[:2])
    ok = confident(conf, min_confidence, path)  # (L + 1, N, K)
    fixed = np.where(np.isfinite(path), path * _ONE, 0).round().astype(np.int64)
    for step in range(len(path) - 1):
        both = ok[step] & ok[step + 1]  # (N, K)
        for i, j in zip(*np.nonzero(both)):
            cv2.line(canvas, _point(fixed[step, i, j]), _point(fixed[step + 1, i, j]),
                     tuple(int(c) for c in palette[j]), thickness, cv2.LINE_AA, _SHIFT)


def draw_legend(names: Sequence[str], colormap: str = DEFAULT_COLORMAP, colours: np.ndarray | None = None,
                row_height: int = 22) -> np.ndarray:
    """(H, W, 3) uint8 RGB: one row per keypoint, its colour's disc and its name, on a dark background."""
    palette = keypoint_colours(len(names), colormap) if colours is None else np.asarray(colours, dtype=np.uint8)
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, row_height / 40
    widths = [cv2.getTextSize(str(name), font, scale, 1)[0][0] for name in names]
    width = row_height * 2 + max(widths, default=0) + row_height // 2
    legend = np.full((row_height * max(len(names), 1) + row_height // 2, width, 3), 32, dtype=np.uint8)
    r = row_height // 3
    for j, name in enumerate(names):
        cy = row_height // 2 + j * row_height + row_height // 4
        cv2.circle(legend, (row_height // 2 + r, cy), r + 1, RIM_COLOR, -1, cv2.LINE_AA)
        cv2.circle(legend, (row_height // 2 + r, cy), r, tuple(int(c) for c in palette[j]), -1, cv2.LINE_AA)
        cv2.putText(legend, str(name), (row_height * 2 - r, cy + r), font, scale, (235, 235, 235), 1, cv2.LINE_AA)
    return legend
