"""The module's side of calibration: an evaluation epoch's predictions are kept until its end, where the
confidence they are scored with is decided, then fed to the metrics.

Why at the end of the epoch: a fair COCO score (instance scores, OKS-NMS) needs the calibrated confidence, and a
confidence is only calibrated without optimism if the map that produced it never saw that keypoint. So:

* **validation** (``fit=True``): the map is chosen and fitted on this epoch's labelled keypoints
  (``choose_method``: cross-fitted log-loss) and every labelled keypoint is scored by the map fitted on the
  *other* folds (out of fold); the metrics, the checkpoint selection and the reported scores use those. The map
  fitted on everything goes into the checkpoint saved after this validation, so ``best.ckpt`` carries the map of
  its own weights without a second pass.
* **test** with a stored map: if the evaluated data is the data it was fitted on (same fingerprint: kpreg's
  test split is often the validation split), the stored *method* is cross-fitted again and its out-of-fold
  confidences are used; on other data the stored map is applied as is.
* **test** with ``fit=True`` (``evaluate.py --calibrate``): as validation; the new map replaces the stored one.
* no map (and no fit): the raw head scores, said so in ``CalibrationOutcome.note``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import Any

import torch
import torch.distributed as dist

from kpreg.formats.layout import ScaleKind
from kpreg.metrics.calibration import (
    CALIBRATORS,
    CalibrationRecord,
    ConfidenceMap,
    ConfidenceScores,
    choose_method,
    cross_fit,
    data_fingerprint,
    gather_calibration_set,
)
from kpreg.metrics.correct import correct_keypoints, describe_correct, normalised_error

FOLDS = 5  # cross-fitting folds; fewer groups (images) than this cannot be cross-fitted
CALIBRATION_METHODS = ("auto", "none", *CALIBRATORS)


def check_calibration_method(method: str) -> str:
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"model.calibration_method must be one of {', '.join(CALIBRATION_METHODS)}, got {method!r}")
    return method


def to_device(value: Any, device: torch.device | str) -> Any:
    """Tensors (nested in dicts, lists) detached and moved to ``device``; other values unchanged."""
    if isinstance(value, torch.Tensor):
        return value.detach().to(device)
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_device(v, device) for v in value)
    return value


@dataclass
class EpochRows:
    """One process's evaluation batches, in the order they came; on the CPU until the epoch ends (an epoch's worth of
    predictions would otherwise hold accelerator memory)."""

    coords: list[torch.Tensor] = field(default_factory=list)  # (B, K, 2) x,y original px, float64
    confidence: list[torch.Tensor] = field(default_factory=list)  # (B, K) raw, float64
    spread: list[torch.Tensor | None] = field(default_factory=list)  # (B, K) input px² or None
    meta: list[dict[str, Any]] = field(default_factory=list)

    def add(self, coords: torch.Tensor, confidence: torch.Tensor, spread: torch.Tensor | None,
            meta: dict[str, Any]) -> None:
        self.coords.append(coords.detach().to("cpu", torch.float64))
        self.confidence.append(confidence.detach().to("cpu", torch.float64))
        self.spread.append(None if spread is None else spread.detach().to("cpu", torch.float64))
        self.meta.append(to_device(meta, "cpu"))

    def clear(self) -> None:
        for rows in (self.coords, self.confidence, self.spread, self.meta):
            rows.clear()

    def __len__(self) -> int:
        return sum(len(c) for c in self.coords)

    def batches(
        self, confidence: torch.Tensor
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, dict[str, Any]]]:
        """(coords, the given confidence's rows of this batch, spread, meta) per batch; ``confidence`` (S, K) in
        row order."""
        start = 0
        for coords, spread, meta in zip(self.coords, self.spread, self.meta):
            yield coords, confidence[start:start + len(coords)], spread, meta
            start += len(coords)


@dataclass
class EpochTable:
    """An epoch's predictions as one table, one row per sample."""

    index: torch.Tensor  # (S,) sample index in its dataset
    coords: torch.Tensor  # (S, K, 2) x,y original px
    gt: torch.Tensor  # (S, K, 2) x,y original px
    visible: torch.Tensor  # (S, K) bool
    norm_length: torch.Tensor  # (S,) original px
    confidence: torch.Tensor  # (S, K) raw
    spread: torch.Tensor | None  # (S, K) input px²
    groups: torch.Tensor  # (S,) samples of one group (image) share a cross-fitting fold

    @classmethod
    def of(cls, rows: EpochRows) -> EpochTable:
        meta = rows.meta
        cat = torch.cat
        has_spread = bool(rows.spread) and all(s is not None for s in rows.spread)
        index = cat([m["index"].reshape(-1).long() for m in meta])
        groups = cat([m["image_id"].reshape(-1).long() if "image_id" in m else m["index"].reshape(-1).long()
                      for m in meta])
        return cls(index=index, coords=cat(rows.coords), gt=cat([m["keypoints_orig"].double() for m in meta]),
                   visible=cat([m["visible_orig"].bool() for m in meta]),
                   norm_length=cat([m["norm_length"].double().reshape(-1) for m in meta]),
                   confidence=cat(rows.confidence),
                   spread=cat(rows.spread) if has_spread else None,  # type: ignore[arg-type]
                   groups=groups)

    def rows(self, keep: torch.Tensor) -> EpochTable:
        return EpochTable(self.index[keep], self.coords[keep], self.gt[keep], self.visible[keep],
                          self.norm_length[keep], self.confidence[keep],
                          None if self.spread is None else self.spread[keep], self.groups[keep])


def gather_table(local: EpochTable) -> tuple[EpochTable, torch.Tensor]:
    """All processes' tables as one, sorted by sample index with duplicates dropped (so that every process, and a
    single process, fits on identical inputs), and the position of each local row in it."""
    parts = [local]
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        gathered: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, local)
        parts = gathered
    index = torch.cat([p.index for p in parts])  # (S_all,)
    order = torch.argsort(index, stable=True)
    first = torch.ones(len(order), dtype=torch.bool)
    first[1:] = index[order][1:] != index[order][:-1]
    keep = order[first]  # (S,) rows of the concatenation, by index, first of duplicates

    def joined(name: str) -> torch.Tensor | None:
        values = [getattr(p, name) for p in parts]
        return None if any(v is None for v in values) else torch.cat(values)[keep]

    full = EpochTable(**{f.name: joined(f.name) for f in fields(EpochTable)})  # type: ignore[arg-type]
    # Where each local row sits in the full table: look its sample index up.
    pos = torch.searchsorted(full.index, local.index)  # (S_local,)
    return full, pos


@dataclass
class CalibrationOutcome:
    """What an evaluation epoch's confidences mean, and how well they do."""

    confidence: torch.Tensor  # (S, K) the confidence the metrics and files get (full table's rows)
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


def calibrate_epoch(
    table: EpochTable,
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
    """Decide the epoch's confidence (see the module docstring). ``method``: ``auto`` (chosen by cross-fitted
    log-loss) or a key of ``CALIBRATORS``; ``threshold`` / ``scale``: the dataset's definition of correct."""
    correct = correct_keypoints(table.coords, table.gt, table.norm_length, threshold)  # (S, K)
    labelled = table.visible & torch.isfinite(normalised_error(table.coords, table.gt, table.norm_length))  # (S, K)
    cset = gather_calibration_set(table.confidence, correct, labelled, table.spread, sample_ids=table.groups)
    enough = len(cset.correct) > 0 and len(torch.unique(cset.groups)) >= FOLDS
    definition = {"scale": scale, "threshold": float(threshold), "definition": describe_correct(scale, threshold)}
    fingerprint = data_fingerprint(table.index, table.gt, table.visible)
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
    scores = ConfidenceScores.compute(cset.features[:, 0], calibrated, cset.correct)
    if mode == "fitted" and record is not None:
        record.scores = scores
    return CalibrationOutcome(confidence=confidence, mode=mode, record=record, scores=scores,
                              raw=cset.features[:, 0].clone(), calibrated=calibrated, correct=cset.correct,
                              keypoint_index=cset.keypoint_index, note=note,
                              definition=str(definition["definition"]))


def finite_scores(scores: dict[str, float]) -> dict[str, float]:
    """The scores a logger can take (NaN, e.g. AUROC with one class, left out)."""
    return {k: v for k, v in scores.items() if math.isfinite(v)}
