"""The study report without wandb: ``python study.py report --out DIR`` → ``DIR/report.md`` and PNG plots.

Reads only the study's files: ``<run>/result.json`` (written by ``kpreg.compare.study``, with the metric contract
of its dataset: primary key, direction, headline columns), ``<run>/pck_curve.json`` and ``<run>/predictions.json``
(written by ``evaluate.py``), and the run's ``config.yaml`` to rebuild the dataset for the image grid.
Configurations (head × stride × extra grid values × label budget) are averaged over seeds. Where the runs wrote
their per-sample tables (``<run>/per_sample.npz``), every figure of the summary table carries its 95 % interval and the
report opens with the verdict table — each configuration against the best (or ``--baseline``): the difference with
its interval, a paired test with Holm's correction, P(best) — and, with label budgets, the learning curves
(``kpreg.compare.comparison``); otherwise the figures are mean ± std over seeds. No metric is named here: the table's
columns, the plots' axes and their directions come from the contract, so a study on any dataset gets a complete
report.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a window (also on machines without a display)

import numpy as np  # noqa: E402
import yaml  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from kpreg.classpath import import_class_path  # noqa: E402
from kpreg.formats.predictions import read_predictions  # noqa: E402
from kpreg.metrics.contract import Column  # noqa: E402
from kpreg.training.drawing import add_pose_legend, draw_pose, new_figure  # noqa: E402

PLOT_STYLE = {"font.size": 11, "axes.titlesize": 13, "axes.labelsize": 12, "legend.fontsize": 10,
              "axes.grid": True, "grid.alpha": 0.3}


@dataclass
class Config:
    """One configuration of the grid and its runs (one per seed)."""

    head: str
    stride: int | None
    extra: dict[str, Any]
    runs: list[dict[str, Any]] = field(default_factory=list)
    budget: str | None = None  # the label budget; None: every training frame

    @property
    def label(self) -> str:
        extra = ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in self.extra.items())
        return self.head + (f" ({extra})" if extra else "")

    @property
    def row_label(self) -> str:
        """``label`` with the label budget, for tables without a budget column: ``dsnt (5% labelled)``."""
        return self.label + (f" ({self.budget} labelled)" if self.budget is not None else "")

    @property
    def name(self) -> str:
        """The configuration in one cell: ``dsnt s4``, ``fc``, ``offset s4 (radius=3.0)``, with its budget."""
        extra = ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in self.extra.items())
        text = self.head + (f" s{self.stride}" if self.stride is not None else "") + (f" ({extra})" if extra else "")
        return text + (f" [{self.budget} labelled]" if self.budget is not None else "")

    def values(self, key: str) -> np.ndarray:
        """``key`` of every seed: a metric key of the contract or a top-level result field (``params``)."""
        out = [r["metrics"].get(key) if key in r["metrics"] else r.get(key) for r in self.runs]
        return np.array([np.nan if v is None else float(v) for v in out], dtype=np.float64)

    def confidence_values(self, key: str) -> np.ndarray:
        """``key`` of every seed's confidence scores (``result["confidence"]["scores"]``)."""
        out = [((r.get("confidence") or {}).get("scores") or {}).get(key) for r in self.runs]
        return np.array([np.nan if v is None else float(v) for v in out], dtype=np.float64)

    def mean_std(self, key: str, confidence: bool = False) -> tuple[float, float]:
        v = self.confidence_values(key) if confidence else self.values(key)
        v = v[np.isfinite(v)]
        if v.size == 0:
            return math.nan, math.nan
        return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


@dataclass
class Contract:
    """The metric contract of a study's dataset, as evaluate.py wrote it (``metric_info.json``)."""

    primary: str
    higher_is_better: bool
    columns: list[Column]
    keypoint_columns: list[Column] = field(default_factory=list)  # key: the prefix of <key>/<keypoint name>

    @classmethod
    def of(cls, configs: Sequence[Config]) -> Contract:
        for c in configs:
            for r in c.runs:
                info = r.get("metric_info")
                if info and info.get("columns"):
                    return cls.from_info(info)
        names = ", ".join(r["name"] for c in configs for r in c.runs)
        raise ValueError(f"no run's result.json carries its metric contract ('metric_info', written by evaluate.py as "
                         f"metric_info.json): evaluate the runs again ({names})")

    @classmethod
    def from_info(cls, info: dict[str, Any]) -> Contract:
        def columns(key: str) -> list[Column]:
            return [Column(**{k: v for k, v in c.items() if k in Column.__dataclass_fields__})
                    for c in info.get(key) or []]

        return cls(info["primary"], bool(info["higher_is_better"]), columns("columns"), columns("keypoint_columns"))

    def column(self, key: str) -> Column:
        return next((c for c in self.columns if c.key == key), Column(key, key, True))

    @property
    def headline(self) -> list[Column]:
        """The primary first, then the other headline columns of its section, then the other sections' (a pixel-error
        primary keeps its median error and PCK beside it, before OKS AP)."""
        section = self.column(self.primary).section
        cols = [c for c in self.columns if c.headline and c.key != self.primary]
        return [self.column(self.primary), *(c for c in cols if c.section == section),
                *(c for c in cols if c.section != section)]

    @property
    def groups(self) -> list[Column]:
        """The columns that break the primary down (PCKh's joint groups); none for other primaries, whose report
        shows a per-keypoint column instead (``per_keypoint``)."""
        section = self.column(self.primary).section
        return [c for c in self.columns if c.section == section and c.breakdown]

    @property
    def per_keypoint(self) -> Column | None:
        """The per-keypoint column that shows the primary per keypoint: the primary's own, else the first of its
        section, else the first declared."""
        section = self.column(self.primary).section
        return (next((c for c in self.keypoint_columns if c.key == self.primary), None)
                or next((c for c in self.keypoint_columns if c.section == section), None)
                or next(iter(self.keypoint_columns), None))

    @property
    def second(self) -> Column:
        """A second headline number of the primary's section (PCKh@0.1 beside PCKh@0.5; PCK@0.1 beside an error)."""
        primary = self.column(self.primary)
        same = [c for c in self.headline[1:] if c.section == primary.section and c.unit == primary.unit]
        return (same or self.headline[1:] or [primary])[0]


def load_configs(out: Path) -> list[Config]:
    """The study's finished runs grouped by configuration, in the study's run order."""
    order = {}
    definition = out / "study.json"
    if definition.is_file():
        order = {r["name"]: i for i, r in enumerate(json.loads(definition.read_text())["runs"])}
    results = [json.loads(p.read_text()) for p in sorted(out.glob("*/result.json"))]
    results.sort(key=lambda r: order.get(r["name"], len(order)))
    groups: dict[tuple, Config] = {}
    for r in results:
        key = (r["head"], r["stride"], json.dumps(r.get("extra", {}), sort_keys=True), r.get("budget"))
        groups.setdefault(key, Config(r["head"], r["stride"], r.get("extra", {}), budget=r.get("budget"))).runs.append(r)
    for config in groups.values():
        config.runs.sort(key=lambda r: r.get("seed") or 0)  # seed order: seeds are paired by position
    return list(groups.values())


def head_colors(configs: Sequence[Config]) -> dict[str, Any]:
    """One colour per head label, the same in every plot."""
    labels = list(dict.fromkeys(c.label for c in configs))
    cmap = matplotlib.colormaps["tab10"]
    return {label: cmap(i % 10) for i, label in enumerate(labels)}


def fmt(mean: float, std: float, digits: int = 2, n: int = 1) -> str:
    if not math.isfinite(mean):
        return "–"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if n > 1 else f"{mean:.{digits}f}"


def fmt_count(value: float) -> str:
    if not math.isfinite(value):
        return "–"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.2f} {unit}"
    return f"{value:.0f}"


# ---- tables --------------------------------------------------------------------------------------------
def summary_table(configs: Sequence[Config], contract: Contract | None = None,
                  intervals: dict[str, dict[str, Any]] | None = None) -> str:
    """Per configuration: the headline metrics (with their 95 % intervals where ``intervals`` — configuration name
    → key → ``Interval`` — has them, else mean ± std over seeds), then the costs."""
    contract = contract or Contract.of(configs)
    intervals = intervals or {}
    metrics = contract.headline
    budgets = any(c.budget is not None for c in configs)
    header = ["Head", "Stride", *(["Budget"] if budgets else []),
              *(f"**{c.header}**" if c.key == contract.primary else c.header for c in metrics),
              "Params", "FLOPs", "Latency (ms, CPU)", "Peak RSS (MiB)", "Train time (s)", "Seeds"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---", "---:"] + ["---:"] * (len(header) - 2)) + "|"]
    for c in configs:
        n = len(c.runs)
        row = [c.label, str(c.stride) if c.stride is not None else "–"]
        if budgets:
            row.append(c.budget or "all")
        ci = intervals.get(c.name, {})
        row += [ci[m.key].format(m.digits) if m.key in ci else fmt(*c.mean_std(m.key), digits=m.digits, n=n)
                for m in metrics]
        row += [fmt_count(c.mean_std("params")[0]), fmt_count(c.mean_std("flops")[0])]
        row += [fmt(*c.mean_std("latency_ms"), digits=2, n=n), fmt(*c.mean_std("peak_rss_mb"), digits=0, n=n),
                fmt(*c.mean_std("train_wall_s"), digits=1, n=n), str(n)]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def group_table(configs: Sequence[Config], contract: Contract | None = None, limit: int = 20) -> tuple[str, str]:
    """(title, table): the primary's breakdown (PCKh per joint group), or, where the primary's section has none, its
    per-keypoint column (the first ``limit`` keypoints); mean over seeds."""
    contract = contract or Contract.of(configs)
    keys = [(c.key, c.label) for c in contract.groups]
    title = f"{contract.column(contract.primary).header} per group"
    column = contract.per_keypoint
    if not keys and column is not None:
        prefix = f"{column.key}/"
        names = [k.removeprefix(prefix) for k in configs[0].runs[0]["metrics"] if k.startswith(prefix)]
        keys = [(prefix + n, n) for n in names][:limit]
        title = f"{column.header} per keypoint"
    if not keys:
        return "", ""
    lines = ["| Model | Stride | " + " | ".join(label for _, label in keys) + " |", "|:---|---:|" + "---:|" * len(keys)]
    for c in configs:
        cells = [fmt(c.mean_std(k)[0], 0.0, digits=1) for k, _ in keys]
        lines.append(f"| {c.row_label} | {c.stride if c.stride is not None else '–'} | " + " | ".join(cells) + " |")
    return title, "\n".join(lines)


def confidence_columns(configs: Sequence[Config]) -> list[Column]:
    """The confidence scores' headline columns, as evaluate.py declared them (``confidence.json``)."""
    for c in configs:
        for r in c.runs:
            columns = (r.get("confidence") or {}).get("columns")
            if columns:
                return [Column(**{k: v for k, v in col.items() if k in Column.__dataclass_fields__})
                        for col in columns if col.get("headline")]
    return []


def confidence_table(configs: Sequence[Config]) -> str:
    """Per configuration: the calibration method chosen (of the first seed) and the confidence scores before
    (raw) and after calibration, mean ± std over seeds; empty when no run reported them."""
    columns = confidence_columns(configs)
    if not columns:
        return ""
    header = ["Head", "Stride", "Calibration", *(c.header for c in columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---", "---:", ":---"] + ["---:"] * len(columns)) + "|"]
    for c in configs:
        n = len(c.runs)
        method = (c.runs[0].get("confidence") or {}).get("method") or "none (raw)"
        row = [c.row_label, str(c.stride) if c.stride is not None else "–", str(method)]
        row += [fmt(*c.mean_std(col.key, confidence=True), digits=col.digits, n=n) for col in columns]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def plot_reliability(configs: Sequence[Config], out: Path, path: Path, calibrated: bool) -> Path | None:
    """One reliability panel per configuration (its first seed), from ``<run>/confidence_points.npz``: the
    calibrated (out-of-fold) confidence, or the raw score clamped to [0, 1]."""
    from kpreg.metrics.calibration import reliability_diagram

    panels = {}
    for c in configs:
        points = out / c.runs[0]["name"] / "confidence_points.npz"
        if not points.is_file():
            continue
        with np.load(points) as data:
            key = "calibrated" if calibrated and "calibrated" in data else "raw"
            if calibrated and key != "calibrated":
                continue
            stride = f"stride {c.stride}" if c.stride is not None else "no stride"
            panels[f"{c.label}, {stride}"] = (np.clip(data[key], 0.0, 1.0), data["correct"])
    if not panels:
        return None
    title = "after calibration (out of fold)" if calibrated else "raw head scores, clamped to [0, 1]"
    return reliability_diagram(panels, path, title=f"Reliability: {title}", columns=4, dpi=80)


# ---- plots ---------------------------------------------------------------------------------------------
def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=120, bbox_inches="tight", facecolor="white")
    return path


def plot_accuracy_vs_stride(configs: Sequence[Config], colors: dict[str, Any], path: Path,
                            contract: Contract | None = None) -> Path:
    """The primary metric and a second headline number against the output stride, one line per head (the DSNT
    paper's resolution figure); heads without a stride are dashed horizontal lines."""
    contract = contract or Contract.of(configs)
    with matplotlib.rc_context(PLOT_STYLE):
        fig = new_figure(12, 4.8)
        axes = fig.subplots(1, 2)
        strides = sorted({c.stride for c in configs if c.stride is not None})
        pairs = [(axes[0], contract.column(contract.primary)), (axes[1], contract.second)]
        for ax, column in pairs:
            key, name = column.key, column.header
            by_label: dict[str, list[Config]] = defaultdict(list)
            for c in configs:
                by_label[c.label].append(c)
            for label, cs in by_label.items():
                with_stride = sorted((c for c in cs if c.stride is not None), key=lambda c: c.stride)
                if with_stride:
                    stats = [c.mean_std(key) for c in with_stride]
                    ax.errorbar([c.stride for c in with_stride], [m for m, _ in stats], yerr=[s for _, s in stats],
                                marker="o", capsize=4, linewidth=2, color=colors[label], label=label)
                for c in cs:
                    if c.stride is None:
                        m, s = c.mean_std(key)
                        ax.axhline(m, linestyle="--", linewidth=2, color=colors[label], label=f"{label} (no stride)")
                        if s > 0:
                            ax.axhspan(m - s, m + s, color=colors[label], alpha=0.12)
            if strides:
                ax.set_xscale("log", base=2)
                ax.set_xticks(strides, [str(s) for s in strides])
                ax.minorticks_off()
            ax.set_xlabel("output stride (input pixels per heatmap cell)")
            ax.set_ylabel(name)
            ax.set_title(f"{name} vs output stride" + ("" if column.higher_is_better else " (lower is better)"))
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 6), bbox_to_anchor=(0.5, 1.08),
                   frameon=False)
        fig.suptitle("Accuracy vs output resolution (mean ± std over seeds)", y=1.14, fontsize=14)
        return _save(fig, path)


def plot_pck_curves(configs: Sequence[Config], colors: dict[str, Any], out: Path, path: Path) -> Path | None:
    """PCK against the normalised threshold per head (PCKh on head-normalised data, box-relative PCK otherwise),
    at each head's finest stride, mean over seeds."""
    finest: dict[str, Config] = {}
    for c in configs:
        best = finest.get(c.label)
        if best is None or (c.stride is not None and (best.stride is None or c.stride < best.stride)):
            finest[c.label] = c
    with matplotlib.rc_context(PLOT_STYLE):
        fig = new_figure(7.5, 5.2)
        ax = fig.subplots()
        drawn = 0
        for label, c in finest.items():
            curves = [json.loads(p.read_text()) for r in c.runs if (p := out / r["name"] / "pck_curve.json").is_file()]
            if not curves:
                continue
            t = np.array(curves[0]["thresholds"])
            pck = np.array([cv["pck"] for cv in curves])  # (seeds, T)
            stride = f"stride {c.stride}" if c.stride is not None else "no stride"
            ax.plot(t, pck.mean(0), linewidth=2, color=colors[label], label=f"{label} ({stride})")
            if len(curves) > 1:
                ax.fill_between(t, pck.min(0), pck.max(0), color=colors[label], alpha=0.15)
            drawn += 1
        if not drawn:
            return None
        ax.set_xlabel(curves[0]["label"])
        ax.set_ylabel(curves[0]["metric"])
        ax.set_xlim(0, float(t[-1]))
        ax.set_ylim(0, 100)
        ax.set_title(f"{curves[0]['metric'].split(' ')[0]} vs threshold (finest stride per head)")
        ax.legend(loc="lower right")
        return _save(fig, path)


STRIDE_MARKERS = {4: "o", 8: "s", 16: "^", 32: "D", 64: "v"}  # output stride → marker; no stride: "X"


def stride_marker(stride: int | None) -> str:
    return "X" if stride is None else STRIDE_MARKERS.get(stride, "P")


def plot_accuracy_vs_cost(configs: Sequence[Config], colors: dict[str, Any], path: Path,
                          contract: Contract | None = None) -> Path:
    """The primary metric against training wall time and against CPU latency: every seed a point, colour = head,
    marker = output stride (markers rather than text labels: with 50 runs labels overlap)."""
    from matplotlib.lines import Line2D

    contract = contract or Contract.of(configs)
    primary = contract.column(contract.primary)
    with matplotlib.rc_context(PLOT_STYLE):
        fig = new_figure(12, 4.8)
        axes = fig.subplots(1, 2)
        for ax, key, xlabel, title in ((axes[0], "train_wall_s", "training wall time (s)", "Accuracy vs training time"),
                                       (axes[1], "latency_ms", "forward latency, batch 1, CPU (ms)",
                                        "Accuracy vs inference latency")):
            for c in configs:
                ax.scatter(c.values(key), c.values(primary.key), s=55, color=colors[c.label],
                           marker=stride_marker(c.stride), edgecolor="black", linewidth=0.5, zorder=3)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(primary.header)
            ax.set_title(title)
        heads = list(dict.fromkeys(c.label for c in configs))
        strides = sorted({c.stride for c in configs}, key=lambda s: (s is None, s or 0))
        head_handles = [Line2D([], [], linestyle="", marker="o", markersize=8, color=colors[h],
                               markeredgecolor="black", label=h) for h in heads]
        stride_handles = [Line2D([], [], linestyle="", marker=stride_marker(s), markersize=8, color="#bbbbbb",
                                 markeredgecolor="black", label=f"stride {s}" if s is not None else "no stride")
                          for s in strides]
        # Two legend rows under the axes: colours (heads), then markers (strides).
        fig.legend(handles=head_handles, loc="lower center", ncol=len(head_handles), bbox_to_anchor=(0.5, -0.08),
                   frameon=False)
        fig.legend(handles=stride_handles, loc="lower center", ncol=len(stride_handles), bbox_to_anchor=(0.5, -0.15),
                   frameon=False)
        fig.suptitle("Accuracy vs cost (one point per run; colour = head, marker = output stride)", y=1.02,
                     fontsize=14)
        return _save(fig, path)


def load_eval_dataset(run_dir: Path) -> Any:
    """The evaluated split of a run, rebuilt from its ``config.yaml`` (``data.class_path`` + ``init_args``)."""
    data = yaml.safe_load((run_dir / "config.yaml").read_text())["data"]
    datamodule = import_class_path(data["class_path"])(**(data.get("init_args") or {}))
    datamodule.setup("test")
    return datamodule, datamodule.datasets["test"]


def plot_prediction_grid(configs: Sequence[Config], out: Path, path: Path, num_images: int = 6) -> Path | None:
    """Rows: each head at stride 4 (else its finest stride; first seed); columns: the first validation images,
    prediction and ground truth with the skeleton."""
    from kpreg.data.sample import tensor_to_image

    chosen: dict[str, Config] = {}
    for c in configs:
        best = chosen.get(c.label)
        rank = (c.stride != 4, c.stride if c.stride is not None else 0)
        if best is None or rank < (best.stride != 4, best.stride if best.stride is not None else 0):
            chosen[c.label] = c
    rows = [(label, c, out / c.runs[0]["name"]) for label, c in chosen.items()
            if (out / c.runs[0]["name"] / "predictions.json").is_file()]
    if not rows:
        return None
    datamodule, dataset = load_eval_dataset(rows[0][2])
    skeleton = datamodule.describe()["skeleton"]
    n = min(num_images, len(dataset))
    samples = [dataset[i] for i in range(n)]
    fig = new_figure(2.1 * n + 1.2, 2.2 * len(rows) + 0.8)
    axes = fig.subplots(len(rows), n, squeeze=False)
    for r, (label, c, run_dir) in enumerate(rows):
        written = read_predictions(run_dir / "predictions.json")
        predictions = dict(zip(written.index.tolist(), written.keypoints))  # sample index → (K, 2) original px
        for i, sample in enumerate(samples):
            meta = sample["meta"]
            index = int(meta["index"])
            # predictions are in original-image pixels: back to the input crop with the inverse of affine_inv
            to_input = np.linalg.inv(np.vstack([meta["affine_inv"].numpy(), [0.0, 0.0, 1.0]]))[:2]  # (2, 3)
            pred = predictions.get(index)
            if pred is not None:
                pred = pred @ to_input[:, :2].T + to_input[:, 2]  # (K, 2) x,y input pixels
            gt = sample["keypoints"].numpy().astype(np.float64)  # (K, 2) x,y input pixels
            gt[sample["visibility"].numpy() <= 0] = np.nan
            ax = axes[r, i]
            draw_pose(ax, tensor_to_image(sample["image"]), skeleton, gt=gt, pred=pred,
                      title=f"val #{index}" if r == 0 else None)
            if i == 0:
                stride = f"stride {c.stride}" if c.stride is not None else "no stride"
                ax.set_ylabel(f"{label}\n{stride}", fontsize=11)
    fig.suptitle("The same validation images predicted by each head", fontsize=14)
    add_pose_legend(fig)
    fig.subplots_adjust(left=0.08, right=0.99, top=0.9, bottom=0.08, wspace=0.05, hspace=0.08)
    return _save(fig, path)


# ---- the report ----------------------------------------------------------------------------------------
@dataclass
class ReportOptions:
    """The comparisons' settings: ``baseline`` (a configuration name, e.g. ``heatmap s4``; None: the best),
    ``targets`` (errors for the frames-needed answer; None: ``default_targets``), bootstrap ``resamples``, and whether
    the verdict table goes to a wandb summary run when the runs logged to wandb."""

    baseline: str | None = None
    targets: list[float] | None = None
    resamples: int = 2000
    wandb: bool = True

    @classmethod
    def of(cls, args: argparse.Namespace) -> ReportOptions:
        return cls(getattr(args, "baseline", None), getattr(args, "target_error", None),
                   getattr(args, "resamples", 2000), not getattr(args, "no_wandb", False))


@dataclass
class Comparisons:
    """What the per-sample tables add to a report: markdown lines, the intervals (configuration name → key →
    ``Interval``), the verdict rows per budget, and the messages of comparisons that could not be made."""

    lines: list[str] = field(default_factory=list)
    intervals: dict[str, dict[str, Any]] = field(default_factory=dict)
    verdicts: dict[str | None, list[Any]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def error_column(contract: Contract) -> Column | None:
    """The error the learning curve is drawn for: the primary where it is a pixel error, else the first headline
    pixel error (the mean error of every dataset)."""
    primary = contract.column(contract.primary)
    if primary.unit == "px" and not primary.higher_is_better:
        return primary
    return next((c for c in contract.headline if c.unit == "px" and not c.higher_is_better), None)


def comparisons(out: Path, configs: Sequence[Config], contract: Contract, options: ReportOptions,
                colors: dict[str, Any]) -> Comparisons:
    """The verdict tables (one per label budget), every headline metric's interval, and the learning curves."""
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

    result = Comparisons()
    evaluated: dict[str, ConfigRuns] = {}
    for c in configs:
        paths = [out / r["name"] / "per_sample.npz" for r in c.runs]
        if all(p.is_file() for p in paths):
            frames = c.runs[0].get("train_frames")
            evaluated[c.name] = ConfigRuns(c.name, [load_run(r["name"], p) for r, p in zip(c.runs, paths)],
                                           c.head, c.stride, c.budget, frames, [r.get("seed") or 0 for r in c.runs])
    if not evaluated:
        return result
    boot = Bootstrap(n_resamples=options.resamples)
    keys = [c.key for c in contract.headline]
    result.intervals = intervals(list(evaluated.values()), keys, boot)
    primary = contract.column(contract.primary)
    budgets = list(dict.fromkeys(c.budget for c in configs))
    budgets.sort(key=lambda b: (b is not None, parse_share(b)))
    for budget in budgets:
        group = [evaluated[c.name] for c in configs if c.budget == budget and c.name in evaluated]
        if len(group) < 2:
            continue
        title = "Which configuration is best" + (f" with {budget} of the labelled frames" if budget else "")
        baseline = options.baseline if options.baseline in {g.label for g in group} else None
        try:
            rows = verdicts(group, contract.primary, contract.higher_is_better, baseline, bootstrap=boot)
        except PairingError as err:
            result.errors.append(str(err))
            result.lines += [f"## {title}", "", f"**Not compared:** {err}.", ""]
            continue
        result.verdicts[budget] = rows
        result.lines += [f"## {title}", "", verdict_markdown(rows, primary.header, primary.digits), "",
                         verdict_note(rows), ""]
    if options.baseline is not None and not any(options.baseline in {r.label for r in rows}
                                                for rows in result.verdicts.values()):
        result.errors.append(f"--baseline {options.baseline!r} is not a configuration of the study (e.g. "
                             f"{', '.join(list(evaluated)[:4])})")
    error = error_column(contract)
    curves_by_head: dict[str, list[ConfigRuns]] = defaultdict(list)
    for c in configs:
        if c.name in evaluated:
            curves_by_head[Config(c.head, c.stride, c.extra).name].append(evaluated[c.name])
    with_budgets = {k: v for k, v in curves_by_head.items() if len(v) > 1 and any(b.budget for b in v)}
    if error is not None and with_budgets:
        try:
            curves = [learning_curve(k, v, error.key, [], boot) for k, v in with_budgets.items()]
            targets = options.targets or default_targets(curves)
            curves = [learning_curve(k, v, error.key, targets, boot) for k, v in with_budgets.items()]
        except PairingError as err:
            result.errors.append(str(err))
            result.lines += ["## Label budgets", "", f"**Not compared:** {err}.", ""]
        else:
            plot = plot_learning_curves(curves, error.header, {k: colors.get(k.split(" s")[0].split(" (")[0])
                                                               for k in with_budgets},
                                        out / "learning_curve.png", targets)
            result.lines += ["## Label budgets: error vs labelled frames", "",
                             f"{error.header} [95 % CI] per labelled training frames (nested subsets per seed; every "
                             "budget trains the same number of steps). The power law is fitted on the seed means; "
                             "the frames needed come with the interval of the refitted curve over the joint "
                             "resamples.", "", budget_markdown(curves, error.header, error.digits), ""]
            if plot is not None:
                result.lines += [f"![learning curve]({plot.name})", ""]
    return result


def parse_share(budget: str | None) -> float:
    """Sort key of a budget: shares and counts as numbers (the full set, None, first)."""
    if budget is None:
        return -1.0
    try:
        return float(str(budget).rstrip("%"))
    except ValueError:
        return math.inf


def job_logs(out: Path, configs: Sequence[Config]) -> str:
    """Per run: its job's log (submitit's, for local and SLURM runs) and its train / evaluate logs."""
    lines = ["| Run | Job log | Train log | Evaluate log |", "|:---|:---|:---|:---|"]
    for c in configs:
        for r in c.runs:
            run_dir = out / r["name"]

            def rel(path: Any) -> str:
                if not path:
                    return "–"
                p = Path(path)
                return f"`{p.relative_to(out)}`" if p.is_relative_to(out) else f"`{p}`"

            lines.append(f"| {r['name']} | {rel(r.get('job_log'))} | {rel(run_dir / 'train.log')} | "
                         f"{rel(run_dir / 'evaluate.log')} |")
    return "\n".join(lines)


def write_report(out: Path | str, options: ReportOptions | None = None) -> Path:
    """Write ``<out>/report.md`` and its plots; returns the report's path. Comparisons that cannot be made (runs on
    other frames, an unknown baseline) are said in the report and raised after it is written, as a ``ValueError``."""
    out = Path(out)
    options = options or ReportOptions()
    configs = load_configs(out)
    name = out.name
    if (out / "study.json").is_file():
        name = json.loads((out / "study.json").read_text()).get("name", name)
    lines = [f"# Study: {name}", ""]
    if not configs:
        lines.append("No finished runs yet (no `*/result.json`).")
        (out / "report.md").write_text("\n".join(lines) + "\n")
        return out / "report.md"
    colors = head_colors(configs)
    contract = Contract.of(configs)
    primary = contract.column(contract.primary)
    n_runs = sum(len(c.runs) for c in configs)
    direction = "higher" if contract.higher_is_better else "lower"
    compared = comparisons(out, configs, contract, options, colors)
    spread = ("[…] is the 95 % interval: a bootstrap over the evaluated images and, with several seeds, over seeds "
              "(with one seed it covers the test sample only); ± is the standard deviation over seeds where a run has "
              "no per-sample table" if compared.intervals else "± is the standard deviation over seeds")
    lines += compared.lines
    lines += [f"## Summary ({n_runs} finished runs in {len(configs)} configurations)", "",
              f"{spread}. The primary metric, in bold, is {primary.header} ({direction} is better; it selected each "
              "run's checkpoint). Params, FLOPs and latency are for batch 1 on a CPU; peak RSS is the larger of the "
              "train and evaluate processes'.", "", summary_table(configs, contract, compared.intervals), ""]
    title, groups = group_table(configs, contract)
    if groups:
        lines += [f"## {title}", "", groups, ""]
    confidence = confidence_table(configs)
    if confidence:
        note = next((r["confidence"].get("note") for c in configs for r in c.runs
                     if (r.get("confidence") or {}).get("note")), "")
        lines += ["## Confidence: how well each head knows its own errors", "",
                  "Scores of the labelled keypoints' confidence as the probability that the keypoint is correct "
                  f"({note}). *Before*: the head's own score clamped to [0, 1]; *after*: the calibrated confidence, "
                  "scored out of fold wherever the map saw the data. ECE: 15 equal-width bins; AUROC: correct vs wrong by "
                  "confidence; *correct if >0.5*: the share of keypoints above 0.5 that are correct.", "",
                  confidence, ""]
    plots = [
        ("Accuracy vs output stride",
         plot_accuracy_vs_stride(configs, colors, out / "accuracy_vs_stride.png", contract)),
        ("PCK vs threshold", plot_pck_curves(configs, colors, out, out / "pck_vs_threshold.png")),
        ("Accuracy vs cost", plot_accuracy_vs_cost(configs, colors, out / "accuracy_vs_cost.png", contract)),
    ]
    try:
        grid = plot_prediction_grid(configs, out, out / "predictions_grid.png")
    except Exception as err:  # e.g. a dataset whose files are not on this machine: the rest of the report stands
        lines += [f"(prediction grid skipped: {err})", ""]
        grid = None
    plots.append(("Predictions on the same validation images", grid))
    plots.append(("Reliability after calibration",
                  plot_reliability(configs, out, out / "reliability_calibrated.png", calibrated=True)))
    plots.append(("Reliability of the raw scores",
                  plot_reliability(configs, out, out / "reliability_raw.png", calibrated=False)))
    for title, path in plots:
        if path is not None:
            lines += [f"## {title}", "", f"![{title}]({path.name})", ""]
    lines += ["## Runs and their logs", "", job_logs(out, configs), ""]
    (out / "report.md").write_text("\n".join(lines))
    if options.wandb and compared.verdicts:
        from kpreg.compare.wandb_summary import log_study_summary

        log_study_summary(out, name, configs, compared, contract)
    if compared.errors:
        raise ValueError(f"{out / 'report.md'} was written without some comparisons: " + "; ".join(compared.errors))
    return out / "report.md"
