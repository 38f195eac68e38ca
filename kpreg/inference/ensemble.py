"""Several models' predictions of the same frames, combined: the ensemble mean, its variance, its disagreement.

Members are checkpoints trained on the same keypoints (seeds, or heads of different kinds): each predicts every
frame, and per frame and keypoint the ensemble reports the mean position of the members, their mean calibrated
confidence, and the variance of their positions around the mean (per coordinate, px²). The variance is what the
ensemble Kalman smoother of Lightning Pose feeds its filter as observation noise (``kpreg.inference.smoothing``,
``ensemble_variance``), and ``kpreg.inference.ranking.disagreement`` ranks frames by it. A member whose keypoint is
missing (NaN) is left out of that keypoint's mean and variance.

``check_members`` refuses an ensemble whose members do not predict the same keypoints in the same order, naming the
two members that differ.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


class EnsembleError(ValueError):
    """Members that cannot form an ensemble: names them and what differs."""


@dataclass(frozen=True, eq=False)
class EnsemblePrediction:
    keypoints: np.ndarray  # (..., K, 2) float64 the members' mean position, image pixels
    confidence: np.ndarray  # (..., K) float64 the members' mean confidence
    variance: np.ndarray  # (..., K) float64 variance of the members' positions per coordinate, px² (0 for one)
    members: int


def check_members(names: Sequence[str], keypoints: Sequence[Sequence[str]]) -> tuple[str, ...]:
    """The common keypoint names of the members ``names`` (each member's keypoint names in ``keypoints``)."""
    if not names:
        raise EnsembleError("an ensemble needs at least one model")
    first = tuple(keypoints[0])
    for name, kps in zip(names[1:], keypoints[1:]):
        if tuple(kps) != first:
            diff = sorted(set(first) ^ set(kps))
            what = f"keypoints only one of them has: {diff}" if diff else "the same keypoints in another order"
            raise EnsembleError(f"{names[0]} and {name} predict different keypoints ({len(first)} vs {len(kps)}; "
                                f"{what}): an ensemble needs models of the same keypoints")
    return first


def combine(keypoints: np.ndarray, confidence: np.ndarray) -> EnsemblePrediction:
    """keypoints (M, ..., K, 2) and confidence (M, ..., K) of M members → their ensemble."""
    xy = np.asarray(keypoints, dtype=np.float64)  # (M, ..., K, 2)
    conf = np.asarray(confidence, dtype=np.float64)  # (M, ..., K)
    if xy.shape[:-1] != conf.shape or xy.shape[-1] != 2:
        raise EnsembleError(f"members' keypoints {xy.shape} and confidence {conf.shape} do not match")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a keypoint no member predicted stays NaN
        mean = np.nanmean(xy, axis=0)  # (..., K, 2)
        variance = np.nanmean(np.nanvar(xy, axis=0), axis=-1)  # (..., K) per coordinate
        conf_mean = np.nanmean(conf, axis=0)  # (..., K)
    return EnsemblePrediction(mean, conf_mean, variance, len(xy))
