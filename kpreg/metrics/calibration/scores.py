"""Scores of a calibrated confidence: ECE (equal width and equal mass), Brier, log-loss, AUROC, …"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from kpreg.metrics.calibration.inputs import (
    ArrayLike,
    CalibrationError,
    as_features,
    as_labels,
    as_probabilities,
)
from kpreg.metrics.uncertainty import average_ranks

LOG_LOSS_EPS = 1e-6  # probabilities are clipped to [eps, 1 - eps] in log_loss: one sure mistake costs ≤ 13.8 nats


@dataclass
class ReliabilityBins:
    """Per-bin statistics (empty bins have count 0 and NaN means)."""

    edges: torch.Tensor  # (M + 1,) bin edges (equal width) or the first/last confidence of each bin (equal mass)
    count: torch.Tensor  # (M,) samples per bin
    confidence: torch.Tensor  # (M,) mean confidence
    accuracy: torch.Tensor  # (M,) share correct


def reliability_bins(
    confidence: ArrayLike, correct: ArrayLike, n_bins: int = 15, strategy: Literal["width", "mass"] = "width"
) -> ReliabilityBins:
    """Bin probabilities for ECE and the reliability diagram.

    ``"width"``: M equal bins ``[j/M, (j+1)/M)``, the last one closed (a confidence of exactly 1.0 is in bin
    M − 1; torchmetrics puts it in an extra bin of its own). ``"mass"``: sort by confidence and put the run of
    ties that starts at sorted position r in bin ⌊M r / N⌋ (equal counts up to ties; ties are never split, so
    a constant confidence is one bin whatever the order of the labels).
    """
    p = as_probabilities(confidence, "reliability_bins").cpu()  # (N,)
    y = as_labels(torch.as_tensor(correct).cpu().reshape(-1), len(p), "reliability_bins").to(torch.float64)
    if n_bins < 1:
        raise CalibrationError(f"reliability_bins: n_bins must be ≥ 1, got {n_bins}")
    if strategy == "width":
        edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float64)  # (M + 1,)
        bins = (torch.bucketize(p, edges, right=True) - 1).clamp(max=n_bins - 1)  # (N,)
    elif strategy == "mass":
        order = torch.argsort(p, stable=True)
        sp = p[order]  # (N,) sorted
        run_start = torch.ones(len(sp), dtype=torch.bool)
        run_start[1:] = sp[1:] != sp[:-1]
        first = torch.cummax(torch.where(run_start, torch.arange(len(sp)), 0), dim=0).values  # (N,) run's start
        bins = torch.empty(len(p), dtype=torch.long)
        bins[order] = torch.div(first * n_bins, max(len(p), 1), rounding_mode="floor")
        lo = torch.full((n_bins,), math.nan, dtype=torch.float64).scatter_reduce(0, bins, p, "amin",
                                                                                 include_self=False)
        hi = torch.full((n_bins,), math.nan, dtype=torch.float64).scatter_reduce(0, bins, p, "amax",
                                                                                 include_self=False)
        edges = torch.cat((lo, hi[-1:]))  # (M + 1,) informative only; NaN where a bin is empty
    else:
        raise CalibrationError(f"reliability_bins: strategy must be 'width' or 'mass', got {strategy!r}")
    count = torch.bincount(bins, minlength=n_bins).to(torch.float64)  # (M,)
    conf = torch.bincount(bins, weights=p, minlength=n_bins) / count  # (M,) NaN where empty (0 / 0)
    acc = torch.bincount(bins, weights=y, minlength=n_bins) / count  # (M,)
    return ReliabilityBins(edges=edges, count=count, confidence=conf, accuracy=acc)


def expected_calibration_error(
    confidence: ArrayLike, correct: ArrayLike, n_bins: int = 15, strategy: Literal["width", "mass"] = "width"
) -> float:
    """ECE = Σ_bins (n_b / N) · |accuracy_b − mean confidence_b| (bins of :func:`reliability_bins`)."""
    bins = reliability_bins(confidence, correct, n_bins, strategy)
    used = bins.count > 0
    n = float(bins.count.sum())
    if n == 0:
        return math.nan
    return float((bins.count[used] / n * (bins.accuracy[used] - bins.confidence[used]).abs()).sum())


def brier_score(confidence: ArrayLike, correct: ArrayLike) -> float:
    """Mean squared difference between the probability and the 0/1 outcome."""
    p = as_probabilities(confidence, "brier_score")
    y = as_labels(torch.as_tensor(correct).reshape(-1).to(p.device), len(p), "brier_score").to(torch.float64)
    return float((p - y).pow(2).mean()) if len(p) else math.nan


def log_loss(confidence: ArrayLike, correct: ArrayLike, eps: float = LOG_LOSS_EPS) -> float:
    """Mean negative log-likelihood in nats, probabilities clipped to [eps, 1 − eps]."""
    p = as_probabilities(confidence, "log_loss").clamp(eps, 1.0 - eps)
    y = as_labels(torch.as_tensor(correct).reshape(-1).to(p.device), len(p), "log_loss")
    return float(-torch.where(y, p.log(), (1.0 - p).log()).mean()) if len(p) else math.nan


def auroc(score: ArrayLike, correct: ArrayLike) -> float:
    """P(score of a random correct keypoint > score of a random wrong one), ties counting 1/2
    (Mann–Whitney U / (N₊ N₋) from average ranks). 0.5 for a constant score; NaN when a class is missing.
    Any real score works (raw or calibrated)."""
    s = as_features(torch.as_tensor(score, dtype=torch.float64).reshape(-1).cpu(), "auroc")[:, 0]  # (N,)
    y = as_labels(torch.as_tensor(correct).reshape(-1).cpu(), len(s), "auroc")
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = average_ranks(s) + 1.0  # (N,) 1-based
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def calibration_scores(confidence: ArrayLike, correct: ArrayLike, n_bins: int = 15) -> dict[str, float]:
    """Every score of a calibrated confidence, for tables and loggers.

    ``ece`` / ``ece_mass``: equal-width / equal-mass ECE; ``brier``; ``log_loss`` (nats); ``auroc``;
    ``precision_above_half``: share correct among keypoints with confidence > 0.5 (NaN if none);
    ``share_above_half``: how many keypoints that is; ``accuracy``: share correct; ``mean_confidence``;
    ``count``.
    """
    p = as_probabilities(confidence, "calibration_scores").cpu()
    y = as_labels(torch.as_tensor(correct).reshape(-1).cpu(), len(p), "calibration_scores")
    above = p > 0.5
    return {
        "ece": expected_calibration_error(p, y, n_bins, "width"),
        "ece_mass": expected_calibration_error(p, y, n_bins, "mass"),
        "brier": brier_score(p, y),
        "log_loss": log_loss(p, y),
        "auroc": auroc(p, y),
        "precision_above_half": float(y[above].double().mean()) if bool(above.any()) else math.nan,
        "share_above_half": float(above.double().mean()) if len(p) else math.nan,
        "accuracy": float(y.double().mean()) if len(p) else math.nan,
        "mean_confidence": float(p.mean()) if len(p) else math.nan,
        "count": float(len(p)),
    }

