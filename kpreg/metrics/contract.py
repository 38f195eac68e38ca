"""The one metric contract: what every dataset metric declares, and the one table renderer.

A dataset metric is a torchmetrics ``Metric`` with

* ``update(pred, scores, meta)``: ``pred`` (B, K, 2) x,y original-image pixels, ``scores`` (B, K) keypoint
  confidences, ``meta`` the batch's collated ``meta`` dict (the sample contract, ``kpreg.data.sample``);
* ``compute() -> dict[str, float]``: a flat dict of numbers;
* ``columns``: the summary columns it reports (key, label, direction), in table order; ``declared_columns`` the same
  for its default options, known before any data is read (a config's primary key is checked against them);
* ``keypoint_columns``: the columns it reports per keypoint, each ``key`` the prefix of ``<key>/<keypoint name>``
  (``declared_keypoint_columns`` with its default options);
* ``family`` (``kpreg.formats.layout.MetricFamily``, what a dataset declares it is scored with) and
  ``default_primary``, the key that selects the best checkpoint when the family leads a dataset's metrics;
* ``higher_is_better(key)``: the direction of any of its keys (``None`` for keys it does not own);
* optionally ``curve()``: a PCK-vs-threshold curve ``{"thresholds": [...], "pck": [...], "label": ...}``.

``KeypointMetrics`` combines a dataset's metrics (pixel error and PCK everywhere; PCKh and OKS AP where the dataset
defines them) and names the **primary** key, which selects the best checkpoint and heads the study report.
Checkpointing, the study runner, the report, the command line's tables and the loggers read only this contract: no
metric name is spelt outside ``kpreg.metrics``.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
from rich.console import Group
from rich.table import Table
from rich.text import Text
from torch import nn
from torchmetrics import Metric


@dataclass(frozen=True)
class Column:
    """A summary column of a metric: ``key`` of ``compute()``, its table / report ``label``, its direction."""

    key: str
    label: str
    higher_is_better: bool
    digits: int = 2
    section: str = ""  # the table section it belongs to (e.g. "PCKh", "pixels", "OKS")
    unit: str = "%"  # "%", "px" or "" (a fraction)
    headline: bool = False  # one of the few numbers a comparison of runs shows (the study report's table)
    long_label: str = ""  # the report's wording where the table's short label needs its section to be understood
    breakdown: bool = False  # a part of its section's main number (PCKh per joint group): the report's group table

    @property
    def header(self) -> str:
        """The report's column header with its unit: ``PCKh@0.5 (%)``, ``mean error (px)``."""
        label = self.long_label or self.label
        return f"{label} ({self.unit})" if self.unit else label

    @property
    def short_header(self) -> str:
        """The table's label with its unit, for narrow columns: ``mean (px)``, ``PCK@0.1 (%)``."""
        return f"{self.label} ({self.unit})" if self.unit else self.label


class DatasetMetric(Metric):
    """Base class of the dataset metrics (see the module docstring for the contract)."""

    is_differentiable = False
    full_state_update = False
    section: str = ""  # the name of the metric's table section
    family: ClassVar[str] = ""  # kpreg.formats.layout.MetricFamily
    default_primary: ClassVar[str] = ""  # the primary key where this metric leads a dataset's metrics

    @property
    @abstractmethod
    def columns(self) -> list[Column]:
        """The summary columns, in table order."""

    @property
    def keypoint_columns(self) -> list[Column]:
        """The per-keypoint columns: ``key`` is the prefix of ``<key>/<keypoint name>``; none by default."""
        return []

    @classmethod
    def declared_columns(cls, keypoint_names: Sequence[str] = ()) -> list[Column]:
        """The summary columns with the metric's default options, for these keypoints (possibly not yet known)."""
        return []

    @classmethod
    def declared_keypoint_columns(cls) -> list[Column]:
        """The per-keypoint columns with the metric's default options."""
        return []

    @abstractmethod
    def update(self, pred: torch.Tensor, scores: torch.Tensor, meta: dict[str, Any]) -> None:  # type: ignore[override]
        """pred (B, K, 2) x,y original pixels; scores (B, K); meta: the batch's collated sample meta."""

    @classmethod
    def higher_is_better(cls, key: str) -> bool | None:
        """The direction of ``key`` if this metric reports it, else ``None``."""
        return None

    def curve(self) -> dict[str, Any] | None:
        return None


class KeypointMetrics(nn.Module):
    """The metrics of one dataset, combined, with a primary key.

    Args:
        metrics: the dataset's metrics; their keys must not collide.
        primary: the key that selects the best checkpoint (must be one of the metrics' keys; None: the first metric's
            ``default_primary``).
        title: the title of the printed table.
    """

    def __init__(self, metrics: Sequence[DatasetMetric], primary: str | None = None, title: str = "") -> None:
        super().__init__()
        if not metrics:
            raise ValueError("a dataset needs at least one metric")
        self.metrics = nn.ModuleList(metrics)
        self.title = title
        keys = [c.key for m in metrics for c in m.columns]
        if len(set(keys)) != len(keys):
            raise ValueError(f"metric keys collide: {sorted(k for k in keys if keys.count(k) > 1)}")
        primary = primary or metrics[0].default_primary
        if not reports(primary, self.columns, self.keypoint_columns) or self.higher_is_better_key(primary) is None:
            raise ValueError(
                f"primary metric {primary!r} is not reported by this dataset; choose one of {', '.join(keys)}"
            )
        self.primary = primary

    # ---- what the contract declares ------------------------------------------------------------------
    @property
    def columns(self) -> list[Column]:
        return [c for m in self.metrics for c in m.columns]

    @property
    def keypoint_columns(self) -> list[Column]:
        """Every metric's per-keypoint columns (``<key>/<keypoint name>``), in table order."""
        return [c for m in self.metrics for c in m.keypoint_columns]

    def higher_is_better_key(self, key: str) -> bool | None:
        for m in self.metrics:
            direction = m.higher_is_better(key)
            if direction is not None:
                return direction
        return None

    @property
    def higher_is_better(self) -> bool:
        """The direction of the primary key."""
        return bool(self.higher_is_better_key(self.primary))

    def describe(self) -> dict[str, Any]:
        """Plain data for files and reports: primary key, its direction, the summary and per-keypoint columns."""
        return {"primary": self.primary, "higher_is_better": self.higher_is_better,
                "title": self.title, "columns": [asdict(c) for c in self.columns],
                "keypoint_columns": [asdict(c) for c in self.keypoint_columns]}

    # ---- streaming -----------------------------------------------------------------------------------
    def update(self, pred: torch.Tensor, scores: torch.Tensor, meta: dict[str, Any]) -> None:
        for m in self.metrics:
            m.update(pred, scores, meta)

    def compute(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for m in self.metrics:
            out.update({k: float(v) for k, v in m.compute().items()})
        return out

    def curve(self) -> dict[str, Any] | None:
        """The first curve any metric reports (PCKh's on PCKh datasets, else the box-relative PCK's)."""
        for m in self.metrics:
            curve = m.curve()
            if curve is not None:
                return curve
        return None

    def reset(self) -> None:
        for m in self.metrics:
            m.reset()

    def table(self, values: dict[str, float], title: str | None = None) -> Group:
        return metric_table(values, self.columns, self.title if title is None else title)


def reports(key: str, columns: Sequence[Column], keypoint_columns: Sequence[Column]) -> bool:
    """Whether metrics with these summary and per-keypoint columns report ``key``: a summary key, or
    ``<per-keypoint key>/<keypoint name>``. A direction alone is not enough: ``PCK@0.7`` has one (higher is better),
    but no metric computes it unless its thresholds include 0.7."""
    prefix, _, name = key.partition("/")
    return key in {c.key for c in columns} or (bool(name) and prefix in {c.key for c in keypoint_columns})


def higher_is_better(key: str, metric_classes: Sequence[type[DatasetMetric]]) -> bool | None:
    """The direction of ``key`` as declared by the first of ``metric_classes`` that reports it."""
    for cls in metric_classes:
        direction = cls.higher_is_better(key)
        if direction is not None:
            return direction
    return None


def format_value(value: float, digits: int = 2) -> str:
    """Numbers as tables show them; pycocotools' -1 ("no ground truth in this range") and NaN as '-'."""
    if value is None or not math.isfinite(value) or value == -1:
        return "-"
    return f"{value:.{digits}f}"


def metric_table(values: dict[str, float], columns: Sequence[Column], title: str = "", width: int = 80) -> Group:
    """The one table renderer: one compact block per section (header row, value row); a section wider than
    ``width`` terminal columns continues in a second block, so nothing is cut in an 80-column terminal."""
    sections: dict[str, list[Column]] = {}
    for c in columns:
        if c.key in values:
            sections.setdefault(c.section, []).append(c)
    blocks: list[Any] = [Text(title, style="bold")] if title else []
    for section, cols in sections.items():
        chunks: list[list[Column]] = [[]]
        used = 0
        for c in cols:
            cell = max(len(c.label), 5) + 2  # rich pads every cell by one space on each side
            if chunks[-1] and used + cell > width:
                chunks.append([])
                used = 0
            chunks[-1].append(c)
            used += cell
        for n, chunk in enumerate(chunks):
            table = Table(title=(section if n == 0 else None) or None, title_justify="left",
                          box=None, header_style="bold underline", title_style="italic")
            for c in chunk:
                table.add_column(c.label, justify="right", no_wrap=True, min_width=max(len(c.label), 5))
            table.add_row(*(format_value(values[c.key], c.digits) for c in chunk))
            blocks.append(table)
    return Group(*blocks)


def per_keypoint_table(values: dict[str, float], keypoint_names: Sequence[str], columns: Sequence[Column],
                       title: str = "per keypoint") -> Table:
    """Rows = keypoints, one column per per-keypoint column (``KeypointMetrics.keypoint_columns``) that has values:
    the value of ``f"{column.key}/{name}"``, headed by the column's label and unit."""
    table = Table(title=title, title_justify="left", box=None, header_style="bold underline", title_style="italic")
    table.add_column("keypoint", no_wrap=True)
    shown = [c for c in columns if any(f"{c.key}/{n}" in values for n in keypoint_names)]
    for c in shown:
        table.add_column(c.short_header, justify="right", no_wrap=True)
    for name in keypoint_names:
        table.add_row(name, *(format_value(values.get(f"{c.key}/{name}", math.nan), c.digits) for c in shown))
    return table
