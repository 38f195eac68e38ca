"""Soft-argmax / integral regression (Sun et al., "Integral Human Pose Regression", ECCV 2018).

Each joint's map is turned into a distribution by a softmax over all its cells (``temperature`` divides
the logits), and the coordinate is the expectation of the cell grid. The loss is L1 on the coordinates,
so the map itself is never supervised: any distribution with the right mean is a perfect output. ``loss: oks``
replaces the L1 by the OKS loss on the same expectation, in input pixels (``kpreg.oks_loss``).
"""

from __future__ import annotations

from typing import Literal

import torch

from kpreg.coords import cells_to_pixels, pixels_to_cells, pixels_to_normalized
from kpreg.heads.base import HeadSpec
from kpreg.heads.neck import NeckKind, SpatialHead, map_spread
from kpreg.losses import CoordLoss, coord_loss_per_joint
from kpreg.oks_loss import OKS, check_oks_sigmas, oks_loss
from kpreg.ops import bilinear_splat, soft_argmax, softmax_2d


class SoftArgmaxHead(SpatialHead):
    """Args:
    output_stride, neck, neck_channels: see ``SpatialHead``.
    temperature: softmax temperature (probabilities ∝ exp(logit / temperature)).
    loss: coordinate loss, ``l1`` as in the paper (``l2``, ``smooth_l1``, ``euclidean`` also accepted).
        It is computed in normalised units ([-1, 1] across the input), so its scale does not depend on the
        input size or the stride. ``oks``: the OKS loss in input pixels (needs the dataset's OKS sigmas and the
        batch's ``scale``).
    """

    name = "softargmax"
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
        if loss != OKS:
            coord_loss_per_joint(torch.zeros(1, 1, 2), torch.zeros(1, 1, 2), loss)  # fail early on a bad name
        self.temperature = temperature
        self.coord_loss = loss

    def _build(self, spec: HeadSpec) -> None:
        if self.coord_loss == OKS:
            check_oks_sigmas(spec.sigmas, spec.num_keypoints, "SoftArgmaxHead: loss 'oks'")
        super()._build(spec)

    def _coords(self, raw: torch.Tensor) -> torch.Tensor:
        cells = soft_argmax(raw.float(), self.temperature)  # (B, K, 2) x,y cells
        return cells_to_pixels(cells, self.output_stride)  # (B, K, 2) input pixels

    def loss(
        self,
        raw: torch.Tensor,
        keypoints: torch.Tensor,
        visibility: torch.Tensor,
        scale: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        if self.coord_loss == OKS:
            return {"oks": oks_loss(self._coords(raw), keypoints, scale, self.spec.sigmas)}  # (B, K)
        size = self.spec.input_size
        pred = pixels_to_normalized(self._coords(raw), size)  # (B, K, 2) normalised
        target = pixels_to_normalized(keypoints.float(), size)  # (B, K, 2) normalised
        return {"coord": coord_loss_per_joint(pred, target, self.coord_loss)}  # (B, K)

    def decode(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        probs = softmax_2d(raw, self.temperature)  # (B, K, h, w)
        return self._coords(raw), probs.flatten(-2).amax(-1)  # peak probability as the confidence

    def ideal_output(self, keypoints: torch.Tensor) -> torch.Tensor:
        # Logits = T·log p of the bilinear distribution, whose expectation is exactly the keypoint (inside
        # the hull of the cell centres); log 0 is floored so the logits stay finite.
        cells = pixels_to_cells(keypoints.float(), self.output_stride)  # (B, K, 2) x,y cells
        probs = bilinear_splat(cells, self.grid_size)  # (B, K, h, w)
        return self.temperature * probs.clamp(min=1e-30).log()

    def spread(self, raw: torch.Tensor) -> torch.Tensor:
        return map_spread(softmax_2d(raw, self.temperature), self.output_stride)  # (B, K) input pixels²

    def heatmaps(self, raw: torch.Tensor) -> torch.Tensor:
        return softmax_2d(raw, self.temperature)
