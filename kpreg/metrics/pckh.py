"""MPII PCKh (head-normalised Percentage of Correct Keypoints), official protocol.

Coordinates are kpreg's 0-based pixel centres in original-image pixels; PCKh only uses
differences (errors and head-box diagonals), so the convention matters only at file I/O
(see :mod:`kpreg.formats.mpii`).

Protocol (see ``docs/mpii_metric.md`` for sources):

* head size = 0.6 x diagonal of the annotated head box;
* a visible joint is correct when ``error / head_size <= threshold`` (``<=`` as in the
  official MPII toolkit ``computePCK.m`` and HRNet; bearpaw's script uses ``<``);
* missing joints are ignored (neither numerator nor denominator);
* group columns (Shoulder, ...) are the unweighted mean of the left and right joint PCKh;
* ``Mean`` is the pooled (joint-count weighted) PCKh@0.5 over the 14 joints without pelvis
  and thorax: the official "Total" and HRNet's "Mean";
* ``Mean@0.1`` is the same at exactly 0.10 (HRNet's "Mean@0.1" is really at 0.11);
* ``AUC`` is the area under the ``Mean``-vs-threshold curve over [0, 0.5] (step 0.01,
  trapezoidal = the toolkit's integral of the linear interpolation), divided by 0.5 so
  that it is a percentage.

Thresholds are handled as exact rationals ``k / 10000`` so that 0.1 is the double
nearest to 0.1 (the same double as the literal ``0.1``), unlike ``np.arange(0, .5, .01)[10]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from kpreg.formats.mpii import MPII_GROUPS, MPII_JOINT_NAMES, MPII_MEAN_JOINTS, check_head_sizes
from kpreg.metrics.contract import Column, DatasetMetric

_DENOM = 10000  # thresholds are represented exactly as k / _DENOM
JOINT_PREFIX = "joint"  # per-joint PCKh keys: joint/<name>


def _threshold_numerators(thresholds: Sequence[float]) -> np.ndarray:
    """Integer numerators k with t == k / _DENOM; rejects thresholds not on that lattice."""
    t = np.asarray(thresholds, dtype=np.float64)  # (T,)
    k = np.rint(t * _DENOM)
    if np.any(np.abs(t * _DENOM - k) > 1e-6) or np.any(k < 0):
        raise ValueError(f"thresholds must be non-negative multiples of 1/{_DENOM}, got {list(thresholds)}")
    return k.astype(np.int64)


def exact_thresholds(thresholds: Sequence[float]) -> np.ndarray:
    """Thresholds as the doubles nearest to k/10000 (0.1 -> exactly the double 0.1)."""
    return _threshold_numerators(thresholds) / _DENOM  # (T,) float64


def auc_grid(auc_max: float = 0.5, auc_step: float = 0.01) -> np.ndarray:
    """0, step, ..., auc_max built from integers, e.g. 0..0.5 in 51 points (the toolkit's 0:0.01:0.5)."""
    k_max, k_step = _threshold_numerators([auc_max, auc_step])
    if k_step <= 0 or k_max % k_step != 0:
        raise ValueError(f"auc_max={auc_max} must be a positive multiple of auc_step={auc_step}")
    return np.arange(0, k_max + 1, k_step, dtype=np.int64) / _DENOM  # (A,) float64


def pckh_counts(
    pred: np.ndarray,
    gt: np.ndarray,
    visible: np.ndarray,
    head_size: np.ndarray,
    thresholds: Sequence[float],
) -> tuple[np.ndarray, np.ndarray, float, int]:
    """Sufficient statistics of PCKh: (correct (T, K), total (K,), error_sum_px, error_count).

    ``correct[t, k]`` counts visible joints k with error / head_size <= thresholds[t]. Non-finite
    predictions count as wrong (the toolkit replaces NaN predictions by inf) and are left out of
    the pixel-error sum. This is the one PCKh core: the streaming metric (``PCKh``) and the file scorer
    (``pckh_results``, ``evaluate.py score``) both count here.
    """
    pred = np.asarray(pred, dtype=np.float64)  # (N, K, 2) x,y pixels
    gt = np.asarray(gt, dtype=np.float64)  # (N, K, 2) x,y pixels
    vis = np.asarray(visible, dtype=bool)  # (N, K)
    hs = np.asarray(head_size, dtype=np.float64)  # (N,)
    if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[2] != 2:
        raise ValueError(f"pred and gt must both be (N, K, 2), got {pred.shape} and {gt.shape}")
    if vis.shape != pred.shape[:2] or hs.shape != pred.shape[:1]:
        raise ValueError(f"visible must be (N, K) and head_size (N,), got {vis.shape} and {hs.shape}")
    check_head_sizes(hs)
    thr = exact_thresholds(thresholds)  # (T,)
    err = np.linalg.norm(pred - gt, axis=-1)  # (N, K) px
    ratio = err / hs[:, None]  # (N, K) same division as the toolkit: dist ./ refDist
    hit = (ratio[None] <= thr[:, None, None]) & vis[None]  # (T, N, K)
    correct = hit.sum(axis=1, dtype=np.int64)  # (T, K)
    total = vis.sum(axis=0, dtype=np.int64)  # (K,)
    ok = vis & np.isfinite(err)  # (N, K)
    return correct, total, float(err[ok].sum()), int(ok.sum())


def summarize_pckh(
    correct: np.ndarray,
    total: np.ndarray,
    thresholds: Sequence[float],
    joint_names: Sequence[str] = MPII_JOINT_NAMES,
    main_threshold: float = 0.5,
    low_threshold: float = 0.1,
    auc_max: float = 0.5,
    auc_step: float = 0.01,
    error_sum: float | None = None,
    error_count: int | None = None,
    groups: Mapping[str, Sequence[int]] | None = None,
    mean_joints: Sequence[int] | None = None,
) -> dict[str, float]:
    """Turn counts into the result dict (percent). ``thresholds`` must contain main/low thresholds and
    the AUC grid. Joints never visible give NaN per-joint values and are absent from the pooled means.

    ``groups`` (column → joints) and ``mean_joints`` (the joints of ``Mean``) default to MPII's when the
    joints are MPII's, else no groups and every joint."""
    correct = np.asarray(correct, dtype=np.int64)  # (T, K)
    total = np.asarray(total, dtype=np.int64)  # (K,)
    k_thr = _threshold_numerators(thresholds).tolist()
    groups, mean_idx = _protocol(joint_names, groups, mean_joints)

    def row(t: float) -> np.ndarray:
        k = int(_threshold_numerators([t])[0])
        if k not in k_thr:
            raise ValueError(f"threshold {t} is not in the accumulated grid")
        return correct[k_thr.index(k)]  # (K,)

    with np.errstate(invalid="ignore", divide="ignore"):
        per_joint = 100.0 * row(main_threshold) / total  # (K,) NaN where never visible
    mean_total = total[mean_idx].sum()

    def pooled(t: float) -> float:
        # Official "Total": all correct / all visible over the mean joints (count weighted).
        return float(100.0 * row(t)[mean_idx].sum() / mean_total) if mean_total else float("nan")

    out: dict[str, float] = {}
    for group, idx in groups.items():
        # genTablePCK.m / HRNet: unweighted mean of the left and right per-joint PCKh.
        out[group] = float(np.mean(per_joint[list(idx)]))
    out["Mean"] = pooled(main_threshold)
    out["Mean@0.1"] = pooled(low_threshold)
    grid = auc_grid(auc_max, auc_step)  # (A,)
    curve = np.array([pooled(t) for t in grid])  # (A,) percent; A is ~51, not a loop over data
    # Trapezoid = the toolkit's quadgk over interp1 (piecewise linear); x rescaled to [0, 1].
    out["AUC"] = float(np.sum((curve[1:] + curve[:-1]) / 2 * np.diff(grid)) / auc_max)
    if error_sum is not None and error_count is not None:
        out["MeanError"] = float(error_sum / error_count) if error_count else float("nan")
    for name, value in zip(joint_names, per_joint):
        out[f"{JOINT_PREFIX}/{name}"] = float(value)
    return out


def _protocol(
    joint_names: Sequence[str], groups: Mapping[str, Sequence[int]] | None, mean_joints: Sequence[int] | None
) -> tuple[dict[str, tuple[int, ...]], list[int]]:
    """(groups, mean joint indices): as given, else MPII's for MPII's joints, else none and all joints."""
    is_mpii = tuple(joint_names) == MPII_JOINT_NAMES
    if groups is None:
        groups = MPII_GROUPS if is_mpii else {}
    if mean_joints is None:
        mean_joints = MPII_MEAN_JOINTS if is_mpii else range(len(joint_names))
    return {g: tuple(int(i) for i in idx) for g, idx in groups.items()}, [int(i) for i in mean_joints]


def metric_thresholds(
    thresholds: Sequence[float] = (0.5, 0.1), auc_max: float = 0.5, auc_step: float = 0.01
) -> np.ndarray:
    """Sorted union of the reported thresholds and the AUC grid, exact (k / 10000)."""
    ks = np.union1d(_threshold_numerators(thresholds), _threshold_numerators(auc_grid(auc_max, auc_step)))
    return ks / _DENOM  # (T,)


def pckh_results(
    pred: np.ndarray,
    gt: np.ndarray,
    visible: np.ndarray,
    head_size: np.ndarray,
    thresholds: Sequence[float] = (0.5, 0.1),
    joint_names: Sequence[str] = MPII_JOINT_NAMES,
    auc_max: float = 0.5,
    auc_step: float = 0.01,
) -> dict[str, float]:
    """Full PCKh result (percent) for arrays (N, K, 2) / (N, K) / (N,); see :func:`summarize_pckh`.

    ``thresholds[0]`` is reported as the main threshold (``Mean``, per-joint values) and
    ``thresholds[1]`` as ``Mean@0.1``.
    """
    if len(joint_names) != np.shape(pred)[1]:
        raise ValueError(f"{len(joint_names)} joint names for {np.shape(pred)[1]} joints")
    grid = metric_thresholds(thresholds, auc_max, auc_step)
    correct, total, err_sum, err_count = pckh_counts(pred, gt, visible, head_size, grid)
    return summarize_pckh(
        correct,
        total,
        grid,
        joint_names,
        main_threshold=thresholds[0],
        low_threshold=thresholds[1],
        auc_max=auc_max,
        auc_step=auc_step,
        error_sum=err_sum,
        error_count=err_count,
    )


SECTION = "PCKh (head-normalised)"


def pckh_columns(groups: Mapping[str, Sequence[int]], thresholds: Sequence[float] = (0.5, 0.1)) -> list[Column]:
    """The summary columns of PCKh: the groups, then ``Mean`` (PCKh at the main threshold), ``Mean@0.1``, ``AUC``."""
    main, low = thresholds
    return [Column(g, g, True, section=SECTION, breakdown=True) for g in groups] + [
        Column("Mean", f"PCKh@{main:g}", True, section=SECTION, headline=True),
        Column("Mean@0.1", f"PCKh@{low:g}", True, section=SECTION, headline=True),
        Column("AUC", "AUC", True, section=SECTION, headline=True),
    ]


def pckh_keypoint_columns(thresholds: Sequence[float] = (0.5, 0.1)) -> list[Column]:
    """The per-joint column: PCKh at the main threshold (``joint/<name>``)."""
    return [Column(JOINT_PREFIX, f"PCKh@{thresholds[0]:g}", True, section=SECTION)]


class PCKh(DatasetMetric):
    """Streaming PCKh with DDP-exact integer states, fed from the sample contract's ``meta``: ground truth
    ``keypoints_orig`` (B, K, 2), ``visible_orig`` (B, K) and the head size ``norm_length`` (B,).

    State: ``correct`` (T, K) counts over the fixed threshold grid (reported thresholds plus the AUC grid) and
    ``total`` (K,) visible counts, summed across processes, so the distributed result equals the single-process
    one exactly. (The pixel error is ``PixelMetrics``' ``MeanError``, reported on every dataset.)

    Args:
        joint_names: the keypoint names (``joint/<name>`` keys).
        groups: table columns (name → joints, unweighted mean of their PCKh); default MPII's for MPII joints.
        mean_joints: the joints pooled into ``Mean``; default MPII's 14 (no pelvis, thorax) for MPII joints.
        thresholds: (main, low), reported as ``Mean`` and ``Mean@0.1``.
    """

    section = SECTION
    family = "pckh"
    default_primary = "Mean"

    def __init__(
        self,
        joint_names: Sequence[str] = MPII_JOINT_NAMES,
        groups: Mapping[str, Sequence[int]] | None = None,
        mean_joints: Sequence[int] | None = None,
        thresholds: Sequence[float] = (0.5, 0.1),
        auc_max: float = 0.5,
        auc_step: float = 0.01,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if len(thresholds) != 2:
            raise ValueError("thresholds must be (main, low), e.g. (0.5, 0.1)")
        self.joint_names = tuple(joint_names)
        self.groups, self.mean_joints = _protocol(self.joint_names, groups, mean_joints)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.auc_max = float(auc_max)
        self.auc_step = float(auc_step)
        grid = metric_thresholds(self.thresholds, self.auc_max, self.auc_step)  # (T,)
        self._grid_np = grid
        k = len(self.joint_names)
        self.add_state("correct", torch.zeros(len(grid), k, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros(k, dtype=torch.long), dist_reduce_fx="sum")

    @property
    def columns(self) -> list[Column]:
        return pckh_columns(self.groups, self.thresholds)

    @classmethod
    def declared_columns(cls, keypoint_names: Sequence[str] = ()) -> list[Column]:
        return pckh_columns(_protocol(keypoint_names, None, None)[0])

    @property
    def keypoint_columns(self) -> list[Column]:
        return pckh_keypoint_columns(self.thresholds)

    @classmethod
    def declared_keypoint_columns(cls) -> list[Column]:
        return pckh_keypoint_columns()

    @classmethod
    def higher_is_better(cls, key: str) -> bool | None:
        if key in ("Mean", "Mean@0.1", "AUC") or key.startswith(f"{JOINT_PREFIX}/") or key in MPII_GROUPS:
            return True
        return None

    def update(self, pred: torch.Tensor, scores: torch.Tensor, meta: dict[str, Any]) -> None:  # type: ignore[override]
        """pred (B, K, 2) x,y original pixels; ground truth and head sizes from ``meta``."""
        self.update_arrays(pred, meta["keypoints_orig"], meta["visible_orig"], meta["norm_length"])

    def update_arrays(
        self, pred: torch.Tensor, gt: torch.Tensor, visible: torch.Tensor, head_size: torch.Tensor
    ) -> None:
        """The same with explicit tensors: pred, gt (B, K, 2), visible (B, K), head_size (B,)."""
        pred_np = pred.detach().to("cpu", torch.float64).numpy()  # (B, K, 2) x,y original pixels
        gt_np = gt.detach().to("cpu", torch.float64).numpy()  # (B, K, 2)
        vis_np = visible.detach().to("cpu").bool().numpy()  # (B, K)
        hs_np = head_size.detach().to("cpu", torch.float64).numpy()  # (B,)
        b, k = vis_np.shape
        if pred_np.shape != (b, k, 2) or gt_np.shape != (b, k, 2) or hs_np.shape != (b,) or k != len(self.joint_names):
            raise ValueError(
                f"expected pred/gt (B, {len(self.joint_names)}, 2), visible (B, K), head_size (B,); got "
                f"{pred_np.shape}, {gt_np.shape}, {vis_np.shape}, {hs_np.shape}"
            )
        correct, total, _, _ = pckh_counts(pred_np, gt_np, vis_np, hs_np, self._grid_np)
        device = self.correct.device
        self.correct += torch.from_numpy(correct).to(device)
        self.total += torch.from_numpy(total).to(device)

    def curve(self) -> dict[str, Any]:
        """The pooled ``Mean`` PCKh (percent) at every threshold of the AUC grid: the PCK-vs-threshold curve
        behind ``AUC``, as ``{"thresholds": [...], "pck": [...], "label": ...}`` (plain lists, for JSON and plots).

        Collective under DDP like ``compute()``: the integer states are summed over all processes first.
        """
        with self.sync_context(should_sync=self._to_sync, should_unsync=self._should_unsync):
            correct = self.correct.cpu().numpy()  # (T, K)
            total = self.total.cpu().numpy()  # (K,)
        denom = total[self.mean_joints].sum()
        grid = auc_grid(self.auc_max, self.auc_step)  # (A,)
        rows = np.searchsorted(self._grid_np, grid)  # the AUC grid is a subset of the sorted metric grid
        pck = (100.0 * correct[rows][:, self.mean_joints].sum(axis=1) / denom if denom
               else np.full(len(grid), np.nan))
        return {"thresholds": grid.tolist(), "pck": [float(v) for v in pck],
                "label": "threshold (fraction of the head size)", "metric": "PCKh (%)"}

    def compute(self) -> dict[str, float]:
        return summarize_pckh(
            self.correct.cpu().numpy(),
            self.total.cpu().numpy(),
            self._grid_np,
            self.joint_names,
            main_threshold=self.thresholds[0],
            low_threshold=self.thresholds[1],
            auc_max=self.auc_max,
            auc_step=self.auc_step,
            groups=self.groups,
            mean_joints=self.mean_joints,
        )
