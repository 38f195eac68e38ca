"""An evaluation epoch turned into numbers: its table gathered once, calibrated, scored.

``gather_table`` brings every process's packed rows together in one ``all_gather`` (the evaluation sampler gives
every process the same number of rows, padding flagged, ``kpreg.data.samplers``), so every process holds the
same ``EvaluationTable``, in dataset order. ``Evaluator`` then decides the confidence (``Calibration``) and feeds
the dataset's metrics and the uncertainty figures once with the whole table: nothing is synchronised again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from kpreg.formats.layout import EvaluationSpec
from kpreg.metrics import KeypointMetrics, build_metrics
from kpreg.metrics.calibration.evaluation import Calibration, CalibrationOutcome
from kpreg.metrics.table import EvaluationTable, TableRows
from kpreg.metrics.uncertainty import UncertaintyMetric


def gather_table(rows: TableRows) -> EvaluationTable:
    """All processes' rows as one table (every process gets it); one collective under DDP."""
    local = rows.packed()  # (S_local, C) float64 on the evaluation device
    if rows.layout is None:
        raise ValueError("no evaluation rows")
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        parts = [torch.empty_like(local) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, local.contiguous())  # equal shapes: the padded evaluation sampler's guarantee
        local = torch.cat(parts)
    return EvaluationTable.from_packed(local, rows.layout)


@dataclass
class EvaluationResult:
    """One evaluated split: its table, what its confidence means, and every number computed from them."""

    table: EvaluationTable
    calibration: CalibrationOutcome
    metrics: dict[str, float]  # the dataset metrics' keys (the metric contract)
    curve: dict[str, Any] | None  # the PCK-vs-threshold curve, where a metric reports one
    uncertainty: dict[str, float]  # kpreg.metrics.uncertainty's figures

    @property
    def confidence(self) -> torch.Tensor:
        """(S, K) the confidence every number and file uses."""
        return self.calibration.confidence


class Evaluator:
    """A dataset's evaluation (its ``EvaluationSpec``): the metrics, the definition of correct, the calibration's
    inputs; ``evaluate`` turns a table into an ``EvaluationResult``."""

    def __init__(self, spec: EvaluationSpec) -> None:
        self.spec = spec
        # Fed with the whole table on every process: a synchronisation would count every row world-size times.
        self.metrics: KeypointMetrics = build_metrics(spec, sync_on_compute=False)

    @property
    def correct_threshold(self) -> float:
        return float(self.spec.correct_threshold)

    def evaluate(self, table: EvaluationTable, calibration: Calibration, *, fit: bool, flip_test: bool,
                 split: str) -> EvaluationResult:
        outcome = calibration.evaluate(table, fit=fit, threshold=self.correct_threshold, scale=self.spec.scale,
                                       flip_test=flip_test, split=split)
        confidence = outcome.confidence  # (S, K)
        meta = table.meta()
        self.metrics.reset()
        self.metrics.update(table.coords, confidence, meta)
        values = self.metrics.compute()
        curve = self.metrics.curve()  # needs the states: before the next reset
        self.metrics.reset()
        uncertainty = UncertaintyMetric(threshold=self.correct_threshold, sync_on_compute=False)
        uncertainty.update(table.coords, confidence, meta, table.spread)
        return EvaluationResult(table, outcome, values, curve, uncertainty.compute())
