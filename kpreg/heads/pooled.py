"""The global-pool MLP that direct-regression heads share (DeepPose's design, and RLE's), and the per-keypoint
statistics of a training set that standardise their targets.

Layers: global average pooling → Linear → BatchNorm → ReLU → Linear. The BatchNorm before the ReLU is what
keeps the hidden units alive (pooled backbone features are positive and nearly the same for every image, so
without centring a unit that turns negative is off for the whole data set; ``kpreg.heads.fc`` measured it).
The last layer starts near zero, so a head whose outputs are standardised offsets starts at its reference
pose (the mean pose, or the anchors).
"""

from __future__ import annotations

import torch
from torch import nn

from kpreg.coords import pixels_to_normalized


def pooled_mlp(in_channels: int, hidden: int, out_features: int) -> nn.Sequential:
    """(B, C, h, w) features → (B, out_features). ``hidden = 0``: a single linear layer after the pooling."""
    layers: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    c = in_channels
    if hidden > 0:
        layers += [nn.Linear(c, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)]
        c = hidden
    last = nn.Linear(c, out_features)
    nn.init.zeros_(last.bias)
    nn.init.normal_(last.weight, std=1e-3)
    return nn.Sequential(*layers, last)


def check_training_batch(head_name: str, batch: int, hidden: int, training: bool) -> None:
    """BatchNorm1d needs two samples per training batch: say so in the config's terms instead of torch's."""
    if training and hidden > 0 and batch < 2:
        raise ValueError(
            f"{head_name}: the hidden layer's BatchNorm needs at least 2 samples per training batch (got {batch}); "
            "raise data.init_args.batch_size or set model.head.init_args.hidden: 0"
        )


def keypoint_statistics(
    keypoints: torch.Tensor, visibility: torch.Tensor, input_size: tuple[int, int], default_std: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-keypoint mean and std of the visible training keypoints, in normalised units.

    keypoints: (N, K, 2) x,y input pixels; visibility: (N, K). returns mean (K, 2), std (K, 2). A keypoint seen
    fewer than twice keeps mean 0 (the centre) and ``default_std``; a std is floored at 1e-3 (a keypoint that
    never moves must not divide by 0).
    """
    u = pixels_to_normalized(keypoints.double(), input_size)  # (N, K, 2) normalised
    w = visibility.double().unsqueeze(-1)  # (N, K, 1)
    n = w.sum(0)  # (K, 1)
    mean = (u * w).sum(0) / n.clamp(min=1.0)  # (K, 2)
    std = (((u - mean) ** 2 * w).sum(0) / n.clamp(min=1.0)).sqrt().clamp(min=1e-3)  # (K, 2) population std
    seen = n >= 2  # (K, 1)
    mean = torch.where(seen, mean, torch.zeros_like(mean))
    std = torch.where(seen, std, torch.full_like(std, default_std))
    return mean.float(), std.float()
