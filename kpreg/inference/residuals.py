"""Per-frame residuals of a video's predictions: the unsupervised losses of training, read as scores.

For a track of T frames (``(T, K, 2)`` keypoints, NaN where nothing was predicted)::

    temporal_<k>  ‖x_t − x_{t−1}‖ of keypoint k, px (0 on frame 0; NaN next to a missing prediction)
    pca_<k>       keypoint k's distance from the span of the model's pose PCA, px (``kpreg.posepca``)
    temporal      the frame's largest temporal_<k>            (a jump: DeepLabCut's outlier heuristic)
    pca           the frame's mean pca_<k>                     (a pose unlike the labelled ones)

``predict.py`` writes them beside a video's predictions as ``residuals.csv`` (one row per frame, ``frame`` first),
with the model's ε in ``residuals.json``: the temporal ε of training (``model.unsupervised.temporal_epsilon``) and
the PCA's per-keypoint ε. The PCA is the one fitted on the labelled poses for the pose-PCA loss and stored in the
checkpoint (``checkpoint["kpreg"]["unsupervised"]["pose_pca"]``); a model trained without it gets the temporal
columns only. Both are outlier scores for choosing frames to label (``kpreg.inference.ranking``).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kpreg.posepca import PosePCA


def temporal_residual(keypoints: np.ndarray) -> np.ndarray:
    """(T, K, 2) px → (T, K) how far each keypoint moved since the previous frame, px (0 on the first frame)."""
    xy = np.asarray(keypoints, dtype=np.float64)
    step = np.linalg.norm(np.diff(xy, axis=0), axis=-1)  # (T - 1, K)
    return np.concatenate([np.zeros((min(len(xy), 1), xy.shape[1])), step])


def pca_residual(keypoints: np.ndarray, pca: PosePCA) -> np.ndarray:
    """(T, K, 2) px → (T, K) each keypoint's distance from the PCA's span, px; NaN for a frame with a missing
    keypoint (its box, hence its normalised pose, is unknown)."""
    xy = np.asarray(keypoints, dtype=np.float64)
    complete = np.isfinite(xy).all(axis=(1, 2))  # (T,)
    out = np.full(xy.shape[:2], np.nan)
    if complete.any():
        with torch.no_grad():
            out[complete] = pca.residual(torch.from_numpy(xy[complete])).numpy()
    return out


def unsupervised_record(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """The checkpoint's record of its unsupervised losses (``{}`` for a model trained without them)."""
    record = checkpoint.get("kpreg") or {}
    return dict(record.get("unsupervised") or {})


def write_residuals(out_dir: str | Path, keypoints: np.ndarray, bodyparts: Sequence[str],
                    record: Mapping[str, Any] | None = None) -> list[Path]:
    """``residuals.csv`` and ``residuals.json`` in ``out_dir`` for a video's track (T, K, 2) px; ``record``: the
    checkpoint's unsupervised record (``unsupervised_record``), for the pose PCA and the ε. Returns the paths."""
    out = Path(out_dir)
    record = dict(record or {})
    names = [str(b) for b in bodyparts]
    temporal = temporal_residual(keypoints)  # (T, K)
    columns: dict[str, np.ndarray] = {f"temporal_{n}": temporal[:, i] for i, n in enumerate(names)}
    pca_state = record.get("pose_pca")
    pca = PosePCA.from_state(pca_state) if pca_state else None
    if pca is not None:
        residual = pca_residual(keypoints, pca)  # (T, K)
        columns |= {f"pca_{n}": residual[:, i] for i, n in enumerate(names)}
    largest = np.where(np.isfinite(temporal), temporal, -np.inf).max(axis=1)  # (T,)
    columns["temporal"] = np.where(np.isfinite(largest), largest, np.nan)
    if pca is not None:
        columns["pca"] = residual.mean(axis=1)  # NaN where a keypoint is missing
    table = out / "residuals.csv"
    with open(table, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["frame", *columns])
        for t in range(len(temporal)):
            writer.writerow([t, *("" if not np.isfinite(v[t]) else f"{v[t]:.3f}" for v in columns.values())])
    meta = out / "residuals.json"
    meta.write_text(json.dumps({
        "temporal_epsilon": record.get("temporal_epsilon"),
        "pca_epsilon": dict(zip(names, pca_state["epsilon"])) if pca_state else None,
        "pca_axes": len(pca_state["axes"]) if pca_state else None,
        "columns": "temporal_<k>: px moved since the previous frame; pca_<k>: px off the pose PCA's span; temporal: "
                   "the frame's largest move; pca: the frame's mean PCA residual",
    }, indent=2))
    return [table, meta]
