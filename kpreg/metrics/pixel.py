"""Pixel error and PCK for every dataset: the numbers people judge their own models by.

Over the labelled keypoints (``meta.visible_orig``), in original-image pixels:

* ``MeanError``, ``MedianError``, ``RMSE``: the Euclidean error's mean, median and root mean square, overall and
  per keypoint (``MeanError/<name>`` …);
* ``PCK@t`` for each box-relative threshold ``t`` (default 0.05, 0.1, 0.2; mmpose's ``PCKAccuracy`` with
  ``norm_item='bbox'``): the share (%) of keypoints whose error is at most ``t × box size``, where the box size is
  the larger side of the instance's box (``meta.box_size``; see ``kpreg.data.sample``). Samples whose box has
  size 0 cannot be normalised and are left out of the box-relative figures (as mmpose masks them); they still
  count in the pixel errors and the fixed-pixel PCK. Per keypoint: ``PCK@<t>/<name>`` at the middle threshold;
* ``PCK@<n>px`` for each fixed pixel threshold (default 2, 5, 10 px);
* ``PCK-AUC``: the area under the box-relative PCK curve for ``t`` in [0, ``auc_max``] (step ``auc_step``,
  trapezoidal), divided by ``auc_max`` so that it is a percentage — the box-relative analogue of MPII's AUC.

A keypoint whose prediction is not finite counts as wrong in every PCK and is left out of the error statistics.
States are concatenated across processes, so the distributed result equals the single-process one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torchmetrics.utilities import dim_zero_cat

from kpreg.metrics.contract import Column, DatasetMetric

SECTION = "pixels (original image)"
_ERROR_KEYS = ("MeanError", "MedianError", "RMSE")
DEFAULT_BOX_THRESHOLDS: tuple[float, ...] = (0.05, 0.1, 0.2)
DEFAULT_PIXEL_THRESHOLDS: tuple[float, ...] = (2.0, 5.0, 10.0)


def _threshold_key(t: float) -> str:
    return f"PCK@{t:g}"


def _pixel_key(t: float) -> str:
    return f"PCK@{t:g}px"


def _middle(thresholds: Sequence[float]) -> float | None:
    """The middle threshold: the headline one, and the one reported per keypoint."""
    return thresholds[len(thresholds) // 2] if thresholds else None


def pixel_columns(box_thresholds: Sequence[float], pixel_thresholds: Sequence[float]) -> list[Column]:
    """The summary columns: errors, PCK at each box-relative and each pixel threshold, PCK-AUC."""
    mid_box, mid_px = _middle(box_thresholds), _middle(pixel_thresholds)
    cols = [Column("MeanError", "mean", False, section=SECTION, unit="px", headline=True, long_label="mean error"),
            Column("MedianError", "median", False, section=SECTION, unit="px", headline=True,
                   long_label="median error"),
            Column("RMSE", "RMSE", False, section=SECTION, unit="px")]
    cols += [Column(_threshold_key(t), f"PCK@{t:g}", True, section=SECTION, headline=t == mid_box)
             for t in box_thresholds]
    cols += [Column(_pixel_key(t), f"PCK@{t:g}px", True, section=SECTION, headline=t == mid_px)
             for t in pixel_thresholds]
    cols.append(Column("PCK-AUC", "PCK-AUC", True, section=SECTION, headline=True))
    return cols


def pixel_keypoint_columns(box_thresholds: Sequence[float]) -> list[Column]:
    """The per-keypoint columns: mean, median and RMS error, and PCK at the middle box-relative threshold."""
    errors = [c for c in pixel_columns(box_thresholds, ()) if c.key in _ERROR_KEYS]
    middle = _middle(box_thresholds)
    pck = [Column(_threshold_key(middle), f"PCK@{middle:g}", True, section=SECTION)] if middle is not None else []
    return errors + pck


def pixel_results(
    errors: np.ndarray,
    labelled: np.ndarray,
    box_size: np.ndarray,
    keypoint_names: Sequence[str],
    box_thresholds: Sequence[float] = DEFAULT_BOX_THRESHOLDS,
    pixel_thresholds: Sequence[float] = DEFAULT_PIXEL_THRESHOLDS,
    auc_max: float = 0.2,
    auc_step: float = 0.01,
) -> dict[str, float]:
    """The pixel figures from errors (N, K) px (NaN or inf where the prediction is not finite), labelled (N, K)
    bool and box sizes (N,) px. Percentages for PCK, pixels for errors; NaN where nothing counts."""
    err = np.asarray(errors, dtype=np.float64)  # (N, K) px
    lab = np.asarray(labelled, dtype=bool)  # (N, K)
    box = np.asarray(box_size, dtype=np.float64).reshape(-1)  # (N,)
    if err.shape != lab.shape or err.ndim != 2 or box.shape != err.shape[:1] or err.shape[1] != len(keypoint_names):
        raise ValueError(f"expected errors and labelled (N, {len(keypoint_names)}), box_size (N,); got "
                         f"{err.shape}, {lab.shape}, {box.shape}")
    finite = np.isfinite(err)  # (N, K)
    counted = lab & finite  # (N, K) in the error statistics
    normalisable = lab & (np.isfinite(box) & (box > 0))[:, None]  # (N, K) in the box-relative PCK
    out: dict[str, float] = {}

    def stats(e: np.ndarray) -> tuple[float, float, float]:
        if e.size == 0:
            return math.nan, math.nan, math.nan
        return float(e.mean()), float(np.median(e)), float(np.sqrt(np.mean(e**2)))

    out["MeanError"], out["MedianError"], out["RMSE"] = stats(err[counted])
    hit_err = np.where(finite, err, np.inf)  # (N, K) a non-finite prediction is never within a threshold

    def share(hit: np.ndarray, mask: np.ndarray) -> float:
        """Percent of the ``mask`` entries that ``hit``; NaN when the mask is empty."""
        n = int(mask.sum())
        return float(100.0 * (hit & mask).sum() / n) if n else math.nan

    with np.errstate(invalid="ignore"):
        ratio = hit_err / np.where(box > 0, box, np.nan)[:, None]  # (N, K) error in box sizes (NaN: box 0)
    for t in box_thresholds:
        out[_threshold_key(t)] = share(ratio <= t, normalisable)
    for t in pixel_thresholds:
        out[_pixel_key(t)] = share(hit_err <= t, lab)
    grid = np.round(np.arange(0.0, auc_max + auc_step / 2, auc_step), 10)  # (A,) 0 … auc_max
    curve = np.array([share(ratio <= t, normalisable) for t in grid])  # (A,) percent, NaN if nothing counts
    out["PCK-AUC"] = float(np.sum((curve[1:] + curve[:-1]) / 2 * np.diff(grid)) / auc_max)
    middle = _middle(box_thresholds)
    for k, name in enumerate(keypoint_names):
        mean, median, rmse = stats(err[counted[:, k], k])
        out[f"MeanError/{name}"], out[f"MedianError/{name}"], out[f"RMSE/{name}"] = mean, median, rmse
        if middle is not None:
            out[f"{_threshold_key(middle)}/{name}"] = share(ratio[:, k] <= middle, normalisable[:, k])
    return out


class PixelMetrics(DatasetMetric):
    """Streaming pixel error and PCK (see the module docstring), fed from ``meta``: ``keypoints_orig`` (B, K, 2),
    ``visible_orig`` (B, K) and ``box_size`` (B,).

    Args:
        keypoint_names: names for the per-keypoint keys.
        box_thresholds: box-relative PCK thresholds.
        pixel_thresholds: fixed PCK thresholds in original-image pixels.
        auc_max / auc_step: the grid of ``PCK-AUC`` and of the PCK curve.
    """

    section = SECTION
    family = "pixel"
    default_primary = "MeanError"

    def __init__(
        self,
        keypoint_names: Sequence[str],
        box_thresholds: Sequence[float] = DEFAULT_BOX_THRESHOLDS,
        pixel_thresholds: Sequence[float] = DEFAULT_PIXEL_THRESHOLDS,
        auc_max: float = 0.2,
        auc_step: float = 0.01,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if any(t <= 0 for t in (*box_thresholds, *pixel_thresholds)) or auc_max <= 0 or auc_step <= 0:
            raise ValueError("PCK thresholds, auc_max and auc_step must be positive")
        self.keypoint_names = tuple(keypoint_names)
        self.box_thresholds = tuple(float(t) for t in box_thresholds)
        self.pixel_thresholds = tuple(float(t) for t in pixel_thresholds)
        self.auc_max, self.auc_step = float(auc_max), float(auc_step)
        self.add_state("errors", default=[], dist_reduce_fx="cat")  # (N, K) px, NaN where unlabelled
        self.add_state("box_size", default=[], dist_reduce_fx="cat")  # (N,) px

    @property
    def columns(self) -> list[Column]:
        return pixel_columns(self.box_thresholds, self.pixel_thresholds)

    @classmethod
    def declared_columns(cls, keypoint_names: Sequence[str] = ()) -> list[Column]:
        return pixel_columns(DEFAULT_BOX_THRESHOLDS, DEFAULT_PIXEL_THRESHOLDS)

    @property
    def keypoint_columns(self) -> list[Column]:
        return pixel_keypoint_columns(self.box_thresholds)

    @classmethod
    def declared_keypoint_columns(cls) -> list[Column]:
        return pixel_keypoint_columns(DEFAULT_BOX_THRESHOLDS)

    @classmethod
    def higher_is_better(cls, key: str) -> bool | None:
        base = key.split("/", 1)[0]
        if base in _ERROR_KEYS:
            return False
        if base.startswith("PCK@") or base == "PCK-AUC":
            return True
        return None

    def update(self, pred: torch.Tensor, scores: torch.Tensor, meta: dict[str, Any]) -> None:  # type: ignore[override]
        gt = meta["keypoints_orig"].to(pred.device, torch.float64)  # (B, K, 2) x,y original pixels
        labelled = meta["visible_orig"].to(pred.device).bool()  # (B, K)
        if pred.shape != gt.shape or pred.shape[1] != len(self.keypoint_names):
            raise ValueError(f"expected pred (B, {len(self.keypoint_names)}, 2) like the ground truth, got "
                             f"{tuple(pred.shape)} and {tuple(gt.shape)}")
        err = torch.linalg.vector_norm(pred.detach().to(torch.float64) - gt, dim=-1)  # (B, K) px
        err = torch.where(labelled, err, torch.full_like(err, math.nan))  # NaN marks "not labelled"
        err = torch.where(labelled & ~torch.isfinite(err), torch.full_like(err, math.inf), err)  # inf: unpredicted
        self.errors.append(err)
        self.box_size.append(meta["box_size"].to(pred.device, torch.float64).reshape(-1))

    def _arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        errors, box = _cat(self.errors), _cat(self.box_size)
        if errors is None or box is None:
            return None
        err = errors.cpu().numpy()  # (N, K)
        return err, ~np.isnan(err), box.cpu().numpy()

    def compute(self) -> dict[str, float]:
        arrays = self._arrays()
        k = len(self.keypoint_names)
        if arrays is None:
            arrays = (np.zeros((0, k)), np.zeros((0, k), bool), np.zeros(0))
        return pixel_results(*arrays, self.keypoint_names, self.box_thresholds, self.pixel_thresholds,
                             self.auc_max, self.auc_step)

    def curve(self) -> dict[str, Any] | None:
        arrays = self._arrays()
        if arrays is None:
            return None
        err, lab, box = arrays
        normalisable = lab & (box > 0)[:, None]  # (N, K)
        n = int(normalisable.sum())
        grid = np.round(np.arange(0.0, self.auc_max + self.auc_step / 2, self.auc_step), 10)  # (A,)
        with np.errstate(invalid="ignore"):
            ratio = np.where(np.isfinite(err), err, np.inf) / np.where(box > 0, box, np.nan)[:, None]  # (N, K)
        pck = [float(100.0 * (normalisable & (ratio <= t)).sum() / n) if n else math.nan for t in grid]
        return {"thresholds": grid.tolist(), "pck": pck, "label": "threshold (fraction of the box size)",
                "metric": "PCK (%)"}


def _cat(state: list[torch.Tensor] | torch.Tensor) -> torch.Tensor | None:
    """A list state as one tensor (a tensor already after a DDP sync); None if empty."""
    if isinstance(state, torch.Tensor):
        return state
    return dim_zero_cat(state) if len(state) else None
