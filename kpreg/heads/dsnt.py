"""DSNT (Nibali et al., "Numerical Coordinate Regression with Convolutional Neural Networks", 2018).

A flat softmax makes each joint's map a distribution; DSNT reads the coordinate as its expectation in
normalised units (cell ``j`` of ``w`` at ``(2j + 1) / w - 1``, as dsntnn and ``kpreg.coords``). The loss
is the Euclidean distance to the ground truth plus ``reg_weight`` (the paper's λ) times a regulariser
on the map's shape: ``variance`` pulls Var[x], Var[y] towards σ², ``js`` pulls the map towards a
normalised Gaussian of σ centred on the ground truth (the paper's best). σ (``reg_sigma``) is in heatmap
cells, as in dsntnn (the paper used σ = 1 cell); the regulariser then asks for the same blob, measured in
cells, at every stride. ``loss: oks`` replaces the Euclidean distance by the OKS loss on the same expectation,
in input pixels (``kpreg.oks_loss``); the regulariser is kept.
"""

from __future__ import annotations

from typing import Literal

import torch

from kpreg.coords import normalized_to_pixels, pixels_to_cells, pixels_to_normalized
from kpreg.heads.base import HeadSpec
from kpreg.heads.neck import NeckKind, SpatialHead, map_spread
from kpreg.losses import CoordLoss, coord_loss_per_joint, js_regulariser, variance_regulariser
from kpreg.oks_loss import OKS, check_oks_sigmas, oks_loss
from kpreg.ops import bilinear_splat, dsnt, softmax_2d

Regulariser = Literal["none", "variance", "js"]


class DSNTHead(SpatialHead):
    """Args:
    output_stride, neck, neck_channels: see ``SpatialHead``.
    regulariser: ``none``, ``variance`` or ``js`` (Jensen–Shannon divergence to a Gaussian).
    reg_sigma: σ of the regulariser, in heatmap cells.
    reg_weight: λ, the regulariser's weight.
    loss: the coordinate loss in normalised units, ``euclidean`` as in the paper (``l1``, ``l2``, ``smooth_l1``
        also accepted), or ``oks``: the OKS loss in input pixels (needs the dataset's OKS sigmas and the
        batch's ``scale``).
    """

    name = "dsnt"
    variants = {"DSNT (JS)": {}, "DSNT (JS, OKS loss)": {"loss": OKS}}

    def __init__(
        self,
        output_stride: int = 4,
        neck: NeckKind = "deconv",
        neck_channels: int | None = None,
        regulariser: Regulariser = "js",
        reg_sigma: float = 1.0,
        reg_weight: float = 1.0,
        loss: CoordLoss | Literal["oks"] = "euclidean",
    ) -> None:
        super().__init__(output_stride, neck, neck_channels)
        if regulariser not in ("none", "variance", "js"):
            raise ValueError(f"unknown regulariser '{regulariser}' (choose none, variance or js)")
        if loss != OKS:
            coord_loss_per_joint(torch.zeros(1, 1, 2), torch.zeros(1, 1, 2), loss)  # fail early on a bad name
        self.regulariser = regulariser
        self.reg_sigma = reg_sigma
        self.reg_weight = reg_weight
        self.coord_loss = loss

    def _build(self, spec: HeadSpec) -> None:
        if self.coord_loss == OKS:
            check_oks_sigmas(spec.sigmas, spec.num_keypoints, "DSNTHead: loss 'oks'")
        super()._build(spec)

    def loss(
        self,
        raw: torch.Tensor,
        keypoints: torch.Tensor,
        visibility: torch.Tensor,
        scale: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        probs = softmax_2d(raw)  # (B, K, h, w) float32
        pred = dsnt(probs)  # (B, K, 2) normalised
        if self.coord_loss == OKS:
            pred_px = normalized_to_pixels(pred, self.spec.input_size)  # (B, K, 2) input pixels
            terms = {"oks": oks_loss(pred_px, keypoints, scale, self.spec.sigmas)}  # (B, K)
        else:
            target = pixels_to_normalized(keypoints.float(), self.spec.input_size)  # (B, K, 2) normalised
            terms = {self.coord_loss: coord_loss_per_joint(pred, target, self.coord_loss)}  # (B, K)
        if self.regulariser == "variance":
            terms["regulariser"] = self.reg_weight * variance_regulariser(probs, self.reg_sigma)  # (B, K)
        elif self.regulariser == "js":
            centers = pixels_to_cells(keypoints.float(), self.output_stride)  # (B, K, 2) x,y cells
            terms["regulariser"] = self.reg_weight * js_regulariser(probs, centers, self.reg_sigma)  # (B, K)
        return terms

    def decode(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        probs = softmax_2d(raw)  # (B, K, h, w)
        coords = normalized_to_pixels(dsnt(probs), self.spec.input_size)  # (B, K, 2) input pixels
        return coords, probs.flatten(-2).amax(-1)  # peak probability as the confidence

    def ideal_output(self, keypoints: torch.Tensor) -> torch.Tensor:
        # log of the bilinear distribution: exact expectation inside the hull of the cell centres.
        cells = pixels_to_cells(keypoints.float(), self.output_stride)  # (B, K, 2) x,y cells
        return bilinear_splat(cells, self.grid_size).clamp(min=1e-30).log()  # (B, K, h, w) logits

    def spread(self, raw: torch.Tensor) -> torch.Tensor:
        return map_spread(softmax_2d(raw), self.output_stride)  # (B, K) input pixels²

    def heatmaps(self, raw: torch.Tensor) -> torch.Tensor:
        return softmax_2d(raw)
