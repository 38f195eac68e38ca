"""Several models' predictions of the same frames, combined: the ensemble mean, its variance, its disagreement.

Members are checkpoints trained on the same keypoints (seeds, or heads of different kinds): each predicts every
frame, and per frame and keypoint the ensemble reports the mean position of the members, their mean calibrated
confidence, and the variance of their positions around the mean (per coordinate, px²). The variance is what the
ensemble Kalman smoother of Lightning Pose feeds its filter as observation noise (``kpreg.inference.smoothing``,
``ensemble_variance``), and ``kpreg.inference.ranking.disagreement`` ranks frames by it. A member whose keypoint is
missing (NaN) is left out of that keypoint's mean and variance.

``write_disagreement`` / ``read_disagreement``: ``disagreement.csv``, the members' standard deviation per frame and
keypoint (px), which ``predict.py`` writes beside ``predictions.csv`` for an ensemble and ``suggest.py
--disagreement`` ranks frames by.

``check_members`` refuses an ensemble whose members do not predict the same keypoints in the same order, naming the
two members that differ.
"""

from __future__ import annotations

import csv
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

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


# ---- disagreement.csv: the members' spread per frame and keypoint, beside predictions.csv ----------------------
def write_disagreement(path: str | Path, keypoint_names: Sequence[str], rows: Sequence[str | int],
                       variance: np.ndarray) -> Path:
    """``disagreement.csv``: a header ``frame, <keypoint>…`` and per row (a frame number or an image name) the
    members' standard deviation per coordinate, px (√ of ``variance`` (N, K) px²); empty where no member predicted."""
    var = np.asarray(variance, dtype=np.float64)  # (N, K)
    out = Path(path)
    with open(out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["frame", *keypoint_names])
        for row, v in zip(rows, var):
            writer.writerow([row, *("" if not np.isfinite(x) else f"{np.sqrt(x):.4f}" for x in v)])
    return out


def read_disagreement(path: str | Path, keypoint_names: Sequence[str], frame_count: int) -> np.ndarray:
    """(T, K) variance per coordinate, px², of a video's ``disagreement.csv`` (NaN: empty); a file of other
    keypoints or another frame count is refused."""
    source = Path(path)
    try:
        with open(source, newline="", encoding="utf-8-sig") as f:
            lines = list(csv.reader(f))
    except OSError as err:
        raise EnsembleError(f"{source}: cannot be read ({err.strerror})") from None
    if not lines or lines[0][1:] != list(keypoint_names):
        raise EnsembleError(f"{source}: expected the header frame, {', '.join(keypoint_names)} (a disagreement.csv of "
                            "these predictions)")
    body = [row for row in lines[1:] if row]
    if len(body) != frame_count:
        raise EnsembleError(f"{source}: has {len(body)} frame(s) but the video has {frame_count}: the disagreement of "
                            "another video")
    out = np.full((frame_count, len(keypoint_names)), np.nan)
    for i, row in enumerate(body):
        try:
            t = int(row[0])
            values = [float(x) if x else np.nan for x in row[1:]]
        except ValueError:
            raise EnsembleError(f"{source}, line {i + 2}: expected a frame number and numbers, got {row}") from None
        if not 0 <= t < frame_count or len(values) != len(keypoint_names):
            raise EnsembleError(f"{source}, line {i + 2}: frame {t} or its {len(values)} value(s) do not fit a "
                                f"video of {frame_count} frames and {len(keypoint_names)} keypoints")
        out[t] = np.square(values)
    return out
