"""Soft-argmax / integral regression (Sun et al., "Integral Human Pose Regression", ECCV 2018), and the base of
DSNT (``kpreg.heads.dsnt``: this head with a regulariser on the map's shape).

Each joint's map is turned into a distribution by a softmax over all its cells (``temperature`` divides
the logits), and the coordinate is the expectation of the cell centres, in normalised units (cell ``j`` of ``w``
at ``(2j + 1) / w − 1``, ``kpreg.coords``; ``kpreg.ops.dsnt``). The loss is L1 on the coordinates, so the map
itself is never supervised: any distribution with the right mean is a perfect output. ``loss: oks`` replaces the
L1 by the OKS loss on the same expectation, in input pixels (``kpreg.heads.oks_option``).
"""

from __future__ import annotations

from typing import Literal, get_args

import torch

from kpreg.coords import normalized_to_pixels, pixels_to_cells, pixels_to_normalized
from kpreg.heads.neck import NeckKind, SpatialHead, map_spread
from kpreg.heads.oks_option import OKSLossOption
from kpreg.losses import CoordLoss, coord_loss_per_joint
from kpreg.oks_loss import OKS
from kpreg.ops import bilinear_splat, dsnt, softmax_2d


class SoftArgmaxHead(OKSLossOption, SpatialHead):
    """Args:
    output_stride, neck, neck_channels: see ``SpatialHead``.
    temperature: softmax temperature (probabilities ∝ exp(logit / temperature)).
    loss: coordinate loss, ``l1`` as in the paper (``l2``, ``smooth_l1``, ``euclidean`` also accepted).
        It is computed in normalised units ([-1, 1] across the input), so its scale does not depend on the
        input size or the stride. ``oks``: the OKS loss in input pixels (needs the dataset's OKS sigmas and the
        batch's ``scale``).
    """

    name = "softargmax"
    soft_coords_source = "decode"  # the expectation of the map
    variants = {"soft-argmax": {}, "soft-argmax (OKS loss)": {"loss": OKS}}

    def __init__(
        self,
        output_stride: int = 4,
        neck: NeckKind = "deconv",
        neck_channels: int | None = None,
        temperature: float = 1.0,
        loss: CoordLoss | Literal["oks"] = "l1",
    ) -> None:
        super().__init__(output_stride, neck, neck_channels)
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = temperature
        self.coord_loss = self.choose_loss(loss, get_args(CoordLoss))

    @property
    def coord_term(self) -> str:
        """The name of the coordinate loss term."""
        return "coord"

    def probabilities(self, raw: torch.Tensor) -> torch.Tensor:
        """(B, K, h, w) logits → (B, K, h, w) float32 (or float64) distributions."""
        return softmax_2d(raw, self.temperature)

    def shape_terms(self, probs: torch.Tensor, keypoints: torch.Tensor) -> dict[str, torch.Tensor]:
        """Loss terms on the maps' shape, each (B, K): none here (DSNT adds its regulariser)."""
        return {}

    def loss(
        self,
        raw: torch.Tensor,
        keypoints: torch.Tensor,
        visibility: torch.Tensor,
        scale: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        size = self.spec.input_size
        probs = self.probabilities(raw)  # (B, K, h, w)
        pred = dsnt(probs)  # (B, K, 2) normalised
        if self.uses_oks_loss:
            terms = self.oks_term(normalized_to_pixels(pred, size), keypoints, scale)  # (B, K)
        else:
            target = pixels_to_normalized(keypoints.float(), size)  # (B, K, 2) normalised
            terms = {self.coord_term: coord_loss_per_joint(pred, target, self.coord_loss)}  # (B, K)
        return terms | self.shape_terms(probs, keypoints)

    def decode(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        probs = self.probabilities(raw)  # (B, K, h, w)
        coords = normalized_to_pixels(dsnt(probs), self.spec.input_size)  # (B, K, 2) input pixels
        return coords, probs.flatten(-2).amax(-1)  # peak probability as the confidence

    def ideal_output(self, keypoints: torch.Tensor) -> torch.Tensor:
        # Logits = T·log p of the bilinear distribution, whose expectation is exactly the keypoint (inside
        # the hull of the cell centres); log 0 is floored so the logits stay finite.
        cells = pixels_to_cells(keypoints.float(), self.output_stride)  # (B, K, 2) x,y cells
        probs = bilinear_splat(cells, self.grid_size)  # (B, K, h, w)
        return self.temperature * probs.clamp(min=1e-30).log()

    def spread(self, raw: torch.Tensor) -> torch.Tensor:
        return map_spread(self.probabilities(raw), self.output_stride)  # (B, K) input pixels²

    def heatmaps(self, raw: torch.Tensor) -> torch.Tensor:
        return self.probabilities(raw)
