"""The calibration set: the features a calibrator sees, and the input checks every map and score shares (one
clear error naming the argument and index).

Features are ``(N, F)`` float64: column 0 the raw confidence, column 1 (optional) ``log max(spread, 1e-6)``.
What "correct" means is defined once, in ``kpreg.metrics.correct`` (re-exported here as
:func:`correct_keypoints`): error ≤ the dataset's ``correct_threshold`` × the sample's ``norm_length``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from kpreg.metrics.correct import correct_keypoints

__all__ = ["CalibrationError", "CalibrationSet", "calibration_features", "correct_keypoints",
           "gather_calibration_set"]

ArrayLike = torch.Tensor | np.ndarray | Sequence[float]
MIN_LOG_SPREAD_PX2 = 1e-6  # spreads are floored before the log (a degenerate one-cell distribution has 0)


class CalibrationError(ValueError):
    """Bad input to calibration (the CLI turns a ValueError into one line and exit code 2)."""


def as_features(x: ArrayLike, where: str) -> torch.Tensor:
    """(N,) or (N, F) → (N, F) float64 on the input's device; finite values only."""
    t = torch.as_tensor(x, dtype=torch.float64)
    if t.ndim == 1:
        t = t[:, None]
    if t.ndim != 2 or t.shape[1] < 1:
        raise CalibrationError(f"{where}: features must be (N,) or (N, F), got shape {tuple(t.shape)}")
    bad = (~torch.isfinite(t)).any(dim=1).nonzero()
    if len(bad):
        raise CalibrationError(f"{where}: features row {int(bad[0])} is not finite: {t[int(bad[0])].tolist()}")
    return t


def as_labels(y: ArrayLike, n: int, where: str) -> torch.Tensor:
    """(N,) bool or 0/1 → (N,) bool."""
    t = torch.as_tensor(y)
    if t.shape != (n,):
        raise CalibrationError(f"{where}: correct has shape {tuple(t.shape)}, expected ({n},)")
    if t.dtype != torch.bool:
        bad = ((t != 0) & (t != 1)).nonzero()
        if len(bad):
            raise CalibrationError(f"{where}: correct[{int(bad[0])}] = {t[int(bad[0])].item()} is not 0/1")
        t = t != 0
    return t


def as_indices(idx: ArrayLike | None, n: int, where: str) -> torch.Tensor | None:
    """(N,) non-negative integers or None."""
    if idx is None:
        return None
    t = torch.as_tensor(idx)
    if t.shape != (n,) or t.is_floating_point():
        raise CalibrationError(f"{where}: keypoint_index must be (N,) = ({n},) integers, got {tuple(t.shape)} "
                               f"{t.dtype}")
    t = t.long()
    if n and int(t.min()) < 0:
        raise CalibrationError(f"{where}: keypoint_index[{int(t.argmin())}] = {int(t.min())} is negative")
    return t


def as_fit_inputs(
    features: ArrayLike, correct: ArrayLike, keypoint_index: ArrayLike | None, where: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """What a fit takes, checked, on the CPU: features (N, F) float64, correct (N,) bool, keypoint_index (N,)."""
    x = as_features(features, where).cpu()  # (N, F)
    y = as_labels(torch.as_tensor(correct).cpu(), len(x), where)  # (N,)
    idx = as_indices(None if keypoint_index is None else torch.as_tensor(keypoint_index).cpu(), len(x), where)
    return x, y, idx


def as_probabilities(p: ArrayLike, where: str) -> torch.Tensor:
    """(N,) values in [0, 1] → float64 (scores are only defined on probabilities)."""
    t = torch.as_tensor(p, dtype=torch.float64).reshape(-1)
    bad = (~((t >= 0.0) & (t <= 1.0))).nonzero()  # also catches NaN
    if len(bad):
        i = int(bad[0])
        raise CalibrationError(f"{where}: confidence[{i}] = {t[i].item()} is not a probability in [0, 1] "
                               "(calibrate raw scores first)")
    return t


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
