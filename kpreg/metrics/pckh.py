"""MPII PCKh (head-normalised Percentage of Correct Keypoints), official protocol.

Coordinates are kpreg's 0-based pixel centres in original-image pixels; PCKh only uses
differences (errors and head-box diagonals), so the convention matters only at file I/O
(see :mod:`kpreg.data.mpii_files`).

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

from collections.abc import Sequence

import numpy as np
import torch
from torchmetrics import Metric

MPII_JOINT_NAMES: tuple[str, ...] = (
    "r_ankle",
    "r_knee",
    "r_hip",
    "l_hip",
    "l_knee",
    "l_ankle",
    "pelvis",
    "thorax",
    "upper_neck",
    "head_top",
    "r_wrist",
    "r_elbow",
    "r_shoulder",
    "l_shoulder",
    "l_elbow",
    "l_wrist",
)
MPII_FLIP_PAIRS: tuple[tuple[int, int], ...] = ((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13))
# Limbs for drawing: legs, pelvis-thorax-neck-head chain, arms (shoulders hang off the thorax).
MPII_SKELETON: tuple[tuple[int, int], ...] = (
    (0, 1),
    (1, 2),
    (2, 6),
    (6, 3),
    (3, 4),
    (4, 5),
    (6, 7),
    (7, 8),
    (8, 9),
    (10, 11),
    (11, 12),
    (12, 7),
    (7, 13),
    (13, 14),
    (14, 15),
)
# Table columns. "Head" is head_top only, as in HRNet / bearpaw and every published table of
# the 2958-person validation split; the MPII toolkit's genTablePCK.m averages neck and head top.
MPII_GROUPS: dict[str, tuple[int, ...]] = {
    "Head": (9,),
    "Shoulder": (12, 13),
    "Elbow": (11, 14),
    "Wrist": (10, 15),
    "Hip": (2, 3),
    "Knee": (1, 4),
    "Ankle": (0, 5),
}
# Pelvis and thorax are excluded from the official Total / Mean.
MPII_MEAN_JOINTS: tuple[int, ...] = tuple(i for i in range(16) if i not in (6, 7))

SC_BIAS = 0.6  # head size = 0.6 * head-box diagonal (util_get_head_size.m)
_DENOM = 10000  # thresholds are represented exactly as k / _DENOM


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


def head_sizes_from_boxes(headboxes: np.ndarray) -> np.ndarray:
    """0.6 x ||box[1] - box[0]|| for head boxes of shape (N, 2, 2) ([corner, xy]); returns (N,).

    Raises ValueError naming the first index whose head size is zero or not finite, because
    PCKh would divide by it.
    """
    boxes = np.asarray(headboxes, dtype=np.float64)  # (N, 2, 2) [corner, xy]
    if boxes.ndim != 3 or boxes.shape[1:] != (2, 2):
        raise ValueError(f"headboxes must have shape (N, 2, 2), got {boxes.shape}")
    sizes = SC_BIAS * np.linalg.norm(boxes[:, 1] - boxes[:, 0], axis=-1)  # (N,)
    check_head_sizes(sizes)
    return sizes


def check_head_sizes(head_size: np.ndarray) -> None:
    """Raise ValueError naming the indices of zero / negative / non-finite head sizes."""
    bad = np.flatnonzero(~(np.isfinite(head_size) & (head_size > 0)))
    if bad.size:
        raise ValueError(
            f"invalid head size (zero, negative or non-finite) at index {int(bad[0])}"
            f" (value {head_size[bad[0]]!r}; {bad.size} invalid in total: {bad[:10].tolist()})"
        )


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
    the pixel-error sum.
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
) -> dict[str, float]:
    """Turn counts into the result dict (percent). ``thresholds`` must contain main/low thresholds and
    the AUC grid. Joints never visible give NaN per-joint values and are absent from the pooled means."""
    correct = np.asarray(correct, dtype=np.int64)  # (T, K)
    total = np.asarray(total, dtype=np.int64)  # (K,)
    k_thr = _threshold_numerators(thresholds).tolist()

    def row(t: float) -> np.ndarray:
        k = int(_threshold_numerators([t])[0])
        if k not in k_thr:
            raise ValueError(f"threshold {t} is not in the accumulated grid")
        return correct[k_thr.index(k)]  # (K,)

    with np.errstate(invalid="ignore", divide="ignore"):
        per_joint = 100.0 * row(main_threshold) / total  # (K,) NaN where never visible
    is_mpii = tuple(joint_names) == MPII_JOINT_NAMES
    mean_idx = list(MPII_MEAN_JOINTS) if is_mpii else list(range(len(joint_names)))
    mean_total = total[mean_idx].sum()

    def pooled(t: float) -> float:
        # Official "Total": all correct / all visible over the mean joints (count weighted).
        return float(100.0 * row(t)[mean_idx].sum() / mean_total) if mean_total else float("nan")

    out: dict[str, float] = {}
    if is_mpii:
        for group, idx in MPII_GROUPS.items():
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
        out[f"joint/{name}"] = float(value)
    return out


def metric_thresholds(
    thresholds: Sequence[float] = (0.5, 0.1), auc_max: float = 0.5, auc_step: float = 0.01
) -> np.ndarray:
    """Sorted union of the reported thresholds and the AUC grid, exact (k / 10000)."""
    ks = np.union1d(_threshold_numerators(thresholds), _threshold_numerators(auc_grid(auc_max, auc_step)))
    return ks / _DENOM  # (T,)


def pckh_table(
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


class PCKh(Metric):
    """Streaming PCKh with DDP-exact integer states.

    State: ``correct`` (T, K) counts over the fixed threshold grid (reported thresholds plus the AUC
    grid), ``total`` (K,) visible counts, ``err_sum``/``err_count`` for the mean pixel error. All are
    summed across processes, so the distributed result equals the single-process one exactly.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        joint_names: Sequence[str] = MPII_JOINT_NAMES,
        thresholds: Sequence[float] = (0.5, 0.1),
        auc_max: float = 0.5,
        auc_step: float = 0.01,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if len(thresholds) != 2:
            raise ValueError("thresholds must be (main, low), e.g. (0.5, 0.1)")
        self.joint_names = tuple(joint_names)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.auc_max = float(auc_max)
        self.auc_step = float(auc_step)
        grid = metric_thresholds(self.thresholds, self.auc_max, self.auc_step)  # (T,)
        self._grid_np = grid
        k = len(self.joint_names)
        self.register_buffer("grid", torch.from_numpy(grid), persistent=False)  # (T,) float64
        self.add_state("correct", torch.zeros(len(grid), k, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros(k, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("err_sum", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("err_count", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(
        self, pred: torch.Tensor, gt: torch.Tensor, visible: torch.Tensor, head_size: torch.Tensor
    ) -> None:
        pred = pred.detach().to(torch.float64)  # (B, K, 2) x,y original-image pixels
        gt = gt.detach().to(device=pred.device, dtype=torch.float64)  # (B, K, 2)
        vis = visible.detach().to(device=pred.device, dtype=torch.bool)  # (B, K)
        hs = head_size.detach().to(device=pred.device, dtype=torch.float64)  # (B,)
        b, k = vis.shape
        if pred.shape != (b, k, 2) or gt.shape != (b, k, 2) or hs.shape != (b,) or k != len(self.joint_names):
            raise ValueError(
                f"expected pred/gt (B, {len(self.joint_names)}, 2), visible (B, K), head_size (B,); got "
                f"{tuple(pred.shape)}, {tuple(gt.shape)}, {tuple(vis.shape)}, {tuple(hs.shape)}"
            )
        bad = torch.nonzero(~(torch.isfinite(hs) & (hs > 0))).flatten()
        if bad.numel():
            i = int(bad[0])
            raise ValueError(
                f"invalid head size (zero, negative or non-finite) at batch index {i}: {float(hs[i])}"
            )
        err = torch.linalg.vector_norm(pred - gt, dim=-1)  # (B, K) px
        ratio = err / hs[:, None]  # (B, K)
        grid = self.grid.to(ratio.device)  # (T,) float64, exact k/10000
        hit = (ratio[None] <= grid[:, None, None]) & vis[None]  # (T, B, K)
        self.correct += hit.sum(dim=1)
        self.total += vis.sum(dim=0)
        ok = vis & torch.isfinite(err)  # (B, K)
        self.err_sum += err[ok].sum()
        self.err_count += ok.sum()

    def curve(self) -> dict[str, list[float]]:
        """The pooled ``Mean`` PCKh (percent) at every threshold of the AUC grid: the PCK-vs-threshold curve
        behind ``AUC``, as ``{"thresholds": [...], "pck": [...]}`` (plain lists, for JSON and plots).

        Collective under DDP like ``compute()``: the integer states are summed over all processes first.
        """
        with self.sync_context(should_sync=self._to_sync, should_unsync=self._should_unsync):
            correct = self.correct.cpu().numpy()  # (T, K)
            total = self.total.cpu().numpy()  # (K,)
        is_mpii = self.joint_names == MPII_JOINT_NAMES
        mean_idx = list(MPII_MEAN_JOINTS) if is_mpii else list(range(len(self.joint_names)))
        denom = total[mean_idx].sum()
        grid = auc_grid(self.auc_max, self.auc_step)  # (A,)
        rows = np.searchsorted(self._grid_np, grid)  # the AUC grid is a subset of the sorted metric grid
        pck = 100.0 * correct[rows][:, mean_idx].sum(axis=1) / denom if denom else np.full(len(grid), np.nan)
        return {"thresholds": grid.tolist(), "pck": [float(v) for v in pck]}

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
            error_sum=float(self.err_sum),
            error_count=int(self.err_count),
        )
