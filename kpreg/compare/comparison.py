"""The comparisons of a study from its runs' per-sample tables: every summary metric with its interval, the verdict
table (each configuration against the best or a baseline), and the label-budget learning curves.

Configurations are the study's cells without the seed (a head at a stride, a budget, other grid values); their runs
(one per seed) must all be evaluated on the same frames (``kpreg.compare.per_sample.check_same_frames``). The
statistics are ``kpreg.compare.statistics``; nothing here names a metric: the keys come from the caller (the metric
contract of the study's dataset).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kpreg.compare.learning_curve import FramesNeeded, PowerLaw, curve_band, fit_power_law, frames_needed
from kpreg.compare.per_sample import EvaluatedRun, check_same_frames
from kpreg.compare.statistics import Bootstrap, Interval, Verdict, compare


@dataclass
class ConfigRuns:
    """One configuration: its label in tables, its runs (one per seed, in seed order)."""

    label: str
    runs: list[EvaluatedRun]
    head: str = ""
    stride: int | None = None
    budget: str | None = None  # the label budget as given ("25%", "40"), None: every training frame
    frames: int | None = None  # training frames used (the budget resolved)
    seeds: list[int] = field(default_factory=list)

    def statistics(self, key: str) -> list[Any]:
        return [run.statistics[key] for run in self.runs]

    def has(self, key: str) -> bool:
        return bool(self.runs) and all(key in run.statistics for run in self.runs)


def intervals(configs: Sequence[ConfigRuns], keys: Sequence[str], bootstrap: Bootstrap) -> dict[str, dict[str, Interval]]:
    """label → key → the seed-averaged metric with its interval, for every key the runs can resample."""
    return {c.label: {k: bootstrap.interval(c.statistics(k)) for k in keys if c.has(k)} for c in configs}


def verdicts(configs: Sequence[ConfigRuns], key: str, higher_is_better: bool, baseline: str | None = None,
             bootstrap: Bootstrap | None = None, permutations: int = 9999) -> list[Verdict]:
    """The verdict table of ``key`` over ``configs`` (all on the same frames; see ``kpreg.compare.statistics``)."""
    usable = [c for c in configs if c.has(key)]
    check_same_frames([run for c in usable for run in c.runs])
    return compare({c.label: c.statistics(key) for c in usable}, higher_is_better, baseline, bootstrap=bootstrap,
                   permutations=permutations)


def _p(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return ""
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def verdict_markdown(rows: Sequence[Verdict], header: str, digits: int = 2) -> str:
    """The verdict table as markdown: estimate [CI], difference to the reference [CI], p (Holm), P(best)."""
    reference = rows[0].label if rows else ""
    lines = [f"| Configuration | Seeds | {header} [95 % CI] | Δ vs {reference} [95 % CI] | p | p (Holm) | P(best) | "
             "Verdict |", "|:---|---:|---:|---:|---:|---:|---:|:---|"]
    for r in rows:
        diff = r.difference.format(digits) if r.difference is not None else "–"
        verdict = f"**{r.verdict}**" if r.verdict in ("best", "baseline", "better") else r.verdict
        lines.append(f"| {r.label} | {r.seeds} | {r.estimate.format(digits)} | {diff} | {_p(r.p)} | {_p(r.p_holm)} | "
                     f"{r.p_best:.2f} | {verdict} |")
    return "\n".join(lines)


def verdict_note(rows: Sequence[Verdict], alpha: float = 0.05) -> str:
    """What the verdict table's intervals and tests mean, for the report."""
    if not rows:
        return ""
    one_seed = [r.label for r in rows if r.seeds == 1]
    tests = sorted({r.test for r in rows[1:] if r.test})
    text = (f"Reference: {rows[0].label} ({rows[0].verdict}). A configuration is *worse* (or *better*) only when its "
            f"Holm-adjusted p-value is below {alpha:g} **and** the 95 % interval of its difference excludes 0; "
            f"otherwise *indistinguishable*. p-values: {', '.join(tests) or '–'}; intervals: "
            f"{rows[0].estimate.method}. P(best): the share of bootstrap resamples in which it ranks first.")
    if one_seed:
        text += (f" With one seed ({', '.join(one_seed)}) the interval covers only the test sample, not the "
                 "training noise: another seed trains another model.")
    return text


# ---- label budgets ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LearningCurve:
    """One head's error against its labelled frames: the budgets' intervals, the fitted power law with its band, and
    the frames needed for each target."""

    label: str
    frames: np.ndarray  # (J,) training frames of each budget
    points: list[Interval]  # (J,) the error at each budget
    law: PowerLaw
    grid: np.ndarray  # (G,) frames at which the band is drawn
    band: tuple[np.ndarray, np.ndarray]  # (G,), (G,)
    needed: list[FramesNeeded]


def learning_curve(label: str, budgets: Sequence[ConfigRuns], key: str, targets: Sequence[float],
                   bootstrap: Bootstrap) -> LearningCurve:
    """The curve of one head over its budgets (each a ``ConfigRuns`` with ``frames``; seeds in the same order)."""
    budgets = sorted((b for b in budgets if b.has(key) and b.frames), key=lambda b: b.frames or 0)
    check_same_frames([run for b in budgets for run in b.runs])
    frames = np.array([float(b.frames or 0) for b in budgets])
    points = [bootstrap.interval(b.statistics(key)) for b in budgets]
    draws = bootstrap.draws([b.statistics(key) for b in budgets])  # (J, B) images shared, seeds tied
    errors = [p.estimate for p in points]
    law = fit_power_law(frames, errors)
    grid = np.geomspace(frames.min(), frames.max() * 2, 60) if len(frames) else np.zeros(0)
    band = curve_band(frames, draws, grid, bootstrap.level) if len(frames) > 1 else (grid * np.nan, grid * np.nan)
    needed = [frames_needed(frames, errors, draws, t, bootstrap.level) for t in targets]
    return LearningCurve(label, frames, points, law, grid, band, needed)


def default_targets(curves: Sequence[LearningCurve]) -> list[float]:
    """Targets when none are given: 1.25× and 0.9× the best error reached at the largest budget, rounded to two
    significant digits (one inside the data, one just beyond it)."""
    best = [c.points[-1].estimate for c in curves if c.points and math.isfinite(c.points[-1].estimate)]
    if not best:
        return []
    e = min(best)
    return [float(f"{1.25 * e:.2g}"), float(f"{0.9 * e:.2g}")]


def budget_markdown(curves: Sequence[LearningCurve], header: str, digits: int = 2) -> str:
    """Per head: the error at each budget [CI], the power law, the frames needed per target."""
    if not curves:
        return ""
    frames = sorted({int(f) for c in curves for f in c.frames})
    lines = [f"| Head | {' | '.join(f'{n} frames' for n in frames)} | power law | R² |",
             "|:---|" + "---:|" * len(frames) + ":---|---:|"]
    for c in curves:
        cells = {int(f): p.format(digits) for f, p in zip(c.frames, c.points)}
        law = f"{c.law.scale:.3g} · n^−{c.law.exponent:.2f}" if math.isfinite(c.law.scale) else "–"
        r2 = f"{c.law.r2:.2f}" if math.isfinite(c.law.r2) else "–"
        lines.append(f"| {c.label} | " + " | ".join(cells.get(n, "–") for n in frames) + f" | {law} | {r2} |")
    targets = sorted({n.target for c in curves for n in c.needed}, reverse=True)
    if targets:
        lines += ["", f"Labelled frames needed for a {header} of … (95 % CI):", "",
                  "| Head | " + " | ".join(f"{t:g}" for t in targets) + " |", "|:---|" + "---:|" * len(targets)]
        for c in curves:
            by = {n.target: n.format() for n in c.needed}
            lines.append(f"| {c.label} | " + " | ".join(by.get(t, "–") for t in targets) + " |")
    return "\n".join(lines)


def plot_learning_curves(curves: Sequence[LearningCurve], header: str, colors: Mapping[str, Any], path: Path,
                         targets: Sequence[float] = ()) -> Path | None:
    """Error vs labelled frames per head (log-log): the budgets' intervals, the fitted power law and its 95 % band."""
    from matplotlib.ticker import FormatStrFormatter, FuncFormatter

    from kpreg.training.drawing import new_figure

    if not curves:
        return None
    fig = new_figure(7.5, 5.2)
    ax = fig.subplots()
    for c in curves:
        color = colors.get(c.label)
        est = np.array([p.estimate for p in c.points])
        yerr = np.array([[p.estimate - p.low for p in c.points], [p.high - p.estimate for p in c.points]])
        ax.errorbar(c.frames, est, yerr=np.where(np.isfinite(yerr), yerr, 0.0), marker="o", linestyle="", capsize=4,
                    color=color, label=c.label)
        if math.isfinite(c.law.scale):
            ax.plot(c.grid, c.law(c.grid), color=color, linewidth=1.5)
            ax.fill_between(c.grid, c.band[0], c.band[1], color=color, alpha=0.15)
    for t in targets:
        ax.axhline(t, color="grey", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    # plain numbers (2, 3, 50), not powers of ten; frames over decades label only 1-2-5 minors (others collide)
    ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda x, _: f"{x:g}" if f"{x:g}"[0] in "25" else ""))
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    ax.set_xlabel("labelled training frames")
    ax.set_ylabel(header)
    ax.set_title("Error vs labelled frames (95 % CI; line: power law, band: its 95 % CI)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper right")
    fig.savefig(path, dpi=120, bbox_inches="tight", facecolor="white")
    return path
