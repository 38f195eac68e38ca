"""The reliability diagram: share correct vs confidence per bin, one panel per label."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, NullFormatter

from kpreg.metrics.calibration.features import ArrayLike, CalibrationError
from kpreg.metrics.calibration.scores import expected_calibration_error, reliability_bins


def reliability_diagram(
    results: Mapping[str, tuple[ArrayLike, ArrayLike]],
    path: str | Path,
    n_bins: int = 15,
    title: str | None = None,
    columns: int = 3,
    dpi: int = 110,
) -> Path:
    """One panel per label: bin accuracy vs confidence (bars over each bin, dots at the bins' mean confidence)
    against the diagonal, the bin counts below on a log axis, the ECE in the legend. Writes a PNG of
    ``(3.4 · columns) × (3.9 · rows)`` inches at ``dpi`` to ``path`` (parents created) and returns it.
    Matplotlib's object API on an Agg canvas (no pyplot state)."""
    if not results:
        raise CalibrationError("reliability_diagram: no results to draw")
    labels = list(results)
    ncol = max(1, min(columns, len(labels)))
    nrow = math.ceil(len(labels) / ncol)
    fig = Figure(figsize=(3.4 * ncol, 3.9 * nrow + (0.4 if title else 0.0)), dpi=dpi)
    FigureCanvasAgg(fig)  # renders off-screen, whatever pyplot's backend
    fig.set_layout_engine("constrained")  # no clipped labels, and the PNG keeps the figure's exact size
    grid = fig.add_gridspec(2 * nrow, ncol, height_ratios=[3.0, 1.0] * nrow)
    width = 1.0 / n_bins
    for i, label in enumerate(labels):
        conf, correct = results[label]
        p = torch.as_tensor(conf, dtype=torch.float64).reshape(-1)
        if len(p) == 0:
            raise CalibrationError(f"reliability_diagram: {label!r} has no samples")
        bins = reliability_bins(p, correct, n_bins, "width")
        ece = expected_calibration_error(p, correct, n_bins, "width")
        r, c = divmod(i, ncol)
        ax = fig.add_subplot(grid[2 * r, c])
        axc = fig.add_subplot(grid[2 * r + 1, c], sharex=ax)
        left = bins.edges[:-1].numpy()  # (M,)
        used = (bins.count > 0).numpy()
        acc = np.nan_to_num(bins.accuracy.numpy())
        ax.plot([0, 1], [0, 1], "--", color="0.5", linewidth=1.0, label="perfect")
        ax.bar(left[used], acc[used], width=width, align="edge", color="#4c9be8", edgecolor="#1f5f9e",
               linewidth=0.6, alpha=0.75, label=f"share correct per bin  (ECE {100 * ece:.1f} %)")
        ax.plot(bins.confidence.numpy()[used], acc[used], "o", color="#c0392b", markersize=3.5, clip_on=False,
                label="at the bin's mean confidence")
        ax.set_xlim(0.0, 1.0)
        ax.set_ylim(0.0, 1.0)
        ax.set_title(f"{label}  (n = {len(p)})", fontsize=10)
        ax.set_ylabel("share correct", fontsize=9)
        ax.tick_params(labelsize=8, labelbottom=False)
        ax.legend(loc="upper left", fontsize=7.5, frameon=False)
        axc.bar(left[used], bins.count.numpy()[used], width=width, align="edge", color="0.55")
        axc.set_yscale("log")  # counts pile up at high confidence: a linear axis hides the sparse bins
        axc.set_ylim(0.7, 2.0 * float(bins.count.max()))  # a bar of 1 stays visible, the tallest is not cut
        axc.yaxis.set_major_locator(LogLocator(base=10.0, numticks=4))
        axc.yaxis.set_minor_formatter(NullFormatter())
        axc.set_xlabel("confidence", fontsize=9)
        axc.set_ylabel("count", fontsize=8)
        axc.tick_params(labelsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=dpi)
    return out
