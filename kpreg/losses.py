"""Pure masked losses. ``weight`` is the per-keypoint visibility (B, K): invisible joints contribute
nothing, and a batch with no visible joint gives an exact, finite zero (never 0/0)."""

from __future__ import annotations

import torch


def masked_mean(per_joint: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Weighted mean of a (B, K) per-joint loss over visible joints; 0 when none is visible."""
    weight = weight.to(per_joint.dtype)
    return (per_joint * weight).sum() / weight.sum().clamp(min=1.0)


def heatmap_mse(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Visibility-weighted MSE between (B, K, h, w) heatmaps (SimpleBaseline's JointsMSELoss, up to
    its constant ½): the mean squared error per joint, averaged over visible joints."""
    per_joint = (pred.float() - target.float()).pow(2).mean(dim=(-2, -1))  # (B, K)
    return masked_mean(per_joint, weight)
