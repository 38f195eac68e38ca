"""Predictions drawn on a frame with OpenCV: boxes, skeleton limbs and keypoints.

A keypoint whose confidence is below ``min_confidence`` (DeepLabCut's ``pcutoff``; ``kpreg.inference.filtering``)
or that is not finite is hidden, and so is every limb that touches it: a low-confidence joint drawn as if it were
found misleads more than a gap does.
Coordinates are original-image pixels, 0-based pixel centres, which is OpenCV's integer grid; points are
drawn with 4 fractional bits (``shift=4``), so sub-pixel predictions are not rounded to whole pixels.
Unlike ``kpreg.drawing`` (matplotlib, for reports), this is fast enough for every frame of a video.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from kpreg.inference.boxes import Box
from kpreg.inference.filtering import DEFAULT_MIN_CONFIDENCE, confident

_SHIFT = 4  # fractional bits of OpenCV's drawing coordinates
_ONE = 1 << _SHIFT
# Limb colours, RGB (matplotlib's tab10, bright on most scenes); keypoints white with a dark rim.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)
KEYPOINT_COLOR = (255, 255, 255)
RIM_COLOR = (20, 20, 20)
BOX_COLOR = (255, 220, 0)


def draw_predictions(
    image: np.ndarray,
    keypoints: np.ndarray,
    confidence: np.ndarray,
    skeleton: Sequence[Sequence[int]],
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    boxes: Sequence[Box] | None = None,
    radius: int | None = None,
    thickness: int | None = None,
) -> np.ndarray:
    """A copy of ``image`` (H, W, 3) uint8 RGB with N instances drawn.

    keypoints: (N, K, 2) x,y original pixels; confidence: (N, K); skeleton: 0-based keypoint index pairs;
    boxes: the N instances' boxes, drawn when given. ``radius`` / ``thickness`` default to sizes that
    grow with the frame (2 px / 1 px on small frames).
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"draw_predictions needs an (H, W, 3) uint8 image, got {image.dtype} {image.shape}")
    keypoints = np.asarray(keypoints, dtype=np.float64).reshape(-1, *np.shape(keypoints)[-2:])  # (N, K, 2)
    confidence = np.asarray(confidence, dtype=np.float64).reshape(keypoints.shape[:2])  # (N, K)
    k = keypoints.shape[1]
    for a, b in skeleton:
        if not (0 <= a < k and 0 <= b < k):
            raise ValueError(f"skeleton edge ({a}, {b}) is out of range for {k} keypoints")
    if boxes is not None and len(boxes) != len(keypoints):
        raise ValueError(f"{len(boxes)} boxes for {len(keypoints)} instances")
    side = min(image.shape[:2])
    radius = radius if radius is not None else max(2, round(side / 160))
    thickness = thickness if thickness is not None else max(1, round(side / 320))
    canvas = np.ascontiguousarray(image).copy()  # the frame may be shared (a source's buffer): never draw on it
    shown = confident(confidence, min_confidence, keypoints)  # (N, K)
    fixed = np.where(np.isfinite(keypoints), keypoints * _ONE, 0).round().astype(np.int64)  # (N, K, 2) fixed point
    for n in range(len(keypoints)):
        if boxes is not None:
            x, y, w, h = boxes[n].xywh  # edges: the box spans pixel centres x + 0.5 … x + w - 0.5
            top_left = (round((x + 0.5) * _ONE), round((y + 0.5) * _ONE))
            bottom_right = (round((x + w - 0.5) * _ONE), round((y + h - 0.5) * _ONE))
            cv2.rectangle(canvas, top_left, bottom_right, BOX_COLOR, thickness, cv2.LINE_AA, _SHIFT)
        for e, (a, b) in enumerate(skeleton):
            if shown[n, a] and shown[n, b]:
                cv2.line(canvas, tuple(map(int, fixed[n, a])), tuple(map(int, fixed[n, b])),
                         PALETTE[e % len(PALETTE)], thickness + 1, cv2.LINE_AA, _SHIFT)
        for j in np.flatnonzero(shown[n]):
            centre = tuple(map(int, fixed[n, j]))
            cv2.circle(canvas, centre, (radius + 1) * _ONE, RIM_COLOR, -1, cv2.LINE_AA, _SHIFT)
            cv2.circle(canvas, centre, radius * _ONE, KEYPOINT_COLOR, -1, cv2.LINE_AA, _SHIFT)
    return canvas
