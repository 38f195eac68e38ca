"""Summary metrics as functions of image weights: what a bootstrap over images resamples.

A run's summary metric (mean pixel error, PCK, PCKh, OKS AP …) is a function of the evaluated images. Here each is
an ``ImageStatistic``: called with image weights ``(B, N)`` — how many times each of the N images is drawn in each of
B resamples — it returns the metric of every resample ``(B,)``; all-ones weights give the metric the run reported.
``kpreg.compare.statistics`` builds intervals and paired tests on them without knowing any metric.

Images, not samples, are the unit: the samples (instances) of one image are drawn together, as they share its
content. Three forms cover the summary metrics:

* ``RatioStatistic``: ``Σ_i w_i num_i / Σ_i w_i den_i`` (× a scale, optionally square-rooted): the mean error
  (num = the image's summed error, den = its counted keypoints), RMSE (squared errors, root), every PCK and PCKh
  (hits / counted keypoints) and the areas under their curves (trapezoid weights × hits, a linear combination);
* ``MedianStatistic``: the median of the pooled keypoint errors, each error weighted by its image's weight;
* ``APStatistic``: COCO's OKS AP (pycocotools' accumulate: 101 recall points, 10 OKS thresholds) of one prediction per
  ground-truth instance, every instance weighted by its image's weight.

Each also gives ``mixed(other, take_other)``: its value at unit weights when the images flagged in a row of
``take_other`` ``(P, N)`` are taken from ``other`` — the paired permutation test's swap of two runs' rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

# pycocotools' COCOeval defaults for keypoints: OKS thresholds .50:.05:.95, 101 recall points
OKS_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # (T,)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)  # (R,)
_EPS = np.spacing(1)


class ImageStatistic(Protocol):
    """A summary metric of one run as a function of image weights (see the module docstring)."""

    n_images: int

    def __call__(self, weights: np.ndarray) -> np.ndarray:
        """weights (B, N) image multiplicities → (B,) the metric of each resample (NaN where nothing counts)."""
        ...

    def mixed(self, other: ImageStatistic, take_other: np.ndarray) -> np.ndarray:
        """take_other (P, N) bool → (P,) the metric at unit weights with the flagged images' rows from ``other``."""
        ...


def _as_weights(weights: np.ndarray, n: int) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    w = w[None] if w.ndim == 1 else w  # (B, N)
    if w.ndim != 2 or w.shape[1] != n:
        raise ValueError(f"expected image weights (B, {n}), got {np.shape(weights)}")
    return w


def _as_masks(take_other: np.ndarray, n: int) -> np.ndarray:
    m = np.asarray(take_other, dtype=bool)
    m = m[None] if m.ndim == 1 else m  # (P, N)
    if m.ndim != 2 or m.shape[1] != n:
        raise ValueError(f"expected swap masks (P, {n}), got {np.shape(take_other)}")
    return m


def _same_kind(a: object, b: object, n: int) -> None:
    if type(a) is not type(b) or getattr(b, "n_images", None) != n:
        raise ValueError(f"cannot pair a {type(a).__name__} of {n} images with a {type(b).__name__} of "
                         f"{getattr(b, 'n_images', '?')} images")


@dataclass(frozen=True, eq=False)
class RatioStatistic:
    """``scale · Σ w·num / Σ w·den`` (square-rooted when ``root``): num, den (N,) per image."""

    num: np.ndarray  # (N,)
    den: np.ndarray  # (N,)
    scale: float = 1.0
    root: bool = False

    @property
    def n_images(self) -> int:
        return len(self.num)

    def _value(self, num: np.ndarray, den: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            v = self.scale * np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)  # (B,)
        return np.sqrt(v) if self.root else v

    def __call__(self, weights: np.ndarray) -> np.ndarray:
        w = _as_weights(weights, self.n_images)  # (B, N)
        return self._value(w @ self.num, w @ self.den)

    def mixed(self, other: ImageStatistic, take_other: np.ndarray) -> np.ndarray:
        _same_kind(self, other, self.n_images)
        assert isinstance(other, RatioStatistic)
        m = _as_masks(take_other, self.n_images).astype(np.float64)  # (P, N)
        num = self.num.sum() + m @ (other.num - self.num)  # (P,)
        den = self.den.sum() + m @ (other.den - self.den)  # (P,)
        return self._value(num, den)


@dataclass(frozen=True, eq=False)
class MedianStatistic:
    """The median of pooled values (keypoint errors), each weighted by the weight of its image (``np.median``'s
    convention: the mean of the two middle values for an even count)."""

    values: np.ndarray  # (M,)
    image: np.ndarray  # (M,) image index of each value
    n_images: int

    def __post_init__(self) -> None:
        order = np.argsort(self.values, kind="stable")
        object.__setattr__(self, "_sorted", np.asarray(self.values, dtype=np.float64)[order])  # (M,)
        object.__setattr__(self, "_sorted_image", np.asarray(self.image)[order])  # (M,)

    def __call__(self, weights: np.ndarray) -> np.ndarray:
        w = _as_weights(weights, self.n_images)  # (B, N)
        values, image = self._sorted, self._sorted_image  # type: ignore[attr-defined]
        if values.size == 0:
            return np.full(len(w), np.nan)
        cum = np.cumsum(w[:, image], axis=1)  # (B, M) weighted count up to each sorted value
        total = cum[:, -1]  # (B,)
        lo = np.floor((total - 1) / 2)  # (B,) 0-based order statistics of the middle pair
        hi = np.floor(total / 2)
        first_lo = np.argmax(cum > lo[:, None], axis=1)  # (B,) the first sorted value whose count passes it
        first_hi = np.argmax(cum > hi[:, None], axis=1)
        out = (values[first_lo] + values[first_hi]) / 2
        return np.where(total > 0, out, np.nan)

    def mixed(self, other: ImageStatistic, take_other: np.ndarray) -> np.ndarray:
        _same_kind(self, other, self.n_images)
        assert isinstance(other, MedianStatistic)
        out = []
        for row in _as_masks(take_other, self.n_images):  # (N,)
            pooled = np.concatenate([self.values[~row[self.image]], other.values[row[other.image]]])
            out.append(float(np.median(pooled)) if pooled.size else math.nan)
        return np.array(out)


@dataclass(frozen=True, eq=False)
class APStatistic:
    """COCO OKS AP of one prediction per ground-truth instance (the prediction of a top-down sample is matched to
    its own instance: exact when every image holds one instance). ``thresholds``: the OKS thresholds averaged
    (pycocotools' ten for ``AP``, one for ``AP50`` / ``AP75``)."""

    oks: np.ndarray  # (M,) OKS of each instance's prediction with its ground truth
    score: np.ndarray  # (M,) instance scores (the ranking of the precision-recall curve)
    image: np.ndarray  # (M,) image index of each instance
    n_images: int
    thresholds: tuple[float, ...] = tuple(OKS_THRESHOLDS.tolist())

    def __post_init__(self) -> None:
        order = np.argsort(-np.asarray(self.score, dtype=np.float64), kind="mergesort")  # pycocotools' order
        object.__setattr__(self, "_order", order)

    def _ap(self, oks: np.ndarray, image: np.ndarray, order: np.ndarray, w: np.ndarray) -> np.ndarray:
        """AP (B,) for instance OKS (M,) in score order ``order``, instance weights from image weights w (B, N)."""
        wm = w[:, image[order]]  # (B, M) instance weights, best score first
        positives = wm.sum(1)  # (B,) ground-truth instances drawn
        aps = []
        for t in self.thresholds:
            hit = oks[order] >= min(t, 1 - 1e-10)  # (M,) pycocotools caps the threshold below 1
            tp = np.cumsum(wm * hit, axis=1)  # (B, M)
            fp = np.cumsum(wm * ~hit, axis=1)  # (B, M)
            with np.errstate(invalid="ignore", divide="ignore"):
                recall = tp / positives[:, None]  # (B, M)
            precision = tp / (tp + fp + _EPS)  # (B, M)
            precision = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]  # the precision envelope
            first = (recall[:, :, None] < RECALL_POINTS[None, None, :]).sum(1)  # (B, R) searchsorted 'left'
            reached = first < recall.shape[1]  # (B, R)
            q = np.where(reached, np.take_along_axis(precision, np.minimum(first, recall.shape[1] - 1), 1), 0.0)
            aps.append(q.mean(1))  # (B,)
        return np.where(positives > 0, np.mean(aps, axis=0), np.nan)

    def __call__(self, weights: np.ndarray) -> np.ndarray:
        w = _as_weights(weights, self.n_images)  # (B, N)
        if len(self.oks) == 0:
            return np.full(len(w), np.nan)
        out = np.empty(len(w))
        for start in range(0, len(w), 64):  # (64, M, R) intermediate per threshold
            out[start:start + 64] = self._ap(np.asarray(self.oks), np.asarray(self.image),
                                             self._order, w[start:start + 64])  # type: ignore[attr-defined]
        return out

    def mixed(self, other: ImageStatistic, take_other: np.ndarray) -> np.ndarray:
        _same_kind(self, other, self.n_images)
        assert isinstance(other, APStatistic)
        out = []
        ones = np.ones((1, self.n_images))
        for row in _as_masks(take_other, self.n_images):  # (N,)
            mine, theirs = ~row[self.image], row[other.image]  # (M,) instances kept from each side
            oks = np.concatenate([self.oks[mine], other.oks[theirs]])
            score = np.concatenate([self.score[mine], other.score[theirs]])
            image = np.concatenate([self.image[mine], other.image[theirs]])
            order = np.argsort(-score, kind="mergesort")
            out.append(float(self._ap(oks, image, order, ones)[0]))
        return np.array(out)


# ---- building them from a run's per-sample rows --------------------------------------------------------------
def image_index(image_id: np.ndarray) -> tuple[np.ndarray, int]:
    """(image index (S,) of each sample, number of images N): samples of one image share its index; images are
    numbered in order of their first sample."""
    ids = np.asarray(image_id)
    _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))  # first appearance order
    return rank[inverse.reshape(-1)], len(first)


def _per_image(values: np.ndarray, image: np.ndarray, n: int) -> np.ndarray:
    """Sum (N,) over the samples of each image of per-sample values (S,)."""
    return np.bincount(image, weights=np.asarray(values, dtype=np.float64), minlength=n)


def ratio_of_counts(hits: np.ndarray, counted: np.ndarray, image: np.ndarray, n: int, scale: float = 100.0
                    ) -> RatioStatistic:
    """A share of counted keypoints, in percent: hits, counted (S, K) bool per sample and keypoint."""
    hits = np.asarray(hits, dtype=bool) & np.asarray(counted, dtype=bool)
    return RatioStatistic(_per_image(hits.sum(1), image, n), _per_image(np.asarray(counted).sum(1), image, n), scale)


def trapezoid_weights(grid: Sequence[float]) -> np.ndarray:
    """(A,) weights c with Σ_t c_t f(t) = the trapezoidal area under f on ``grid`` divided by its length."""
    g = np.asarray(grid, dtype=np.float64)
    c = np.zeros_like(g)
    step = np.diff(g) / 2
    c[:-1] += step
    c[1:] += step
    return c / (g[-1] - g[0])


def pixel_statistics(
    error: np.ndarray,
    labelled: np.ndarray,
    box_size: np.ndarray,
    image: np.ndarray,
    n_images: int,
    box_thresholds: Sequence[float] = (0.05, 0.1, 0.2),
    pixel_thresholds: Sequence[float] = (2.0, 5.0, 10.0),
    auc_max: float = 0.2,
    auc_step: float = 0.01,
) -> dict[str, ImageStatistic]:
    """The summary keys of ``kpreg.metrics.pixel`` (``MeanError``, ``MedianError``, ``RMSE``, ``PCK@t``,
    ``PCK@npx``, ``PCK-AUC``) as image statistics, with the same conventions as ``pixel_results``: error (S, K)
    px per sample and keypoint (NaN unlabelled, inf where the prediction is not finite), labelled (S, K), box_size
    (S,); samples with a box of size 0 are left out of the box-relative PCK."""
    from kpreg.metrics.pixel import _pixel_key, _threshold_key

    err = np.asarray(error, dtype=np.float64)  # (S, K) px
    lab = np.asarray(labelled, dtype=bool)  # (S, K)
    box = np.asarray(box_size, dtype=np.float64).reshape(-1)  # (S,)
    finite = np.isfinite(err)
    counted = lab & finite  # (S, K) in the error statistics
    normalisable = lab & (np.isfinite(box) & (box > 0))[:, None]  # (S, K) in the box-relative PCK
    hit_err = np.where(finite, err, np.inf)  # (S, K)
    with np.errstate(invalid="ignore"):
        ratio = hit_err / np.where(box > 0, box, np.nan)[:, None]  # (S, K) error in box sizes
    zero = np.where(counted, err, 0.0)  # (S, K)
    count = _per_image(counted.sum(1), image, n_images)
    out: dict[str, ImageStatistic] = {
        "MeanError": RatioStatistic(_per_image(zero.sum(1), image, n_images), count),
        "MedianError": MedianStatistic(err[counted], np.broadcast_to(image[:, None], err.shape)[counted], n_images),
        "RMSE": RatioStatistic(_per_image((zero**2).sum(1), image, n_images), count, root=True),
    }
    for t in box_thresholds:
        out[_threshold_key(t)] = ratio_of_counts(ratio <= t, normalisable, image, n_images)
    for t in pixel_thresholds:
        out[_pixel_key(t)] = ratio_of_counts(hit_err <= t, lab, image, n_images)
    grid = np.round(np.arange(0.0, auc_max + auc_step / 2, auc_step), 10)  # (A,) as pixel_results
    c = trapezoid_weights(grid)  # (A,)
    area = sum(c_t * ((ratio <= t) & normalisable).sum(1) for c_t, t in zip(c, grid))  # (S,)
    out["PCK-AUC"] = RatioStatistic(_per_image(area, image, n_images),
                                    _per_image(normalisable.sum(1), image, n_images), 100.0)
    return out


def pckh_statistics(
    error: np.ndarray,
    labelled: np.ndarray,
    head_size: np.ndarray,
    image: np.ndarray,
    n_images: int,
    mean_joints: Sequence[int],
    thresholds: Sequence[float] = (0.5, 0.1),
    auc_max: float = 0.5,
    auc_step: float = 0.01,
) -> dict[str, ImageStatistic]:
    """PCKh's pooled summary keys (``Mean``, ``Mean@0.1``, ``AUC``: ``kpreg.metrics.pckh``'s official protocol over
    the ``mean_joints``) as image statistics: error (S, K) px, labelled (S, K), head_size (S,) px."""
    from kpreg.metrics.pckh import auc_grid, exact_thresholds

    err = np.asarray(error, dtype=np.float64)[:, list(mean_joints)]  # (S, J) px
    lab = np.asarray(labelled, dtype=bool)[:, list(mean_joints)]  # (S, J)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = err / np.asarray(head_size, dtype=np.float64).reshape(-1)[:, None]  # (S, J) the toolkit's division
    main, low = exact_thresholds(thresholds)
    total = _per_image(lab.sum(1), image, n_images)
    grid = auc_grid(auc_max, auc_step)  # (A,)
    c = trapezoid_weights(grid)
    area = sum(c_t * ((ratio <= t) & lab).sum(1) for c_t, t in zip(c, grid))  # (S,)
    return {
        "Mean": RatioStatistic(_per_image(((ratio <= main) & lab).sum(1), image, n_images), total, 100.0),
        "Mean@0.1": RatioStatistic(_per_image(((ratio <= low) & lab).sum(1), image, n_images), total, 100.0),
        "AUC": RatioStatistic(_per_image(area, image, n_images), total, 100.0),
    }


def ap_statistics(oks: np.ndarray, score: np.ndarray, image: np.ndarray, n_images: int) -> dict[str, ImageStatistic]:
    """``AP``, ``AP50``, ``AP75`` (pycocotools' keypoint AP) as image statistics, from each sample's OKS with its
    own ground-truth instance and its instance score (S,). Only for one instance per image, where matching a
    prediction to its own instance is what COCOeval does; raises ``ValueError`` otherwise."""
    image = np.asarray(image)
    if len(np.unique(image)) != len(image):
        raise ValueError("OKS AP is resampled only with one instance per image (COCOeval matches predictions to "
                         "the instances of their image greedily)")
    oks = np.asarray(oks, dtype=np.float64)
    score = np.asarray(score, dtype=np.float64)
    return {
        "AP": APStatistic(oks, score, image, n_images),
        "AP50": APStatistic(oks, score, image, n_images, (float(OKS_THRESHOLDS[0]),)),
        "AP75": APStatistic(oks, score, image, n_images, (float(OKS_THRESHOLDS[5]),)),
    }


def table_statistics(table: Mapping[str, Any], mean_joints: Sequence[int] | None = None
                     ) -> tuple[int, dict[str, ImageStatistic]]:
    """(number of images, every summary key that can be resampled) of a run's per-sample table (the arrays of
    ``per_sample.npz``: ``image_id``, ``error_px``, ``visible``, ``box_size``, ``norm_length``, ``keypoint_names``,
    ``info/scale``; ``extra/oks`` and ``extra/instance_score`` where the dataset has OKS AP). PCKh where the scale
    is a head size (its ``Mean`` over ``mean_joints``: default MPII's for MPII's joints, else every joint); OKS AP
    where every image holds one instance."""
    from kpreg.metrics.pckh import _protocol

    image, n = image_index(np.asarray(table["image_id"]))
    err = np.asarray(table["error_px"], dtype=np.float64)  # (S, K) original px, NaN unlabelled
    lab = np.asarray(table["visible"], dtype=bool)  # (S, K) labelled
    err = np.where(lab & np.isnan(err), np.inf, err)  # a labelled keypoint without a finite prediction
    out = pixel_statistics(err, lab, np.asarray(table["box_size"]), image, n)
    if str(np.asarray(table["info/scale"])) == "head":
        names = [str(k) for k in np.asarray(table["keypoint_names"])]
        joints = list(mean_joints) if mean_joints is not None else _protocol(names, None, None)[1]
        out.update(pckh_statistics(err, lab, np.asarray(table["norm_length"]), image, n, joints))
    if "extra/oks" in table and "extra/instance_score" in table and len(np.unique(image)) == len(image):
        out.update(ap_statistics(np.asarray(table["extra/oks"]), np.asarray(table["extra/instance_score"]), image, n))
    return n, out
