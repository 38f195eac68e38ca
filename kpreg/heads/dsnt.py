"""DSNT (Nibali et al., "Numerical Coordinate Regression with Convolutional Neural Networks", 2018).

Soft-argmax (``kpreg.heads.softargmax``, temperature 1) with the paper's loss and a regulariser. A flat softmax
makes each joint's map a distribution and the coordinate is its expectation in normalised units (cell ``j`` of
``w`` at ``(2j + 1) / w - 1``, as dsntnn and ``kpreg.coords``). The loss is the Euclidean distance to the ground
truth plus ``reg_weight`` (the paper's λ) times a regulariser on the map's shape: ``variance`` pulls Var[x],
Var[y] towards σ², ``js`` pulls the map towards a normalised Gaussian of σ centred on the ground truth (the
paper's best). σ (``reg_sigma``) is in heatmap cells, as in dsntnn (the paper used σ = 1 cell); the regulariser
then asks for the same blob, measured in cells, at every stride. ``loss: oks`` replaces the Euclidean distance
by the OKS loss on the same expectation, in input pixels (``kpreg.heads.oks_option``); the regulariser is kept.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch

from kpreg.coords import pixels_to_cells
from kpreg.heads.neck import NeckKind
from kpreg.heads.softargmax import SoftArgmaxHead
from kpreg.losses import CoordLoss, js_regulariser, variance_regulariser
from kpreg.oks_loss import OKS

Regulariser = Literal["none", "variance", "js"]


class DSNTHead(SoftArgmaxHead):
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
        super().__init__(output_stride, neck, neck_channels, temperature=1.0, loss=loss)
        if regulariser not in get_args(Regulariser):
            raise ValueError(f"unknown regulariser '{regulariser}' (choose none, variance or js)")
        self.regulariser = regulariser
        self.reg_sigma = reg_sigma
        self.reg_weight = reg_weight

    @property
    def coord_term(self) -> str:
        return self.coord_loss  # named after the loss, as in the paper ("euclidean")

    def shape_terms(self, probs: torch.Tensor, keypoints: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.regulariser == "variance":
            return {"regulariser": self.reg_weight * variance_regulariser(probs, self.reg_sigma)}  # (B, K)
        if self.regulariser == "js":
            centers = pixels_to_cells(keypoints.float(), self.output_stride)  # (B, K, 2) x,y cells
            return {"regulariser": self.reg_weight * js_regulariser(probs, centers, self.reg_sigma)}  # (B, K)
        return {}
