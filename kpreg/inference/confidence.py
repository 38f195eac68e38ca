"""What the confidence a prediction reports means, in one line for logs and the predictor's description.

The calibration itself runs inside the network's graph (``InferenceModel`` applies the checkpoint's
``ConfidenceMap`` after the flip test, exactly as evaluation does), so PyTorch, ONNX Runtime and TorchScript
report the same calibrated confidence. The model's ``ModelInfo.calibration`` (the checkpoint's
``CalibrationRecord`` as plain data, also written into exported files' metadata) only says which map it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kpreg.metrics.calibration import CalibrationRecord


def describe_confidence(calibration: Mapping[str, Any] | None) -> str:
    """``"raw head score …"`` without a calibration record, else the record's event and method."""
    if calibration is None:
        return "raw head score (the model has no calibration map)"
    return "calibrated " + CalibrationRecord.from_dict(calibration, "the model's calibration").describe()
