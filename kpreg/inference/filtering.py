"""``min_confidence``, DeepLabCut's ``pcutoff``: which predicted keypoints count as found.

A keypoint is *confident* when its position is finite and its confidence is at least ``min_confidence``. With a
calibrated checkpoint the confidence is P(correct) (``kpreg.metrics.calibration``), so the cut-off has one meaning
for every head: 0.5 keeps the keypoints that are more likely right than wrong. Without calibration it is a cut on
the head's raw score, whose scale differs from head to head (SimCC's peaks are near 0.07, a heatmap's near 1).

Drawing (``kpreg.inference.render.draw_predictions``), the predictions file (``PredictionsWriter``) and a
DeepLabCut table (``kpreg.formats.deeplabcut.write_collected_data(..., labelled=confident(...))``) honour it.
"""

from __future__ import annotations

import numpy as np

# "More likely right than wrong" for a calibrated confidence. (DeepLabCut's default pcutoff is 0.6 of its raw score;
# mmpose draws keypoints above 0.3 of its raw score.)
DEFAULT_MIN_CONFIDENCE = 0.5


def confident(confidence: np.ndarray, min_confidence: float, keypoints: np.ndarray | None = None) -> np.ndarray:
    """(N, K) bool: confidence (N, K) finite and ≥ ``min_confidence``, and, if given, keypoints (N, K, 2) finite."""
    conf = np.asarray(confidence, dtype=np.float64)
    keep = np.isfinite(conf) & (conf >= float(min_confidence))
    if keypoints is not None:
        keep &= np.isfinite(np.asarray(keypoints, dtype=np.float64)).all(-1)
    return keep


def filter_keypoints(keypoints: np.ndarray, confidence: np.ndarray, min_confidence: float) -> np.ndarray:
    """(N, K, 2) x,y with NaN where the keypoint is not confident (DeepLabCut's empty cell); a copy."""
    xy = np.array(keypoints, dtype=np.float64)  # (N, K, 2) a copy
    xy[~confident(confidence, min_confidence, xy)] = np.nan
    return xy
