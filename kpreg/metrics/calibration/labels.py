"""The features a calibrator sees, and the calibration set of a validation run.

What "correct" means is defined once, in ``kpreg.metrics.correct`` (re-exported here as
:func:`correct_keypoints`): error ≤ the dataset's ``correct_threshold`` × the sample's ``norm_length``."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kpreg.metrics.calibration.inputs import ArrayLike, CalibrationError
from kpreg.metrics.correct import correct_keypoints

__all__ = ["CalibrationSet", "calibration_features", "correct_keypoints", "gather_calibration_set"]

MIN_LOG_SPREAD_PX2 = 1e-6  # spreads are floored before the log (a degenerate one-cell distribution has 0)


def calibration_features(confidence: ArrayLike, spread: ArrayLike | None = None) -> torch.Tensor:
    """Raw confidence (any shape) and optional spread (same shape, input px²) → (N, F) float64 features:
    column 0 the raw confidence, column 1 ``log(max(spread, 1e-6))`` when a spread is given."""
    conf = torch.as_tensor(confidence, dtype=torch.float64).reshape(-1)  # (N,)
    if spread is None:
        return conf[:, None]  # (N, 1)
    var = torch.as_tensor(spread, dtype=torch.float64, device=conf.device).reshape(-1)  # (N,) px²
    if var.shape != conf.shape:
        raise CalibrationError(f"calibration_features: spread has {var.numel()} values, confidence {conf.numel()}")
    return torch.stack((conf, var.clamp(min=MIN_LOG_SPREAD_PX2).log()), dim=1)  # (N, 2)


@dataclass
class CalibrationSet:
    """Flattened visible keypoints of a validation run: what :func:`choose_method` and :func:`cross_fit` take."""

    features: torch.Tensor  # (N, F) float64
    correct: torch.Tensor  # (N,) bool
    keypoint_index: torch.Tensor  # (N,) int64 in [0, K)
    groups: torch.Tensor  # (N,) int64 sample index: all keypoints of one sample share a fold


def gather_calibration_set(
    confidence: torch.Tensor,
    correct: torch.Tensor,
    visibility: torch.Tensor,
    spread: torch.Tensor | None = None,
    sample_ids: torch.Tensor | None = None,
) -> CalibrationSet:
    """(B, K) raw confidence, correctness, visibility and optional spread → the visible keypoints, flattened.

    ``sample_ids`` (B,) groups samples for cross-fitting (e.g. the image id, so that two people of one image
    share a fold); default: one group per row.
    """
    b, k = confidence.shape
    for name, t in (("correct", correct), ("visibility", visibility), ("spread", spread)):
        if t is not None and tuple(t.shape) != (b, k):
            raise CalibrationError(f"gather_calibration_set: {name} is {tuple(t.shape)}, confidence {(b, k)}")
    ids = torch.arange(b) if sample_ids is None else torch.as_tensor(sample_ids).cpu().long()  # (B,)
    if ids.shape != (b,):
        raise CalibrationError(f"gather_calibration_set: sample_ids is {tuple(ids.shape)}, expected ({b},)")
    keep = visibility.cpu().bool()  # (B, K)
    feats = calibration_features(confidence.detach().cpu(), None if spread is None else spread.detach().cpu())
    return CalibrationSet(
        features=feats[keep.reshape(-1)],  # (N, F)
        correct=correct.cpu().bool()[keep],  # (N,)
        keypoint_index=torch.arange(k).expand(b, k)[keep],  # (N,)
        groups=ids[:, None].expand(b, k)[keep],  # (N,)
    )

