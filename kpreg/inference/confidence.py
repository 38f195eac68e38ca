"""The one place where a model's raw keypoint confidence becomes the confidence predictions report.

A head scores its keypoints on its own scale (a heatmap peak, a SimCC bin probability, …). Where the model
carries a fitted calibration map (``ModelInfo.calibration``: the plain-dict state of a
``kpreg.metrics.calibration.Calibrator``, stored with the checkpoint and embedded in exported files), the
predictor maps raw → P(correct) here, after the network and the flip test, for every backend alike. Where it
has none, the confidence is the head's raw score, and ``describe`` says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from kpreg.metrics.calibration import Calibrator, calibrate_keypoints


class ConfidenceMap:
    """(B, K) raw confidence → (B, K) reported confidence: the calibration map, or the identity."""

    def __init__(self, calibration: Mapping[str, Any] | None = None) -> None:
        self.calibrator: Calibrator | None = None
        if calibration is not None:
            calibrator = Calibrator.from_state(calibration)
            if getattr(calibrator, "use_spread", False):
                # The exported graph returns coordinates and confidences, not the head's spread.
                raise ValueError("the model's calibration map needs the head's spread, which prediction does not "
                                 "compute: refit it on the raw confidence alone")
            self.calibrator = calibrator

    @property
    def calibrated(self) -> bool:
        return self.calibrator is not None

    def describe(self) -> str:
        if self.calibrator is None:
            return "raw head score (the model has no calibration map)"
        return f"calibrated P(correct) ({self.calibrator.method} map)"

    def __call__(self, confidence: torch.Tensor) -> torch.Tensor:
        """(B, K) raw → (B, K), same dtype and device."""
        if self.calibrator is None or confidence.numel() == 0:
            return confidence
        return calibrate_keypoints(self.calibrator, confidence)
