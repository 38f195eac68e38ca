"""Calibration (issue 15): a head's raw per-keypoint confidence → the probability that the keypoint is correct.

Every head scores its keypoints on its own scale (heatmap peak ≈ 1, SimCC peak ≈ 0.07, DSNT peak ≈ 0.16,
the FC head a constant 1, …). A *calibrator* maps these raw scores (and, for heads that have one, the log of
the predicted spread) to ONE meaning: ``P(correct)``, with "correct" defined by :func:`correct_keypoints`
(``kpreg.metrics.correct``: error ≤ the dataset's threshold × the sample's scale, PCKh@0.5 of the head size or
PCK@0.1 of the box size; see ``docs/calibration.md`` for why). It is fitted on validation
predictions after training, stored in the checkpoint as a plain dict (:meth:`Calibrator.state_dict`,
loadable with ``torch.load(weights_only=True)`` and JSON-serialisable) and applied wherever a confidence is
shown or thresholded (:func:`calibrate_keypoints`).

One file per step, in the order of the data flow (everything is re-exported here):

* ``labels.py``: the features: :func:`calibration_features`, :func:`gather_calibration_set` (and
  :func:`correct_keypoints`, re-exported from ``kpreg.metrics.correct``);
* ``maps.py``: :class:`Identity`, :class:`Platt` (logistic regression, Newton's method), :class:`Isotonic`
  (pool-adjacent-violators, piecewise-linear at prediction time), :class:`PerKeypoint` (one map per keypoint
  with a shared fallback); named recipes in :data:`CALIBRATORS`; :meth:`Calibrator.from_state`;
  :func:`calibrate_keypoints` applies a map to a (B, K) batch;
* ``scores.py``: :func:`reliability_bins`, :func:`expected_calibration_error`, :func:`brier_score`,
  :func:`log_loss`, :func:`auroc`, :func:`calibration_scores`;
* ``selection.py``: :func:`cross_fit` (out-of-fold probabilities, folds by group) and :func:`choose_method`
  (the method is chosen by cross-fitted log-loss, not by taste);
* the reliability diagram (a PNG) is drawn by ``kpreg.compare.reliability`` (metrics do not draw);
* ``confidence_map.py``: :class:`ConfidenceMap`, any fitted map as a torch module with per-keypoint tables (what
  training, evaluation, prediction and ONNX / TorchScript export apply);
* ``record.py``: :class:`CalibrationRecord`, what a checkpoint stores (``checkpoint["kpreg"]["calibration"]``);
* ``summary.py``: :class:`ConfidenceScores`, the scores before / after calibration behind the metric contract;
* ``inputs.py``: the input checks they share (:class:`CalibrationError`, a ``ValueError``).

Conventions: features are ``(N, F)`` float64 with column 0 the raw confidence and column 1 (optional) the
log spread; ``correct`` is ``(N,)`` bool; ``keypoint_index`` ``(N,)`` int in ``[0, K)``. Fitting runs in
float64 on the CPU and is deterministic; applying a fitted map is plain torch on the input's device.
"""

from kpreg.metrics.calibration.confidence_map import ConfidenceMap, confidence_map_of
from kpreg.metrics.calibration.inputs import CalibrationError
from kpreg.metrics.calibration.labels import (
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
from kpreg.metrics.calibration.record import CalibrationRecord, data_fingerprint
from kpreg.metrics.calibration.scores import (
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
from kpreg.metrics.calibration.summary import ConfidenceScores

__all__ = [
    "CALIBRATORS", "CalibrationError", "CalibrationRecord", "CalibrationSet", "Calibrator", "ConfidenceMap",
    "ConfidenceScores", "CrossFit", "data_fingerprint", "Identity", "Isotonic",
    "MethodChoice", "PerKeypoint", "Platt", "ReliabilityBins", "auroc", "brier_score", "calibrate_keypoints",
    "calibration_features", "calibration_scores", "choose_method", "confidence_map_of", "correct_keypoints", "cross_fit",
    "default_candidates", "expected_calibration_error", "fold_assignment", "gather_calibration_set",
    "interpolate", "log_loss", "logistic_objective", "make_calibrator", "platt_targets",
    "reliability_bins",
]
