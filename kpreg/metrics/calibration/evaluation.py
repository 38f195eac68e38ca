"""What an evaluated split's confidences mean: the calibration of an ``EvaluationTable``, and its state.

Calibration is decided on the whole table, after the epoch, because a fair COCO score (instance scores,
OKS-NMS) needs the calibrated confidence, and a confidence is only calibrated without optimism if the map that
produced it never saw that keypoint. ``Calibration.evaluate(table, fit=…)``:

* **fit** (validation; ``evaluate.py --calibrate``): the method is chosen (``auto``: by cross-fitted log-loss) and
  fitted on the table's labelled keypoints, and every labelled keypoint is scored by the map fitted on the *other*
  folds (out of fold); the metrics and the reported scores use those. The map fitted on everything becomes the
  stored one, so ``best.ckpt`` carries the map of its own weights without a second pass.
* a stored map on **the data it was fitted on** (same fingerprint: kpreg's test split is often the validation
  split): its method is cross-fitted again and the out-of-fold confidences are used;
* a stored map on **other data**: applied as is;
* no map: the raw head scores, said so in ``CalibrationOutcome.note``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from kpreg.formats.layout import ScaleKind
from kpreg.metrics.calibration import (
    CALIBRATORS,
    CalibrationRecord,
    ConfidenceMap,
    ConfidenceScores,
    choose_method,
    cross_fit,
    gather_calibration_set,
)
from kpreg.metrics.correct import correct_keypoints, describe_correct, normalised_error

if TYPE_CHECKING:
    from kpreg.metrics.table import EvaluationTable

FOLDS = 5  # cross-fitting folds; fewer groups (images) than this cannot be cross-fitted
CALIBRATION_METHODS = ("auto", "none", *CALIBRATORS)


def check_calibration_method(method: str) -> str:
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"model.calibration_method must be one of {', '.join(CALIBRATION_METHODS)}, got {method!r}")
    return method


@dataclass
class CalibrationOutcome:
    """What an evaluated split's confidences mean, and how well they do."""

    confidence: torch.Tensor  # (S, K) the confidence the metrics and files get, the table's rows
    mode: str  # "raw", "fitted" (out of fold), "cross-fitted" (stored method, out of fold) or "applied"
    record: CalibrationRecord | None  # the map in use (a new one when fitted)
    scores: dict[str, float]  # ConfidenceScores of the labelled keypoints
    raw: torch.Tensor  # (N,) labelled keypoints' raw scores
    calibrated: torch.Tensor | None  # (N,) their calibrated confidence (None: no map)
    correct: torch.Tensor  # (N,) bool
    keypoint_index: torch.Tensor  # (N,)
    note: str  # one line: what the confidence is
    definition: str  # the event: "error ≤ 0.1 × …"

    def points(self) -> dict[str, Any]:
        """The labelled keypoints' raw and calibrated confidence and correctness (for files and diagrams)."""
        return {"raw": self.raw.numpy(), "calibrated": None if self.calibrated is None else self.calibrated.numpy(),
                "correct": self.correct.numpy(), "keypoint_index": self.keypoint_index.numpy()}

    def finite_scores(self) -> dict[str, float]:
        """The scores a logger can take (NaN, e.g. AUROC with one class, left out)."""
        return {k: v for k, v in self.scores.items() if math.isfinite(v)}


class Calibration:
    """A model's calibration: the method it fits with and the map in use (the checkpoint's record).

    Args:
        method: ``auto`` (the candidate with the lowest cross-fitted log-loss), a key of ``CALIBRATORS``, or
            ``none`` (raw scores everywhere).
        num_keypoints: K of the model.
    """

    def __init__(self, method: str = "auto", num_keypoints: int = 1) -> None:
        self.method = check_calibration_method(method)
        self.num_keypoints = int(num_keypoints)
        self.record: CalibrationRecord | None = None

    @property
    def enabled(self) -> bool:
        return self.method != "none"

    def confidence_map(self) -> ConfidenceMap | None:
        """The record's map as a torch module (what the network applies), or None."""
        return None if self.record is None else ConfidenceMap.from_state(self.record.map, self.num_keypoints)

    def load(self, checkpoint: Mapping[str, Any]) -> None:
        """Take the map a checkpoint carries (``checkpoint["kpreg"]["calibration"]``), or none."""
        saved = (checkpoint.get("kpreg") or {}).get("calibration")
        self.record = None if saved is None else CalibrationRecord.from_dict(saved, "checkpoint calibration")

    def state(self) -> dict[str, Any] | None:
        """The record as plain data, for ``checkpoint["kpreg"]["calibration"]``."""
        return None if self.record is None else self.record.to_dict()

    def evaluate(self, table: EvaluationTable, *, fit: bool, threshold: float, scale: ScaleKind, flip_test: bool,
                 split: str) -> CalibrationOutcome:
        """Decide the table's confidence (see the module docstring); a fit replaces the stored record."""
        outcome = calibrate_table(table, fit=fit and self.enabled, method=self.method,
                                  record=self.record if self.enabled else None, threshold=threshold, scale=scale,
                                  flip_test=flip_test, split=split, num_keypoints=self.num_keypoints)
        if outcome.mode == "fitted":
            self.record = outcome.record
        return outcome


def calibrate_table(
    table: EvaluationTable,
    *,
    fit: bool,
    method: str,
    record: CalibrationRecord | None,
    threshold: float,
    scale: ScaleKind,
    flip_test: bool,
    split: str,
    num_keypoints: int,
) -> CalibrationOutcome:
    """Decide the table's confidence (see the module docstring). ``method``: ``auto`` (chosen by cross-fitted
    log-loss) or a key of ``CALIBRATORS``; ``threshold`` / ``scale``: the dataset's definition of correct."""
    correct = correct_keypoints(table.coords, table.gt, table.norm_length, threshold)  # (S, K)
    labelled = table.visible & torch.isfinite(normalised_error(table.coords, table.gt, table.norm_length))  # (S, K)
    cset = gather_calibration_set(table.confidence, correct, labelled, table.spread, sample_ids=table.groups)
    enough = len(cset.correct) > 0 and len(torch.unique(cset.groups)) >= FOLDS
    definition = {"scale": scale, "threshold": float(threshold), "definition": describe_correct(scale, threshold)}
    fingerprint = table.fingerprint()
    confidence = table.confidence.clone()  # (S, K)
    calibrated: torch.Tensor | None = None
    mode, note = "raw", "raw head scores (no calibration fitted)"
    if fit and method != "none" and enough:
        if method == "auto":
            choice = choose_method(cset.features, cset.correct, keypoint_index=cset.keypoint_index,
                                   groups=cset.groups, folds=FOLDS)
            name, calibrator, calibrated, candidates = choice.name, choice.calibrator, choice.probability, choice.table
        else:
            fitted = cross_fit(method, cset.features, cset.correct, folds=FOLDS, groups=cset.groups,
                               keypoint_index=cset.keypoint_index)
            name, calibrator, calibrated, candidates = method, fitted.final, fitted.probability, {}
        confidence_map = ConfidenceMap(calibrator, num_keypoints)
        confidence = confidence_map(table.confidence, table.spread)  # (S, K) unlabelled keypoints: the final map
        confidence[labelled] = calibrated  # labelled ones: out of fold
        record = CalibrationRecord(
            method=name, map=calibrator.state_dict(), correct=definition, uses_spread=confidence_map.uses_spread,
            flip_test=flip_test, table=candidates,
            fitted_on={"split": split, "samples": len(table.index), "keypoints": len(cset.correct),
                       "fingerprint": fingerprint})
        mode = "fitted"
        note = f"P(correct), {definition['definition']}: method {name}, cross-fitted (out of fold) on this {split} split"
    elif record is not None:
        confidence_map = ConfidenceMap.from_state(record.map, num_keypoints)
        confidence = confidence_map(table.confidence, table.spread)  # (S, K)
        same = record.fitted_on.get("fingerprint") == fingerprint
        if same and enough:
            fitted = cross_fit(record.method, cset.features, cset.correct, folds=FOLDS, groups=cset.groups,
                               keypoint_index=cset.keypoint_index)
            calibrated = fitted.probability
            confidence[labelled] = calibrated
            mode = "cross-fitted"
            note = (f"P(correct), {record.correct.get('definition')}: the stored map was fitted on this data, so its "
                    f"method ({record.method}) is cross-fitted again and scored out of fold")
        else:
            calibrated = confidence[labelled]
            mode = "applied"
            where = "the data it was fitted on (too little to cross-fit: in-sample scores)" if same else "held-out data"
            note = f"P(correct), {record.correct.get('definition')}: the stored map ({record.method}) on {where}"
    elif fit and method != "none":
        note = f"raw head scores: too few labelled samples ({len(table.index)}) to cross-fit a calibration"
    scores = ConfidenceScores.compute(cset.features[:, 0], calibrated, cset.correct)
    if mode == "fitted" and record is not None:
        record.scores = scores
    return CalibrationOutcome(confidence=confidence, mode=mode, record=record, scores=scores,
                              raw=cset.features[:, 0].clone(), calibrated=calibrated, correct=cset.correct,
                              keypoint_index=cset.keypoint_index, note=note,
                              definition=str(definition["definition"]))
