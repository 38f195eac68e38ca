"""Which frames of a video are worth labelling next: scores per frame, their combination, and a diverse pick.

Each score is large where the model is probably wrong on the frame (T frames, K keypoints, S ensemble members):

* ``p_wrong``: 1 − Π_k P(correct)_k, the probability that at least one keypoint is wrong, from the calibrated
  confidences (independence across keypoints assumed); with an uncalibrated model it is only a ranking;
* ``disagreement``: the largest per-keypoint spread of an ensemble's members around their mean, in animal sizes
  (√variance / size);
* ``temporal_jump``: the largest distance of a keypoint from its smoothed track (``kpreg.inference.smoothing``), in
  animal sizes: a prediction that leaves the track for a frame, not a fast but smooth movement;
* ``pca_residual``: the distance of the predicted pose from the span of a PCA of the labelled poses (centred on
  their mean keypoint, the components that explain 99 % of the variance; Lightning Pose's pose-PCA idea), mean
  over keypoints, in animal sizes: a pose unlike any the labeller has drawn.

``combine`` averages the scores' percentile ranks (each score says "more suspicious" on its own scale; ranks make
them comparable without tuning weights). ``pick_diverse`` takes the ``n`` frames to label: the best-ranked
candidates (``pool`` × n of them) are clustered into ``n`` groups by k-means on their poses (centred, in animal
sizes; ``kpreg.kmeans``), and each group gives its best-ranked frame at least ``min_gap`` frames from the others,
so the picks are not twenty neighbours of one bad moment.

DeepLabCut's three outlier heuristics (``extract_outlier_frames``) are here as baselines, as flags per frame:
``dlc_jump`` (a keypoint moved more than ε px since the previous frame), ``dlc_uncertain`` (a likelihood below
``p_bound``); its third, ``fitting`` (a SARIMAX fit per keypoint and coordinate), needs statsmodels and lives in the
benchmark that compares them (``benchmarks/video_suggestions.py``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from scipy.stats import rankdata

from kpreg.kmeans import masked_kmeans

PCA_VARIANCE = 0.99
DEFAULT_POOL = 3  # candidates per frame to pick, before clustering
DEFAULT_MIN_GAP = 10  # frames between two picks


class RankingError(ValueError):
    """Scores that cannot be computed as asked: says what and why."""


def p_wrong(confidence: np.ndarray) -> np.ndarray:
    """(T,) 1 − Π_k p_k over the keypoints of each frame; confidence (T, K), NaN counts as 0 (a missing keypoint)."""
    p = np.clip(np.nan_to_num(np.asarray(confidence, dtype=np.float64), nan=0.0), 0.0, 1.0)  # (T, K)
    return 1.0 - np.prod(p, axis=1)


def disagreement(ensemble_variance: np.ndarray, size: float) -> np.ndarray:
    """(T,) max over keypoints of √(ensemble variance per coordinate) / size; variance (T, K) px²."""
    var = np.nan_to_num(np.asarray(ensemble_variance, dtype=np.float64), nan=0.0)  # (T, K)
    return np.sqrt(var.max(axis=1)) / size


def temporal_jump(keypoints: np.ndarray, smoothed: np.ndarray, size: float) -> np.ndarray:
    """(T,) max over keypoints of ‖prediction − smoothed track‖ / size; (T, K, 2) each, NaN ignored."""
    dist = np.linalg.norm(np.asarray(keypoints, float) - np.asarray(smoothed, float), axis=-1)  # (T, K) px
    dist = np.where(np.isfinite(dist), dist, 0.0)
    return dist.max(axis=1) / size


def _centred(poses: np.ndarray) -> np.ndarray:
    """(N, K, 2) → (N, 2K) each pose minus its mean keypoint (NaN-aware)."""
    return (poses - np.nanmean(poses, axis=1, keepdims=True)).reshape(len(poses), -1)


class PosePCA:
    """A PCA of labelled poses: ``fit`` on (N, K, 2) poses with a (N, K) labelled mask (complete poses only)."""

    def __init__(self, labelled_poses: np.ndarray, labelled: np.ndarray, variance: float = PCA_VARIANCE) -> None:
        poses = np.asarray(labelled_poses, dtype=np.float64)  # (N, K, 2)
        complete = np.asarray(labelled, dtype=bool).all(axis=1) & np.isfinite(poses).all(axis=(1, 2))  # (N,)
        k = poses.shape[1]
        if k < 2:
            raise RankingError("a pose PCA needs at least 2 keypoints")
        if complete.sum() < 3:
            raise RankingError(f"a pose PCA needs at least 3 labelled frames with every keypoint, got "
                               f"{int(complete.sum())}")
        x = _centred(poses[complete])  # (N', 2K)
        self.mean = x.mean(axis=0)  # (2K,)
        _, sv, vt = np.linalg.svd(x - self.mean, full_matrices=False)
        explained = np.cumsum(sv**2) / max(float((sv**2).sum()), 1e-12)
        self.components = vt[: int(np.searchsorted(explained, variance) + 1)]  # (C, 2K)
        self.num_keypoints = k

    def residual(self, poses: np.ndarray) -> np.ndarray:
        """(T,) mean distance per keypoint, px, between each pose (T, K, 2) and its projection on the components."""
        x = _centred(np.asarray(poses, dtype=np.float64)) - self.mean  # (T, 2K)
        x = np.nan_to_num(x, nan=0.0)
        rest = x - (x @ self.components.T) @ self.components  # (T, 2K)
        return np.linalg.norm(rest.reshape(len(x), self.num_keypoints, 2), axis=-1).mean(axis=1)


def pca_residual(keypoints: np.ndarray, pca: PosePCA, size: float) -> np.ndarray:
    """(T,) ``PosePCA.residual`` of the predicted poses (T, K, 2), in animal sizes."""
    return pca.residual(keypoints) / size


def percentile_rank(score: np.ndarray) -> np.ndarray:
    """(T,) rank of each value in [0, 1] (ties share their mean rank; NaN ranks lowest)."""
    s = np.nan_to_num(np.asarray(score, dtype=np.float64), nan=-np.inf)
    return (rankdata(s, method="average") - 1.0) / max(len(s) - 1, 1)


def combine(scores: Mapping[str, np.ndarray]) -> np.ndarray:
    """(T,) the mean percentile rank of the given scores (each (T,))."""
    if not scores:
        raise RankingError("no score to rank frames by")
    lengths = {len(v) for v in scores.values()}
    if len(lengths) != 1:
        raise RankingError(f"scores of different lengths: { {k: len(v) for k, v in scores.items()} }")
    return np.mean([percentile_rank(v) for v in scores.values()], axis=0)


def pick_diverse(
    score: np.ndarray,
    poses: np.ndarray,
    n: int,
    size: float,
    pool: int = DEFAULT_POOL,
    exclude: np.ndarray | None = None,
    seed: int = 0,
    min_gap: int = DEFAULT_MIN_GAP,
) -> np.ndarray:
    """``n`` frame indices, best score first: the ``pool × n`` best frames clustered by pose into ``n`` groups
    (k-means), the best of each group that is at least ``min_gap`` frames from every frame picked before (one bad
    moment of a video gives one frame, not ten neighbours); places left empty are filled with the next best frames
    that keep the gap, then with any. poses (T, K, 2) px (NaN: unknown); ``exclude`` (T,) bool: frames never picked
    (e.g. already labelled). Fewer than ``n`` candidates: all of them."""
    s = np.asarray(score, dtype=np.float64)
    allowed = np.isfinite(s) if exclude is None else np.isfinite(s) & ~np.asarray(exclude, dtype=bool)
    ranked = np.flatnonzero(allowed)
    ranked = ranked[np.argsort(-s[ranked], kind="stable")]
    candidates = ranked[: max(n * pool, n)]
    if len(candidates) <= n:
        return candidates
    x = torch.from_numpy(_centred(np.asarray(poses, dtype=np.float64)[candidates]) / size)  # (M, 2K)
    _, assign = masked_kmeans(x, torch.isfinite(x), n, seed=seed)
    cluster = dict(zip(candidates.tolist(), assign.tolist()))
    picks: list[int] = []

    def far(i: int) -> bool:
        return all(abs(i - j) >= min_gap for j in picks)

    used: set[int] = set()
    for i in candidates.tolist():  # best first: each cluster's best frame that keeps the gap
        if cluster[i] not in used and far(i):
            picks.append(i)
            used.add(cluster[i])
    for keep_gap, pool_of in ((True, ranked.tolist()), (False, candidates.tolist())):  # fill: gap kept, then any
        for i in pool_of:
            if len(picks) >= n:
                break
            if i not in picks and (far(i) or not keep_gap):
                picks.append(i)
    out = np.asarray(picks[:n], dtype=np.int64)
    return out[np.argsort(-s[out], kind="stable")]


# ---- DeepLabCut's heuristics (refine_training_dataset/outlier_frames.py) ----------------------------------------
DLC_EPSILON = 20.0  # px
DLC_P_BOUND = 0.01


def dlc_jump(keypoints: np.ndarray, epsilon: float = DLC_EPSILON) -> np.ndarray:
    """(T,) the largest per-keypoint move since the previous frame, px (0 for frame 0; a missing keypoint does not
    move): DeepLabCut flags ``dlc_jump(...) > ε``."""
    step = np.linalg.norm(np.diff(np.asarray(keypoints, dtype=np.float64), axis=0), axis=-1)  # (T-1, K)
    step = np.where(np.isfinite(step), step, 0.0)
    return np.r_[0.0, step.max(axis=1)] if len(step) else np.zeros(len(keypoints))


def dlc_uncertain(confidence: np.ndarray) -> np.ndarray:
    """(T,) the lowest likelihood of the frame: DeepLabCut flags ``dlc_uncertain(...) < p_bound``."""
    return np.nanmin(np.asarray(confidence, dtype=np.float64), axis=1)
