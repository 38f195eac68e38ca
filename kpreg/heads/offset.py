"""Heatmap + offset: classify the cell, regress the residual — the multi-bin idea in 2-D, as DeepLabCut's
location refinement (Insafutdinov et al. 2016, Mathis et al. 2018) and UDP's combined classification /
offset target (Huang et al., "The Devil is in the Details: Delving into Unbiased Data Processing for Human
Pose Estimation", CVPR 2020).

Per joint the head predicts three maps: a per-cell logit and the x, y offsets from the cell centre to the
joint, in units of ``radius`` cells (so they lie in [-1, 1] where supervised). Which cells are positive is the
``assignment``:

* ``disk`` (DeepLabCut, UDP): the logit is "is the joint within ``radius`` cells of this cell?" (BCE or focal
  over the map), and the offsets are supervised (L1) on that disk, where the arg-max can land.
* ``free_anchor`` (FreeAnchor, Zhang et al., NeurIPS 2019, for keypoints: ``kpreg.heads.assignment``): the cells
  within ``radius`` cells are only *candidates*; the network chooses among them by the product of the cell's
  classification and localisation likelihoods (a mean-max that moves from the bag's mean early in training to
  its max later), and every cell of the map is pushed towards background by a focal term discounted by how well
  its offset already localises the joint. Offsets are trained only through the positive (bag) term.

Decoding (either assignment): arg-max cell + its predicted offset, converted to input pixels.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from kpreg.coords import cells_to_pixels, pixels_to_cells
from kpreg.heads.assignment import Kernel, free_anchor_terms
from kpreg.heads.base import HeadSpec
from kpreg.heads.neck import NeckKind, SpatialHead
from kpreg.losses import bce_per_joint, focal_per_joint
from kpreg.ops import argmax_2d, disk_and_offsets, gather_2d, softmax_2d

ClassLoss = Literal["bce", "focal"]
Assignment = Literal["disk", "free_anchor"]
# RetinaNet's (and FreeAnchor's) prior: classification logits start at P(positive) = 0.01, so that the focal
# background term over every cell does not swamp the few candidates in the first steps.
FREE_ANCHOR_PRIOR = 0.01
# The stand-in for the arg-max cell in the unsupervised losses: Σ_cells softmax(logit / T) (cell + offset). Every cell
# near the joint points at it through its offset, so the weights among them matter little; T = 0.5 keeps the mass of
# the far cells, whose offsets are not trained, negligible (logits ≈ +3 near the joint, ≈ −7 far from it).
SOFT_TEMPERATURE = 0.5


class OffsetHead(SpatialHead):
    """Args:
    output_stride, neck, neck_channels: see ``SpatialHead``.
    radius: in heatmap cells: the positive disk (``disk``) or the bag of candidate cells (``free_anchor``), and
        the unit of the offsets; at least √2 / 2, so that the cell containing the joint is always in it.
    cls_loss: ``disk`` only: ``bce`` (DeepLabCut) or ``focal`` (sigmoid focal loss, γ = 2, α = 0.25).
    offset_weight: ``disk`` only: weight of the offset L1 loss relative to the classification loss.
    assignment: ``disk`` or ``free_anchor`` (learned cell assignment, see the module docstring).
    tau: ``free_anchor``: scale of the localisation likelihood, cells (P_loc = exp(−‖e‖₁ / τ) for ``laplace``).
    kernel: ``free_anchor``: ``laplace`` (FreeAnchor's exp(−smooth-L1), the L1 of the disk's offsets) or
        ``gaussian``.
    alpha, gamma: ``free_anchor``: FreeAnchor's weight of the positive term (1 − α for the negative) and the
        focal exponent of the negative term.
    """

    maps_per_keypoint = 3  # logit, offset x, offset y
    name = "offset"
    soft_coords_source = f"the softmax(logit / {SOFT_TEMPERATURE})-weighted mean of every cell's own estimate (cell + offset)"
    variants = {"heatmap + offset": {}, "heatmap + offset (FreeAnchor assignment)": {"assignment": "free_anchor"}}

    def __init__(
        self,
        output_stride: int = 4,
        neck: NeckKind = "deconv",
        neck_channels: int | None = None,
        radius: float = 1.5,
        cls_loss: ClassLoss = "bce",
        offset_weight: float = 1.0,
        assignment: Assignment = "disk",
        tau: float = 0.5,
        kernel: Kernel = "laplace",
        alpha: float = 0.5,
        gamma: float = 2.0,
    ) -> None:
        super().__init__(output_stride, neck, neck_channels)
        if radius < math.sqrt(0.5):
            raise ValueError(f"radius must be at least sqrt(2)/2 cells, got {radius}")
        if cls_loss not in ("bce", "focal"):
            raise ValueError(f"unknown cls_loss '{cls_loss}' (choose bce or focal)")
        if assignment not in ("disk", "free_anchor"):
            raise ValueError(f"unknown assignment '{assignment}' (choose disk or free_anchor)")
        if kernel not in ("laplace", "gaussian"):
            raise ValueError(f"unknown kernel '{kernel}' (choose laplace or gaussian)")
        if tau <= 0 or not 0.0 <= alpha <= 1.0 or gamma < 0:
            raise ValueError(f"need tau > 0, alpha in [0, 1] and gamma >= 0, got {tau}, {alpha}, {gamma}")
        self.radius = radius
        self.cls_loss = cls_loss
        self.offset_weight = offset_weight
        self.assignment: Assignment = assignment
        self.tau = tau
        self.kernel: Kernel = kernel
        self.alpha = alpha
        self.gamma = gamma

    def _build(self, spec: HeadSpec) -> None:
        super()._build(spec)
        if self.assignment == "free_anchor":
            prior_logit = -math.log((1.0 - FREE_ANCHOR_PRIOR) / FREE_ANCHOR_PRIOR)  # −ln 99
            with torch.no_grad():  # channel k·3 + 0 is keypoint k's logit map (forward's view)
                self.final.bias.view(spec.num_keypoints, 3)[:, 0].fill_(prior_logit)

    def targets(self, keypoints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, K, 2) x,y input pixels → disk (B, K, h, w) in {0, 1}, offsets (B, K, 2, h, w) in radius units."""
        cells = pixels_to_cells(keypoints.float(), self.output_stride)  # (B, K, 2) x,y cells
        disk, offsets = disk_and_offsets(cells, self.grid_size, self.radius)
        return disk, offsets / self.radius

    def loss(
        self,
        raw: torch.Tensor,
        keypoints: torch.Tensor,
        visibility: torch.Tensor,
        scale: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        raw = raw.float()  # (B, K, 3, h, w)
        logits = raw[:, :, 0]  # (B, K, h, w)
        if self.assignment == "free_anchor":
            cells = pixels_to_cells(keypoints.float(), self.output_stride)  # (B, K, 2) x,y cells
            return free_anchor_terms(logits, raw[:, :, 1:] * self.radius, cells, self.radius, self.tau,
                                     self.kernel, self.alpha, self.gamma)  # positive, negative: (B, K) each
        disk, offsets = self.targets(keypoints)  # (B, K, h, w), (B, K, 2, h, w)
        if self.cls_loss == "bce":
            cls = bce_per_joint(logits, disk)  # (B, K)
        else:
            cls = focal_per_joint(logits, disk)
        # L1 on the offsets of the disk's cells, averaged over those cells (DeepLabCut masks the same way).
        err = (raw[:, :, 1:] - offsets).abs().sum(dim=2)  # (B, K, h, w)
        off = (err * disk).sum(dim=(-2, -1)) / disk.sum(dim=(-2, -1)).clamp(min=1.0)  # (B, K)
        return {"classification": cls, "offset": self.offset_weight * off}

    def decode(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw = raw.float()  # (B, K, 3, h, w)
        cells, max_logit = argmax_2d(raw[:, :, 0])  # (B, K, 2) integer cells, (B, K)
        offset = gather_2d(raw[:, :, 1:], cells) * self.radius  # (B, K, 2) cells
        return cells_to_pixels(cells + offset, self.output_stride), torch.sigmoid(max_logit)

    def soft_coords(self, raw: torch.Tensor) -> torch.Tensor:
        raw = raw.float()  # (B, K, 3, h, w)
        probs = softmax_2d(raw[:, :, 0], SOFT_TEMPERATURE)  # (B, K, h, w)
        h, w = probs.shape[-2:]
        xs = torch.arange(w, dtype=probs.dtype, device=probs.device)  # (w,) cells
        ys = torch.arange(h, dtype=probs.dtype, device=probs.device)[:, None]  # (h, 1)
        x = (probs * (xs + raw[:, :, 1] * self.radius)).sum((-2, -1))  # (B, K) cells
        y = (probs * (ys + raw[:, :, 2] * self.radius)).sum((-2, -1))
        return cells_to_pixels(torch.stack((x, y), dim=-1), self.output_stride)  # (B, K, 2) input pixels

    def soft_round_trip_tolerance(self) -> float:
        return 1e-3  # the ideal output's offsets are exact on every cell

    def ideal_output(self, keypoints: torch.Tensor) -> torch.Tensor:
        # A confident logit on the cell containing the joint, exact offsets on every cell.
        cells = pixels_to_cells(keypoints.float(), self.output_stride)  # (B, K, 2) x,y cells
        h, w = self.grid_size
        nearest = cells.round().clamp(min=0)  # (B, K, 2)
        nearest = torch.minimum(nearest, nearest.new_tensor([w - 1, h - 1]))
        onehot = (torch.arange(w, device=cells.device) == nearest[..., 0:1].long()).float()[..., None, :] * (
            torch.arange(h, device=cells.device) == nearest[..., 1:2].long()
        ).float()[..., :, None]  # (B, K, h, w)
        _, offsets = disk_and_offsets(cells, self.grid_size, self.radius)  # (B, K, 2, h, w) cells
        return torch.cat((20.0 * onehot[:, :, None] - 10.0, offsets / self.radius), dim=2)  # (B, K, 3, h, w)

    def heatmaps(self, raw: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(raw[:, :, 0].float())
