"""Scores of a calibrated confidence — ECE (equal width and equal mass), Brier, log-loss, AUROC — and
:class:`ConfidenceScores`, the scores a run reports behind the metric contract.

ECE (equal width), Brier and AUROC are torchmetrics'; what they do not compute the way kpreg scores is said where
it is handled: a confidence of exactly 1 (ECE), a score outside [0, 1] and a set with one class (AUROC)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from scipy.stats import rankdata
from torchmetrics.functional import mean_squared_error
from torchmetrics.functional.classification import binary_auroc, binary_calibration_error

from kpreg.metrics.calibration.features import (
    ArrayLike,
    CalibrationError,
    as_features,
    as_labels,
    as_probabilities,
)
from kpreg.metrics.contract import Column, metric_table

LOG_LOSS_EPS = 1e-6  # probabilities are clipped to [eps, 1 - eps] in log_loss: one sure mistake costs ≤ 13.8 nats
BELOW_ONE = math.nextafter(1.0, 0.0)


def _probabilities_and_labels(confidence: ArrayLike, correct: ArrayLike, where: str) -> tuple[torch.Tensor, ...]:
    """(N,) float64 probabilities and (N,) bool labels on the CPU."""
    p = as_probabilities(confidence, where).cpu()  # (N,)
    return p, as_labels(torch.as_tensor(correct).cpu().reshape(-1), len(p), where)


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
    """Bin probabilities for the equal-mass ECE and the reliability diagram.

    ``"width"``: M equal bins ``[j/M, (j+1)/M)``, the last one closed (a confidence of exactly 1.0 is in bin
    M − 1). ``"mass"``: sort by confidence and put the run of ties that starts at sorted position r in bin
    ⌊M r / N⌋ (equal counts up to ties; ties are never split, so a constant confidence is one bin whatever the
    order of the labels).
    """
    p, correct_ = _probabilities_and_labels(confidence, correct, "reliability_bins")
    y = correct_.to(torch.float64)  # (N,)
    if n_bins < 1:
        raise CalibrationError(f"reliability_bins: n_bins must be ≥ 1, got {n_bins}")
    if strategy == "width":
        edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float64)  # (M + 1,)
        bins = (torch.bucketize(p, edges, right=True) - 1).clamp(max=n_bins - 1)  # (N,)
    elif strategy == "mass":
        first = torch.from_numpy(rankdata(p.numpy(), method="min") - 1)  # (N,) sorted position of its run's start
        bins = torch.div(first * n_bins, max(len(p), 1), rounding_mode="floor")  # (N,)
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
    """ECE = Σ_bins (n_b / N) · |accuracy_b − mean confidence_b| over the bins of :func:`reliability_bins`.

    Equal width is torchmetrics' ``binary_calibration_error`` (L1). Its bins are ``[j/M, (j+1)/M)`` with no
    closed last bin, so a confidence of exactly 1.0 would sit in a bin of its own (an (M+1)-th); it is moved to
    the float just below 1 (a change of 1e-16) so that it shares the last bin, as in the diagram. Equal mass
    has no torchmetrics counterpart."""
    if strategy != "width":
        bins = reliability_bins(confidence, correct, n_bins, strategy)
        used = bins.count > 0
        n = float(bins.count.sum())
        return float((bins.count[used] / n * (bins.accuracy[used] - bins.confidence[used]).abs()).sum()) if n \
            else math.nan
    p, y = _probabilities_and_labels(confidence, correct, "expected_calibration_error")
    if n_bins < 1:
        raise CalibrationError(f"expected_calibration_error: n_bins must be ≥ 1, got {n_bins}")
    if not len(p):
        return math.nan
    return float(binary_calibration_error(p.clamp(max=BELOW_ONE), y.long(), n_bins=n_bins, norm="l1"))


def brier_score(confidence: ArrayLike, correct: ArrayLike) -> float:
    """Mean squared difference between the probability and the 0/1 outcome."""
    p, y = _probabilities_and_labels(confidence, correct, "brier_score")
    return float(mean_squared_error(p, y.to(torch.float64))) if len(p) else math.nan


def log_loss(confidence: ArrayLike, correct: ArrayLike, eps: float = LOG_LOSS_EPS) -> float:
    """Mean negative log-likelihood in nats, probabilities clipped to [eps, 1 − eps] (torchmetrics has no
    log-loss; torch's binary cross-entropy is the same mean once the probabilities are clipped)."""
    p, y = _probabilities_and_labels(confidence, correct, "log_loss")
    return float(F.binary_cross_entropy(p.clamp(eps, 1.0 - eps), y.to(torch.float64))) if len(p) else math.nan


def auroc(score: ArrayLike, correct: ArrayLike) -> float:
    """P(score of a random correct keypoint > score of a random wrong one), ties counting 1/2: torchmetrics'
    ``binary_auroc``. 0.5 for a constant score; NaN when a class is missing (torchmetrics returns 0 with a
    warning, which would read as "perfectly wrong"). Any real score works (raw or calibrated): torchmetrics takes
    scores outside [0, 1] for logits and applies a sigmoid, which rounds scores above ≈ 37 to one tie at 1.0, so
    such scores are replaced by their ranks (the AUROC depends on the order alone)."""
    s = as_features(torch.as_tensor(score, dtype=torch.float64).reshape(-1).cpu(), "auroc")[:, 0]  # (N,)
    y = as_labels(torch.as_tensor(correct).reshape(-1).cpu(), len(s), "auroc")
    if bool(y.all()) or not bool(y.any()):
        return math.nan
    if bool((s < 0.0).any() | (s > 1.0).any()):
        s = torch.from_numpy(rankdata(s.numpy()) / len(s))  # (N,) in (0, 1], tied scores tied
    return float(binary_auroc(s, y.long()))


def calibration_scores(confidence: ArrayLike, correct: ArrayLike, n_bins: int = 15) -> dict[str, float]:
    """Every score of a calibrated confidence, for tables and loggers.

    ``ece`` / ``ece_mass``: equal-width / equal-mass ECE; ``brier``; ``log_loss`` (nats); ``auroc``;
    ``precision_above_half``: share correct among keypoints with confidence > 0.5 (NaN if none);
    ``share_above_half``: how many keypoints that is; ``accuracy``: share correct; ``mean_confidence``;
    ``count``.
    """
    p, y = _probabilities_and_labels(confidence, correct, "calibration_scores")
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


# ---- the scores a run reports ------------------------------------------------------------------------------
SECTION = "confidence = P(correct)"

# (key in calibration_scores, column key, label, higher is better, digits, unit, scale)
_SCORES: tuple[tuple[str, str, str, bool, int, str, float], ...] = (
    ("ece", "ECE", "ECE", False, 3, "", 1.0),
    ("brier", "Brier", "Brier", False, 3, "", 1.0),
    ("auroc", "AUROC", "AUROC", True, 3, "", 1.0),
    ("precision_above_half", "CorrectAbove0.5", "correct if >0.5", True, 1, "%", 100.0),
    ("share_above_half", "ShareAbove0.5", ">0.5", True, 1, "%", 100.0),
    ("log_loss", "LogLoss", "log-loss", False, 3, "", 1.0),
)
RAW_SUFFIX = "_raw"


def _columns() -> tuple[Column, ...]:
    out = [Column("Correct", "correct", True, 1, SECTION, "%", long_label="share of keypoints correct")]
    for _, key, label, higher, digits, unit, _scale in _SCORES:
        headline = key != "LogLoss" and key != "ShareAbove0.5"
        out.append(Column(key + RAW_SUFFIX, f"{label} raw", higher, digits, SECTION, unit, headline,
                          f"{label} before calibration"))
        out.append(Column(key, label, higher, digits, SECTION, unit, headline, f"{label} after calibration"))
    return tuple(out)


class ConfidenceScores:
    """ECE, Brier, AUROC, log-loss and the share of keypoints above 0.5 that are correct, before (``*_raw``: the
    raw head score clamped to [0, 1]) and after calibration (out of fold where the map saw the data), on the
    labelled keypoints; ``Correct`` is the share of correct keypoints (%) and ``Keypoints`` their count."""

    section = SECTION
    columns: tuple[Column, ...] = _columns()

    @classmethod
    def higher_is_better(cls, key: str) -> bool | None:
        return next((c.higher_is_better for c in cls.columns if c.key == key), None)

    @staticmethod
    def compute(raw: ArrayLike, calibrated: ArrayLike | None, correct: ArrayLike) -> dict[str, float]:
        """raw (N,) the head's scores (any real values: clamped to [0, 1], the identity map); calibrated (N,)
        probabilities or None (no calibration: only the ``*_raw`` keys); correct (N,) bool."""
        raw_p = torch.as_tensor(raw, dtype=torch.float64).reshape(-1).cpu().clamp(0.0, 1.0)  # (N,)
        y = as_labels(torch.as_tensor(correct).reshape(-1).cpu(), len(raw_p), "ConfidenceScores")
        out = {"Correct": 100.0 * float(y.double().mean()) if len(y) else math.nan, "Keypoints": float(len(y))}
        sets = [(RAW_SUFFIX, raw_p)]
        if calibrated is not None:
            sets.append(("", as_probabilities(calibrated, "ConfidenceScores").cpu()))
        for suffix, p in sets:
            scores = calibration_scores(p, y) if len(y) else {}
            for name, key, *_rest, scale in _SCORES:
                out[key + suffix] = scale * scores.get(name, math.nan)
        return out

    @classmethod
    def table(cls, values: dict[str, float], title: str = "") -> object:
        """The rich table of the values (the contract's one renderer)."""
        return metric_table(values, cls.columns, title)
