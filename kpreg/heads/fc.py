"""Direct regression with fully connected layers (DeepPose, Toshev & Szegedy, CVPR 2014).

Global average pooling of the backbone features, then a hidden layer (Linear → BatchNorm → ReLU) and a
linear layer to 2K outputs predict the *standardised* normalised coordinates ``(u - mean) / std`` of each
joint, where ``u`` ∈ [-1, 1]
(``kpreg.coords``) and ``mean``, ``std`` (K, 2) are running statistics of the visible training targets
(updated like BatchNorm's, frozen in eval mode, saved with the model). Standardising lets one weight
decay, learning rate and loss threshold fit every joint, whatever its typical position and spread.

``loss: oks`` trains on the OKS loss instead (``kpreg.heads.oks_option``: ``1 − exp(−d² / (2 s² k²))`` per
keypoint, in input pixels, with the dataset's OKS sigmas and each sample's scale): the standardised output is mapped back to
pixels (affine, so the gradient flows through it) and compared there.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from kpreg.coords import normalized_to_pixels, pixels_to_normalized
from kpreg.heads.base import Head, HeadSpec
from kpreg.heads.oks_option import OKSLossOption
from kpreg.losses import coord_loss_per_joint
from kpreg.oks_loss import OKS

FCLoss = Literal["l1", "l2", "smooth_l1", "oks"]


class FCHead(OKSLossOption, Head):
    """Args:
    hidden: width of the hidden layer, Linear → BatchNorm → ReLU (0 = a single linear layer). With a hidden
        layer, training batches need at least 2 samples (per device).
    loss: ``l1``, ``l2`` or ``smooth_l1`` on the standardised coordinates, or ``oks`` (the OKS loss in input
        pixels; needs the dataset's OKS sigmas and the batch's ``scale``).
    momentum: update rate of the running mean / std of the targets.
    init_std: the std used before any statistics are seen (normalised units).
    """

    name = "fc"
    soft_coords_source = "decode"  # the regressed coordinates
    variants = {"FC": {}, "FC (OKS loss)": {"loss": OKS}}

    def __init__(
        self, hidden: int = 256, loss: FCLoss = "l1", momentum: float = 0.01, init_std: float = 0.5
    ) -> None:
        super().__init__()
        self.hidden = hidden
        self.coord_loss = self.choose_loss(loss, ("l1", "l2", "smooth_l1"))
        self.momentum = momentum
        self.init_std = init_std

    def _build(self, spec: HeadSpec) -> None:
        k, c = spec.num_keypoints, spec.in_channels
        layers: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        if self.hidden > 0:
            # BatchNorm before the ReLU is what keeps the hidden units alive. Pooled backbone features are
            # positive and vary little between images (std ≈ half their mean), so without it each unit's
            # pre-activation has nearly the same sign for every image: a unit that AdamW pushes negative is
            # off for the whole data set, gets no gradient and never recovers. Measured on the synthetic
            # study (lr 6e-3): 96–99 % of the 256 units were dead after training, and one seed of two never
            # left the mean pose (PCKh@0.5 6.8). Centring over the batch keeps every unit active on part of it.
            layers += [nn.Linear(c, self.hidden, bias=False), nn.BatchNorm1d(self.hidden), nn.ReLU(inplace=True)]
            c = self.hidden
        last = nn.Linear(c, 2 * k)
        # Start at the mean pose (standardised 0) instead of a random one.
        nn.init.zeros_(last.bias)
        nn.init.normal_(last.weight, std=1e-3)
        self.mlp = nn.Sequential(*layers, last)
        self.register_buffer("target_mean", torch.zeros(k, 2))  # (K, 2) normalised
        self.register_buffer("target_std", torch.full((k, 2), float(self.init_std)))  # (K, 2) normalised
        self.register_buffer("stats_seen", torch.zeros((), dtype=torch.bool))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        b = features.shape[0]
        if self.training and self.hidden > 0 and b < 2:
            raise ValueError("FCHead: the hidden layer's BatchNorm needs at least 2 samples per training batch "
                             f"(got {b}); raise data.init_args.batch_size or set model.head.init_args.hidden: 0")
        return self.mlp(features).view(b, self.spec.num_keypoints, 2)  # (B, K, 2) standardised

    def standardise(self, keypoints: torch.Tensor) -> torch.Tensor:
        """(B, K, 2) x,y input pixels → (B, K, 2) standardised normalised coordinates."""
        u = pixels_to_normalized(keypoints.float(), self.spec.input_size)  # (B, K, 2) normalised
        return (u - self.target_mean) / self.target_std

    def destandardise(self, raw: torch.Tensor) -> torch.Tensor:
        """(B, K, 2) standardised → (B, K, 2) x,y input pixels."""
        u = raw.float() * self.target_std + self.target_mean  # (B, K, 2) normalised
        return normalized_to_pixels(u, self.spec.input_size)

    @torch.no_grad()
    def _update_stats(self, keypoints: torch.Tensor, visibility: torch.Tensor) -> None:
        u = pixels_to_normalized(keypoints.float(), self.spec.input_size)  # (B, K, 2) normalised
        w = visibility.float().unsqueeze(-1)  # (B, K, 1)
        n = w.sum(0)  # (K, 1) visible count per joint
        seen = n > 1  # joints with enough samples for a variance in this batch
        mean = (u * w).sum(0) / n.clamp(min=1.0)  # (K, 2)
        var = ((u - mean) ** 2 * w).sum(0) / n.clamp(min=1.0)
        std = var.sqrt().clamp(min=1e-3)  # a joint that never moves must not divide by 0
        # The first batch sets the statistics; later ones move them by ``momentum`` (BatchNorm's rule).
        m = 1.0 if not bool(self.stats_seen) else self.momentum
        self.target_mean.copy_(torch.where(seen, (1 - m) * self.target_mean + m * mean, self.target_mean))
        self.target_std.copy_(torch.where(seen, (1 - m) * self.target_std + m * std, self.target_std))
        if bool(seen.any()):
            self.stats_seen.fill_(True)

    def loss(
        self,
        raw: torch.Tensor,
        keypoints: torch.Tensor,
        visibility: torch.Tensor,
        scale: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        if self.training:
            self._update_stats(keypoints, visibility)
        if self.uses_oks_loss:
            return self.oks_term(self.destandardise(raw), keypoints, scale)  # (B, K)
        return {"coord": coord_loss_per_joint(raw.float(), self.standardise(keypoints), self.coord_loss)}  # (B, K)

    def ideal_output(self, keypoints: torch.Tensor) -> torch.Tensor:
        return self.standardise(keypoints)  # (B, K, 2): the loss's own target

    has_confidence = False  # decode's confidence is a constant 1

    def decode(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        coords = self.destandardise(raw)  # (B, K, 2) input pixels
        # Direct regression has no notion of confidence: every joint scores 1.
        return coords, torch.ones(coords.shape[:2], device=coords.device)
