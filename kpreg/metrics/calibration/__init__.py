"""Calibration: a head's raw per-keypoint confidence → the probability that the keypoint is correct.

Every head scores its keypoints on its own scale (heatmap peak ≈ 1, SimCC peak ≈ 0.07, DSNT peak ≈ 0.16,
the FC head a constant 1, …). A *calibrator* maps these raw scores (and, for heads that have one, the log of
the predicted spread) to ONE meaning: ``P(correct)``, with "correct" defined by :func:`correct_keypoints`
(``kpreg.metrics.correct``: error ≤ the dataset's threshold × the sample's scale, PCKh@0.5 of the head size or
PCK@0.1 of the box size; see ``docs/calibration.md`` for why). It is fitted on validation predictions after
training, stored in the checkpoint as plain data (:class:`CalibrationRecord`) and applied wherever a confidence
is shown or thresholded (:class:`ConfidenceMap`).

One file per step, in the order of the data flow (everything is re-exported here):

* ``features.py``: the calibration set (:func:`gather_calibration_set`, :func:`calibration_features`) and the
  input checks every step shares (:class:`CalibrationError`, a ``ValueError``);
* ``maps.py``: :class:`Identity`, :class:`Platt` (logistic regression, ``scipy.optimize``), :class:`Isotonic`
  (scipy's pool-adjacent-violators, piecewise-linear at prediction time), :class:`PerKeypoint` (one map per
  keypoint with a shared fallback); named recipes in :data:`CALIBRATORS`; :func:`calibrate_keypoints`;
* ``selection.py``: :func:`cross_fit` (out-of-fold probabilities, folds by group) and :func:`choose_method`
  (the method is chosen by cross-fitted log-loss, not by taste);
* ``scores.py``: ECE, Brier, log-loss, AUROC (torchmetrics where it computes the same thing) and
  :class:`ConfidenceScores`, the scores before / after calibration behind the metric contract;
* ``confidence_map.py``: :class:`ConfidenceMap`, any fitted map as a torch module with per-keypoint tables
  (what training, evaluation, prediction and ONNX / TorchScript export apply);
* ``record.py``: :class:`CalibrationRecord`, what a checkpoint stores, and :func:`describe_confidence`;
* ``reliability.py``: :func:`reliability_diagram`, the PNG.

Conventions: features are ``(N, F)`` float64 with column 0 the raw confidence and column 1 (optional) the
log spread; ``correct`` is ``(N,)`` bool; ``keypoint_index`` ``(N,)`` int in ``[0, K)``. Fitting runs in
float64 on the CPU and is deterministic; applying a fitted map is plain torch on the input's device.
"""

from kpreg.metrics.calibration.confidence_map import ConfidenceMap, confidence_map_of
from kpreg.metrics.calibration.features import (
    CalibrationError,
    CalibrationSet,
    calibration_features,
    correct_keypoints,
    gather_calibration_set,
)
from kpreg.metrics.calibration.maps import (
    CALIBRATORS,
    Calibrator,
    Identity,
    Isotonic,
    PerKeypoint,
    Platt,
    calibrate_keypoints,
    interpolate,
    logistic_objective,
    make_calibrator,
    platt_targets,
)
from kpreg.metrics.calibration.record import CalibrationRecord, data_fingerprint, describe_confidence
from kpreg.metrics.calibration.reliability import reliability_diagram
from kpreg.metrics.calibration.scores import (
    ConfidenceScores,
    ReliabilityBins,
    auroc,
    brier_score,
    calibration_scores,
    expected_calibration_error,
    log_loss,
    reliability_bins,
)
from kpreg.metrics.calibration.selection import (
    CrossFit,
    MethodChoice,
    choose_method,
    cross_fit,
    default_candidates,
    fold_assignment,
)

__all__ = [
    "CALIBRATORS", "CalibrationError", "CalibrationRecord", "CalibrationSet", "Calibrator", "ConfidenceMap",
    "ConfidenceScores", "CrossFit", "data_fingerprint", "describe_confidence", "Identity", "Isotonic",
    "MethodChoice", "PerKeypoint", "Platt", "ReliabilityBins", "auroc", "brier_score", "calibrate_keypoints",
    "calibration_features", "calibration_scores", "choose_method", "confidence_map_of", "correct_keypoints", "cross_fit",
    "default_candidates", "expected_calibration_error", "fold_assignment", "gather_calibration_set",
    "interpolate", "log_loss", "logistic_objective", "make_calibrator", "platt_targets",
    "reliability_bins", "reliability_diagram",
]
