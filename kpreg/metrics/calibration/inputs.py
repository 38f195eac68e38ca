"""Input checks shared by every calibration map and score: one clear error naming the argument and index."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

ArrayLike = torch.Tensor | np.ndarray | Sequence[float]


class CalibrationError(ValueError):
    """Bad input to calibration (the CLI turns a ValueError into one line and exit code 2)."""


def as_features(x: ArrayLike, where: str) -> torch.Tensor:
    """(N,) or (N, F) → (N, F) float64 on the input's device; finite values only."""
    t = torch.as_tensor(x, dtype=torch.float64)
    if t.ndim == 1:
        t = t[:, None]
    if t.ndim != 2 or t.shape[1] < 1:
        raise CalibrationError(f"{where}: features must be (N,) or (N, F), got shape {tuple(t.shape)}")
    bad = (~torch.isfinite(t)).any(dim=1).nonzero()
    if len(bad):
        raise CalibrationError(f"{where}: features row {int(bad[0])} is not finite: {t[int(bad[0])].tolist()}")
    return t


def as_labels(y: ArrayLike, n: int, where: str) -> torch.Tensor:
    """(N,) bool or 0/1 → (N,) bool."""
    t = torch.as_tensor(y)
    if t.shape != (n,):
        raise CalibrationError(f"{where}: correct has shape {tuple(t.shape)}, expected ({n},)")
    if t.dtype != torch.bool:
        bad = ((t != 0) & (t != 1)).nonzero()
        if len(bad):
            raise CalibrationError(f"{where}: correct[{int(bad[0])}] = {t[int(bad[0])].item()} is not 0/1")
        t = t != 0
    return t


def as_indices(idx: ArrayLike | None, n: int, where: str) -> torch.Tensor | None:
    """(N,) non-negative integers or None."""
    if idx is None:
        return None
    t = torch.as_tensor(idx)
    if t.shape != (n,) or t.is_floating_point():
        raise CalibrationError(f"{where}: keypoint_index must be (N,) = ({n},) integers, got {tuple(t.shape)} "
                               f"{t.dtype}")
    t = t.long()
    if n and int(t.min()) < 0:
        raise CalibrationError(f"{where}: keypoint_index[{int(t.argmin())}] = {int(t.min())} is negative")
    return t


def as_probabilities(p: ArrayLike, where: str) -> torch.Tensor:
    """(N,) values in [0, 1] → float64 (scores are only defined on probabilities)."""
    t = torch.as_tensor(p, dtype=torch.float64).reshape(-1)
    bad = (~((t >= 0.0) & (t <= 1.0))).nonzero()  # also catches NaN
    if len(bad):
        i = int(bad[0])
        raise CalibrationError(f"{where}: confidence[{i}] = {t[i].item()} is not a probability in [0, 1] "
                               "(calibrate raw scores first)")
    return t
