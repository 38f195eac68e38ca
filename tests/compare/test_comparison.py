"""The study's comparisons from per-sample tables (kpreg.compare.comparison): the verdict table, its note, runs on
other frames refused, the label-budget learning curve and its plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from testkit.per_sample import write_per_sample

from kpreg.compare.comparison import (
    ConfigRuns,
    budget_markdown,
    default_targets,
    intervals,
    learning_curve,
    plot_learning_curves,
    verdict_markdown,
    verdict_note,
    verdicts,
)
from kpreg.compare.per_sample import PairingError, load_run
from kpreg.compare.statistics import Bootstrap

N, K = 40, 4
BASE = np.random.default_rng(0).gamma(2.0, 1.0, (N, K))  # (N, K) px: how hard each keypoint of each frame is


def config(tmp_path: Path, label: str, factor: float, seeds: int = 3, frames_seed: int = 0, **kw) -> ConfigRuns:
    runs = []
    for s in range(seeds):
        noise = np.random.default_rng(100 * s + sum(map(ord, label))).uniform(0.97, 1.03, (N, K))
        path = write_per_sample(tmp_path / f"{label}-seed{s}" / "per_sample.npz", BASE * factor * noise,
                                frames_seed=frames_seed)
        runs.append(load_run(f"{label}-seed{s}", path))
    return ConfigRuns(label, runs, seeds=list(range(seeds)), **kw)


def test_verdict_table(tmp_path: Path) -> None:
    # dsnt and offset: the same errors up to ±3 % noise per keypoint; fc: twice them
    configs = [config(tmp_path, "dsnt", 1.0), config(tmp_path, "offset", 1.0), config(tmp_path, "fc", 2.0)]
    boot = Bootstrap(n_resamples=400)
    rows = verdicts(configs, "MeanError", higher_is_better=False, bootstrap=boot, permutations=499)
    assert [r.verdict for r in rows] == ["best", "indistinguishable", "worse"]
    assert {rows[0].label, rows[1].label} == {"dsnt", "offset"} and rows[2].label == "fc"
    assert rows[2].difference.low > 0.5 * rows[0].estimate.estimate
    md = verdict_markdown(rows, "mean error (px)")
    assert f"| {rows[0].label} | 3 |" in md and "**best**" in md and f"Δ vs {rows[0].label}" in md
    assert "| fc | 3 |" in md and "| worse |" in md
    note = verdict_note(rows)
    assert "Holm-adjusted p-value is below 0.05" in note and "only the test sample" not in note
    one = [config(tmp_path, "a1", 1.0, seeds=1), config(tmp_path, "b1", 1.5, seeds=1)]
    rows = verdicts(one, "MeanError", higher_is_better=False, bootstrap=boot, permutations=499)
    assert "covers only the test sample" in verdict_note(rows)
    assert rows[0].estimate.method == "images (BCa)"
    table = intervals(configs, ["MeanError", "PCK@5px", "AP"], boot)
    assert set(table["fc"]) == {"MeanError", "PCK@5px"}  # no OKS AP in these tables
    assert table["fc"]["MeanError"].low < table["fc"]["MeanError"].estimate < table["fc"]["MeanError"].high


def test_runs_on_other_frames_are_refused(tmp_path: Path) -> None:
    configs = [config(tmp_path, "a", 1.0), config(tmp_path, "b", 1.0, frames_seed=5)]
    with pytest.raises(PairingError, match="evaluated on different frames cannot be paired"):
        verdicts(configs, "MeanError", higher_is_better=False, bootstrap=Bootstrap(n_resamples=50))


def test_learning_curve_of_nested_budgets(tmp_path: Path) -> None:
    budgets = [config(tmp_path, f"offset-{n}", 10.0 * n**-0.5, frames=n, budget=str(n)) for n in (10, 25, 50, 100)]
    boot = Bootstrap(n_resamples=300)
    curve = learning_curve("offset", budgets, "MeanError", targets=[], bootstrap=boot)
    assert curve.law.exponent == pytest.approx(0.5, abs=0.03)
    targets = default_targets([curve])
    best = curve.points[-1].estimate
    assert targets == [float(f"{1.25 * best:.2g}"), float(f"{0.9 * best:.2g}")]
    curve = learning_curve("offset", budgets, "MeanError", targets=targets, bootstrap=boot)
    inside, beyond = curve.needed
    assert inside.status == "interpolated" and 50 < inside.estimate < 100
    assert inside.low < inside.estimate < inside.high
    assert beyond.status == "extrapolated" and beyond.estimate > 100
    md = budget_markdown([curve], "mean error (px)")
    assert "| offset |" in md and "10 frames" in md and "n^−0.5" in md and "Labelled frames needed" in md
    path = plot_learning_curves([curve], "mean error (px)", {"offset": "C0"}, tmp_path / "curve.png", targets)
    assert path is not None and path.stat().st_size > 10_000
