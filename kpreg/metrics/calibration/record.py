"""What a checkpoint stores about its calibration: the map, the event it is the probability of, and the
measurement behind it, as plain data (``torch.load(weights_only=True)`` and JSON read it); and what a prediction's
confidence means, in one line.

The calibration itself runs inside the network's graph (``kpreg.network.KeypointNetwork`` applies the checkpoint's
``ConfidenceMap`` after the flip test, exactly as evaluation does), so PyTorch, ONNX Runtime and TorchScript
report the same calibrated confidence; the record (``ModelInfo.calibration``, also written into exported files'
metadata) only says which map it is."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from kpreg.metrics.calibration.features import CalibrationError
from kpreg.metrics.calibration.maps import CALIBRATORS, Calibrator

RECORD_FORMAT = 1


@dataclass
class CalibrationRecord:
    """``checkpoint["kpreg"]["calibration"]``.

    method: the recipe (a key of ``CALIBRATORS``), chosen by cross-fitted log-loss or given.
    map: the fitted map's ``Calibrator.state_dict()`` (fitted on all of ``fitted_on``).
    correct: the event: ``{"scale": "head"|"box", "threshold": t, "definition": "error ≤ …"}``.
    uses_spread: whether the map reads the head's spread (``log`` of it) besides the raw confidence.
    flip_test: whether the raw confidences it was fitted on were flip-tested (apply it to the same kind).
    fitted_on: ``{"split", "samples", "keypoints", "fingerprint"}``: the data it saw (the fingerprint tells a
        later evaluation of the same data to score cross-fitted maps, never this one).
    scores: the cross-fitted (out-of-fold) scores before / after calibration (``ConfidenceScores`` keys).
    table: every candidate's cross-fitted scores when the method was chosen by measurement, else empty.
    """

    method: str
    map: dict[str, Any]
    correct: dict[str, Any]
    uses_spread: bool
    flip_test: bool
    fitted_on: dict[str, Any]
    scores: dict[str, float] = field(default_factory=dict)
    table: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"format": RECORD_FORMAT, **asdict(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "calibration") -> CalibrationRecord:
        if not isinstance(data, Mapping):
            raise CalibrationError(f"{where}: expected a dict, got {type(data).__name__}")
        if data.get("format") != RECORD_FORMAT:
            raise CalibrationError(f"{where}: record format {data.get('format')!r}, this kpreg reads {RECORD_FORMAT}")
        try:
            record = cls(**{k: data[k] for k in ("method", "map", "correct", "uses_spread", "flip_test",
                                                  "fitted_on")},
                         scores=dict(data.get("scores", {})), table=dict(data.get("table", {})))
        except KeyError as err:
            raise CalibrationError(f"{where}: missing key {err}") from None
        if record.method not in CALIBRATORS:
            raise CalibrationError(f"{where}: unknown method {record.method!r}; known: {sorted(CALIBRATORS)}")
        return record

    def calibrator(self) -> Calibrator:
        return Calibrator.from_state(self.map)

    def describe(self) -> str:
        """One line for logs and file metadata."""
        n = self.fitted_on.get("keypoints", "?")
        return (f"P(correct), correct = {self.correct.get('definition', '?')}; method {self.method}, fitted on "
                f"{n} {self.fitted_on.get('split', '?')} keypoints")


def data_fingerprint(index: torch.Tensor, keypoints: torch.Tensor, visible: torch.Tensor) -> str:
    """A short hash of evaluated data: sample indices (S,), ground truth (S, K, 2) original px and visibility
    (S, K), in index order. Equal fingerprints: the same samples with the same labels."""
    order = torch.argsort(index.cpu(), stable=True)
    h = hashlib.sha1()
    h.update(index.cpu()[order].to(torch.int64).numpy().tobytes())
    h.update(keypoints.cpu()[order].to(torch.float32).numpy().tobytes())
    h.update(visible.cpu()[order].to(torch.bool).numpy().tobytes())
    return h.hexdigest()[:16]


def describe_confidence(calibration: Mapping[str, Any] | None) -> str:
    """``"raw head score …"`` without a calibration record, else the record's event and method."""
    if calibration is None:
        return "raw head score (the model has no calibration map)"
    return "calibrated " + CalibrationRecord.from_dict(calibration, "the model's calibration").describe()
