"""PCKh fed straight from a batch's ``meta`` (the sample contract), for datamodules whose ground truth
travels with the samples (synthetic, MPII)."""

from __future__ import annotations

from typing import Any

import torch
from rich.table import Table

from kpreg.metrics.pckh import PCKh

TABLE_COLUMNS = ("Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle", "Mean", "Mean@0.1", "AUC", "MeanError")


class BatchPCKh(PCKh):
    """``update(pred, scores, meta)``: pred (B, K, 2) original pixels; ground truth, visibility and head
    size come from ``meta`` (``keypoints_orig``, ``visible_orig``, ``norm_length``)."""

    def update(self, pred: torch.Tensor, scores: torch.Tensor, meta: dict[str, Any]) -> None:  # type: ignore[override]
        super().update(pred, meta["keypoints_orig"], meta["visible_orig"].bool(), meta["norm_length"])


def pckh_table(metrics: dict[str, float], title: str = "PCKh") -> Table:
    """The MPII-style table of whichever columns ``metrics`` has, two decimals; the mean pixel error is
    the caption. Compact, no-wrap columns, so nothing is truncated in an 80-column terminal."""
    columns = [c for c in TABLE_COLUMNS if c in metrics and c != "MeanError"]
    caption = f"mean error {metrics['MeanError']:.2f} px (original image)" if "MeanError" in metrics else None
    table = Table(title=title, caption=caption, box=None, header_style="bold underline")
    for c in columns:
        table.add_column(c, justify="right", no_wrap=True, min_width=max(len(c), 5))
    table.add_row(*(f"{metrics[c]:.2f}" for c in columns))
    return table
