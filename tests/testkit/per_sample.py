"""Writes per-sample tables (``per_sample.npz``, the file ``evaluate.py`` writes beside its metrics JSON) with
chosen errors, so that the statistics and the study report can be tested without training anything.

Keys: index, image_id, keypoint_names, coords, gt, visible, error_px (original px, NaN where unlabelled),
norm_length, box_size, confidence, raw_confidence, spread, fingerprint, extra/*, info/correct_threshold, info/scale,
info/flip_test, info/checkpoint.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def write_per_sample(
    path: Path,
    errors: np.ndarray,
    visible: np.ndarray | None = None,
    box_size: np.ndarray | None = None,
    norm_length: np.ndarray | None = None,
    image_id: Sequence[int] | None = None,
    scale: str = "box",
    keypoint_names: Sequence[str] | None = None,
    frames_seed: int = 0,
    extra: dict[str, np.ndarray] | None = None,
) -> Path:
    """A per-sample table whose errors are ``errors`` (S, K) px: the ground truth is drawn from ``frames_seed`` (the
    same seed gives the same frames, hence the same fingerprint), predictions lie at those distances from it."""
    err = np.asarray(errors, dtype=np.float64)  # (S, K) px
    s, k = err.shape
    vis = np.ones((s, k), bool) if visible is None else np.asarray(visible, dtype=bool)
    frames = np.random.default_rng(frames_seed)
    gt = frames.uniform(50, 400, (s, k, 2))  # (S, K, 2) x,y original px
    image_id = np.arange(1, s + 1) if image_id is None else np.asarray(image_id)
    angle = np.random.default_rng(1000 + frames_seed).uniform(0, 2 * np.pi, (s, k))
    coords = gt + np.where(np.isfinite(err), err, 0.0)[..., None] * np.stack([np.cos(angle), np.sin(angle)], -1)
    coords[~np.isfinite(err)] = np.nan
    fingerprint = hashlib.sha256(np.ascontiguousarray(gt).tobytes() + np.ascontiguousarray(vis).tobytes()
                                 + np.asarray(image_id).tobytes()).hexdigest()[:16]
    confidence = np.clip(1 - err / 20, 0, 1)
    arrays = {
        "index": np.arange(s),
        "image_id": image_id,
        "keypoint_names": np.array(keypoint_names or [f"k{i}" for i in range(k)]),
        "coords": coords,
        "gt": gt,
        "visible": vis,
        "error_px": np.where(vis, err, np.nan),
        "norm_length": np.full(s, 30.0) if norm_length is None else np.asarray(norm_length, dtype=np.float64),
        "box_size": np.full(s, 100.0) if box_size is None else np.asarray(box_size, dtype=np.float64),
        "confidence": np.nan_to_num(confidence),
        "raw_confidence": np.nan_to_num(confidence),
        "spread": np.full((s, k), np.nan),
        "fingerprint": np.array(fingerprint),
        "info/correct_threshold": np.array(0.5 if scale == "head" else 0.1),
        "info/scale": np.array(scale),
        "info/flip_test": np.array(False),
        "info/checkpoint": np.array(str(path.parent / "checkpoints" / "best.ckpt")),
    }
    arrays.update({f"extra/{key}": np.asarray(v) for key, v in (extra or {}).items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path
