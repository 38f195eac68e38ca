"""The confidence scores a run reports, behind the metric contract: before (the raw head score, clamped to
[0, 1]) and after calibration, on the labelled keypoints, out of fold where the map saw the data."""

from __future__ import annotations

import math

import torch

from kpreg.metrics.calibration.inputs import ArrayLike, as_labels, as_probabilities
from kpreg.metrics.calibration.scores import calibration_scores
from kpreg.metrics.contract import Column, metric_table

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
    """ECE, Brier, AUROC, log-loss and the share of keypoints above 0.5 that are correct, before (``*_raw``) and
    after calibration; ``Correct`` is the share of correct keypoints (%) and ``Keypoints`` their count."""

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
