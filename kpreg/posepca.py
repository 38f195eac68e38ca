"""Pose PCA: the low-dimensional subspace of the labelled poses (Lightning Pose's pose-PCA loss, Biderman et al.,
Nature Methods 2024), fitted once before training, and the distance of a pose from it.

A pose (K, 2) is first normalised to its box, as the anchor-pose head's k-means sees poses normalised to theirs::

    box      c = (min_k p_k + max_k p_k) / 2,   s = the larger side of the keypoints' extent       (px)
    pose     u = (p − c) / s                     (K, 2) → (2K,)                                      (box units)
    fit      μ, C = the mean and the first principal axes of the labelled u (complete poses only)   (C: (n, 2K))
    residual r_k = s · ‖[(I − CᵀC)(u − μ)]_k‖    per keypoint, back in the pose's own pixels

so where the animal is and how large it is never count, only its shape. The number of axes ``n`` is given, or the
fewest that explain a share of the variance (Lightning Pose: 0.99). ``epsilon`` — the residual a pose may keep
for free — is per keypoint, by default the 90th percentile (Lightning Pose's) of the residuals of labelled poses
*not used to fit the axes* (5-fold cross-fitting): the residuals of the fitted poses themselves are optimistic, the
more so the fewer they are.

A fitted PCA lives in buffers (saved in checkpoints); the axes buffer holds 2K rows, those beyond ``n`` zero, so
that its shape does not depend on the data.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

DEFAULT_VARIANCE = 0.99
DEFAULT_PERCENTILE = 90.0
FOLDS = 5


class PosePCAError(ValueError):
    """A pose PCA that cannot be fitted as asked: says why and what to change."""


def box_normalise(poses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., K, 2) px → (poses in box units (..., K, 2), box size (...) px): centred on the keypoints' extent's
    middle, divided by its larger side (at least 1e-6 px)."""
    lo, hi = poses.amin(dim=-2), poses.amax(dim=-2)  # (..., 2)
    centre = (lo + hi) / 2.0
    size = (hi - lo).amax(dim=-1).clamp(min=1e-6)  # (...)
    return (poses - centre[..., None, :]) / size[..., None, None], size


def _axes(x: torch.Tensor, components: int | float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(N, D) → mean (D,), axes (n, D), explained share of the variance of each axis (min(N, D),)."""
    mean = x.mean(dim=0)
    _, sv, vt = torch.linalg.svd(x - mean, full_matrices=False)
    var = sv**2
    share = var / var.sum().clamp(min=1e-24)
    if isinstance(components, float):
        n = int(torch.searchsorted(share.cumsum(0), torch.tensor(components, dtype=share.dtype)).item()) + 1
        n = min(n, len(share))
    else:
        n = int(components)
    return mean, vt[:n], share


def residual_of(poses: torch.Tensor, mean: torch.Tensor, axes: torch.Tensor) -> torch.Tensor:
    """(..., K, 2) px → (..., K) px: each keypoint's distance from its projection on the axes (n, 2K) through the
    mean (2K,), in box units scaled back by the pose's box size."""
    u, size = box_normalise(poses)  # (..., K, 2), (...)
    x = u.flatten(-2) - mean  # (..., 2K)
    rest = x - (x @ axes.T) @ axes  # (..., 2K)
    return rest.unflatten(-1, (-1, 2)).norm(dim=-1) * size[..., None]  # (..., K) px


class PosePCA(nn.Module):
    """Args:
    num_keypoints: K.
    """

    def __init__(self, num_keypoints: int) -> None:
        super().__init__()
        d = 2 * num_keypoints
        self.num_keypoints = num_keypoints
        self.register_buffer("mean", torch.zeros(d))  # (2K,) box units
        self.register_buffer("axes", torch.zeros(d, d))  # (2K, 2K): the first n rows are the axes, the rest zero
        self.register_buffer("epsilon", torch.zeros(num_keypoints))  # (K,) px
        self.register_buffer("num_axes", torch.zeros((), dtype=torch.long))
        self.register_buffer("explained", torch.zeros(()))  # the share of the variance the axes explain

    def is_fitted(self) -> bool:
        return int(self.num_axes) > 0

    @torch.no_grad()
    def fit(self, poses: np.ndarray | torch.Tensor, labelled: np.ndarray | torch.Tensor,
            components: int | float = DEFAULT_VARIANCE, epsilon: float | None = None,
            percentile: float = DEFAULT_PERCENTILE) -> None:
        """Fit on (N, K, 2) px poses with a (N, K) labelled mask: only poses with every keypoint labelled count.

        components: a number of axes (int), or the share of the variance they must explain (float in (0, 1)).
        epsilon: the residual (px) a keypoint keeps for free; None: ``percentile`` of the cross-fitted residuals of
        the labelled poses, per keypoint."""
        k = self.num_keypoints
        d = 2 * k
        p = torch.as_tensor(np.asarray(poses, dtype=np.float64))  # (N, K, 2)
        m = torch.as_tensor(np.asarray(labelled, dtype=bool))  # (N, K)
        if p.ndim != 3 or p.shape[1:] != (k, 2) or m.shape != p.shape[:2]:
            raise PosePCAError(f"pose PCA: poses must be (N, {k}, 2) with a (N, {k}) mask, got {tuple(p.shape)} "
                               f"and {tuple(m.shape)}")
        complete = m.all(dim=1) & torch.isfinite(p).all(dim=(1, 2))  # (N,)
        n_poses = int(complete.sum())
        if k < 2:
            raise PosePCAError("pose PCA: a pose needs at least 2 keypoints")
        if isinstance(components, bool) or not isinstance(components, (int, float)):
            raise PosePCAError(f"pose PCA: components must be a number of axes or a share of variance, got "
                               f"{components!r}")
        if isinstance(components, float):
            if not 0.0 < components < 1.0:
                raise PosePCAError(f"pose PCA: a share of variance must be in (0, 1), got {components}")
            if n_poses <= d:
                raise PosePCAError(
                    f"pose PCA: {n_poses} labelled poses with every keypoint, not more than the {d} dimensions of a "
                    f"pose ({k} keypoints × 2): the share of variance of axes fitted to so few poses says nothing. "
                    f"Label more frames, or give a number of components below {max(n_poses, 1)}")
        else:
            if not 1 <= components < d:
                raise PosePCAError(f"pose PCA: {components} components for poses of {d} dimensions ({k} keypoints "
                                   f"× 2): give 1 to {d - 1} (all {d} would leave nothing to penalise)")
            if n_poses <= components:
                raise PosePCAError(
                    f"pose PCA: {n_poses} labelled poses with every keypoint, fewer than the {components + 1} needed "
                    f"for {components} components (a mean and {components} axes): label more frames or ask for "
                    f"fewer components")
        u, _ = box_normalise(p[complete])  # (N', K, 2)
        x = u.flatten(1)  # (N', 2K)
        mean, axes, share = _axes(x, components)
        n = len(axes)
        if epsilon is None:
            eps = torch.quantile(self._cross_fitted(p[complete], n), percentile / 100.0, dim=0)  # (K,)
        else:
            if not epsilon >= 0:
                raise PosePCAError(f"pose PCA: epsilon must be >= 0 px, got {epsilon}")
            eps = torch.full((k,), float(epsilon), dtype=torch.float64)
        self.mean.copy_(mean)
        self.axes.zero_()
        self.axes[:n].copy_(axes)
        self.epsilon.copy_(eps)
        self.num_axes.fill_(n)
        self.explained.fill_(float(share[:n].sum()))

    @staticmethod
    def _cross_fitted(poses: torch.Tensor, n: int) -> torch.Tensor:
        """(N, K) residuals of each pose under axes fitted to the other folds (``FOLDS``-fold; leave-one-out with
        fewer poses), each fold with ``n`` axes or as many as its poses allow."""
        count = len(poses)
        folds = min(FOLDS, count)
        order = torch.randperm(count, generator=torch.Generator().manual_seed(0))
        out = torch.empty(count, poses.shape[1], dtype=poses.dtype)
        for f in range(folds):
            held = order[f::folds]
            keep = torch.ones(count, dtype=torch.bool)
            keep[held] = False
            u, _ = box_normalise(poses[keep])
            mean, axes, _ = _axes(u.flatten(1), min(n, int(keep.sum()) - 1))
            out[held] = residual_of(poses[held], mean, axes)
        return out

    def residual(self, poses: torch.Tensor) -> torch.Tensor:
        """(..., K, 2) px → (..., K) px, differentiable in ``poses``."""
        if not self.is_fitted():
            raise RuntimeError("PosePCA.residual before fit (or without a fitted checkpoint)")
        return residual_of(poses, self.mean.to(poses.dtype), self.axes.to(poses.dtype))

    def state(self) -> dict[str, Any]:
        """The fitted PCA as plain data (checkpoints: ``predict.py`` scores video frames with it)."""
        n = int(self.num_axes)
        return {"mean": self.mean.tolist(), "axes": self.axes[:n].tolist(), "epsilon": self.epsilon.tolist(),
                "explained": float(self.explained)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> PosePCA:
        """A fitted PCA back from ``state()``."""
        mean = torch.tensor(state["mean"], dtype=torch.float64)
        axes = torch.tensor(state["axes"], dtype=torch.float64).reshape(-1, len(mean))
        pca = cls(len(mean) // 2)
        pca.mean.copy_(mean)
        pca.axes[: len(axes)].copy_(axes)
        pca.epsilon.copy_(torch.tensor(state["epsilon"], dtype=torch.float64))
        pca.num_axes.fill_(len(axes))
        pca.explained.fill_(float(state.get("explained", 0.0)))
        return pca
