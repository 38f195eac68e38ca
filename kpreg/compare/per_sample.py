"""The runs of a comparison, read from their per-sample tables (``per_sample.npz``, written by ``evaluate.py``), and
the check that they were evaluated on the same frames: only then are they paired."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kpreg.metrics.resampling import ImageStatistic, table_statistics
from kpreg.metrics.table import load_per_sample


class PairingError(ValueError):
    """Runs that cannot be compared paired (evaluated on different frames)."""


@dataclass(frozen=True)
class EvaluatedRun:
    """One run's per-sample table, as image statistics."""

    name: str
    path: Path
    fingerprint: str  # hash of the evaluated samples and labels
    n_images: int
    statistics: dict[str, ImageStatistic]


def load_run(name: str, path: Path) -> EvaluatedRun:
    table = load_per_sample(path)
    n, statistics = table_statistics(table)
    return EvaluatedRun(name, Path(path), str(table["fingerprint"]), n, statistics)


def check_same_frames(runs: Sequence[EvaluatedRun]) -> None:
    """Refuse, with one message naming two runs that differ, runs evaluated on different frames."""
    if not runs:
        return
    first = runs[0]
    for run in runs[1:]:
        if run.fingerprint != first.fingerprint or run.n_images != first.n_images:
            raise PairingError(
                f"runs evaluated on different frames cannot be paired: {first.name} ({first.n_images} images, "
                f"frames {first.fingerprint[:12]}) and {run.name} ({run.n_images} images, frames "
                f"{run.fingerprint[:12]}); a paired comparison needs every run evaluated on the same split with the "
                "same labels (the same data config)")
