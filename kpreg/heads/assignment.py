"""Learned cell assignment for the heatmap + offset head, after FreeAnchor (Zhang, Wan, Liu, Ji & Ye,
"FreeAnchor: Learning to Match Anchors for Visual Object Detection", NeurIPS 2019), as pure functions.

The offset head (``kpreg.heads.offset``) fixes which cells are positive: a disk of ``radius`` cells around the
keypoint. FreeAnchor instead lets the network choose among a *bag* of candidate cells: the keypoint only
needs *one* candidate that both fires and localises it well. Per keypoint ``k`` and candidate cell ``j``::

    bag         A_k   = cells within ``radius`` cells of the keypoint            (FreeAnchor: top-50 IoU anchors)
    P_cls(j)          = sigmoid(logit_j)
    P_loc(j)          = exp(−‖e_j‖² / 2τ²)  ("gaussian")   or   exp(−‖e_j‖₁ / τ)  ("laplace")
                        e_j = predicted offset at j − (keypoint − centre of j), in cells
                        (FreeAnchor: exp(−smooth-L1 of the box deltas), which "laplace" mirrors)
    positive    L⁺_k  = −α log MeanMax({P_cls(j) P_loc(j) : j ∈ A_k})
    MeanMax(X)        = Σ x w(x) / Σ w(x),   w(x) = 1 / (1 − x)
    negative    L⁻_k  = (1 − α) / |A_k| · Σ_{all cells j} FL(P_cls(j) · (1 − P_loc(j)))
    FL(p)             = −p^γ log(1 − p)                                       (focal loss with target 0)

MeanMax moves from the bag's mean (all ``x`` small, ``w ≈ 1``: every candidate is pushed up, which is what a
cold network needs) to its max (one ``x → 1`` dominates the weights: only the best candidate is trained)
as training proceeds. The weights are *not* detached, as in FreeAnchor's reference implementation.

The negative term is a focal loss on every cell of the keypoint's map, whose "background probability" is
discounted by the cell's localisation quality: a cell whose offset already points at the keypoint is not
pushed down. FreeAnchor takes the max of that quality over the objects of the class; here each map holds
exactly one keypoint (one instance, top-down), so the max over objects is that keypoint's ``P_loc``. As in
FreeAnchor the discount is computed without gradient: the negative term trains the classification only.
Unlike FreeAnchor (a saturated-linear function of IoU, normalised by the object's best anchor), the discount
is the absolute ``P_loc``: an offset has an exact target, so a good cell reaches ``P_loc = 1`` by itself.
Normalisation follows FreeAnchor (positive per object, negative by ``n·‖B‖``): per keypoint, the positive
term as is and the negative sum divided by the bag's size. α = 0.5 and γ = 2 are FreeAnchor's.

Everything is in heatmap *cells* (``kpreg.coords``); the offset head converts its offsets (stored in units
of its radius) before calling. Shapes: logits (B, K, h, w), offsets (B, K, 2, h, w) x then y, keypoints
(B, K, 2) x,y cells → (B, K) per-keypoint terms. A keypoint whose bag is empty (outside the grid) gets a
positive term of exactly 0 (nothing to choose from) and an ordinary negative term.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from kpreg.ops import at_least_float32, disk_and_offsets

Kernel = Literal["gaussian", "laplace"]
_EPS = 1e-12  # FreeAnchor's clamp of 1 − x in the MeanMax weights
_PROB_EPS = 1e-6  # keeps log(1 − p) finite in the focal term when p → 1


def candidate_bags(
    keypoints: torch.Tensor, size: tuple[int, int], radius: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, K, 2) x,y cells → bag mask (B, K, h, w) in {0, 1} (cells within ``radius`` cells) and target
    offsets (B, K, 2, h, w) = keypoint − cell centre, in cells (x then y)."""
    if radius < math.sqrt(0.5):
        # Below √2/2 the cell containing the keypoint can fall outside the bag.
        raise ValueError(f"assignment radius must be at least sqrt(2)/2 cells, got {radius}")
    return disk_and_offsets(keypoints, size, radius)


def localisation_likelihood(
    pred_offsets: torch.Tensor, target_offsets: torch.Tensor, tau: float, kernel: Kernel = "laplace"
) -> torch.Tensor:
    """P_loc per cell: (B, K, 2, h, w) predicted and target offsets in cells → (B, K, h, w) in (0, 1].

    ``gaussian``: exp(−‖e‖² / 2τ²); ``laplace``: exp(−(|e_x| + |e_y|) / τ). τ in cells.
    """
    if tau <= 0:
        raise ValueError(f"localisation tau must be positive, got {tau}")
    err = at_least_float32(pred_offsets) - at_least_float32(target_offsets)  # (B, K, 2, h, w) cells
    if kernel == "gaussian":
        return torch.exp(-err.pow(2).sum(dim=-3) / (2.0 * tau**2))
    if kernel == "laplace":
        return torch.exp(-err.abs().sum(dim=-3) / tau)
    raise ValueError(f"unknown localisation kernel '{kernel}' (choose gaussian or laplace)")


def mean_max(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """FreeAnchor's MeanMax over the last dim: Σ x w / Σ w with w = 1 / (1 − x), over entries where
    ``mask`` is 1. x: (..., n) in [0, 1]; returns (...); 0 where the mask is empty."""
    x = at_least_float32(x)
    m = mask.to(x.dtype)
    w = m / (1.0 - x).clamp(min=_EPS)  # (..., n) weights, 0 outside the bag
    return (w * x).sum(-1) / w.sum(-1).clamp(min=_EPS)


def free_anchor_terms(
    logits: torch.Tensor,
    offsets: torch.Tensor,
    keypoints: torch.Tensor,
    radius: float = 1.5,
    tau: float = 0.5,
    kernel: Kernel = "laplace",
    alpha: float = 0.5,
    gamma: float = 2.0,
) -> dict[str, torch.Tensor]:
    """FreeAnchor's positive (bag) and negative (focal background) terms for each keypoint.

    logits: (B, K, h, w).  offsets: (B, K, 2, h, w) predicted keypoint − cell centre, cells.
    keypoints: (B, K, 2) x,y cells.  radius, tau: cells.
    returns ``{"positive": (B, K), "negative": (B, K)}``, each already multiplied by its weight
    (α and 1 − α); the per-keypoint loss is their sum.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    logits = at_least_float32(logits)  # (B, K, h, w)
    size = (logits.shape[-2], logits.shape[-1])
    bag, target = candidate_bags(keypoints.to(logits.dtype), size, radius)  # (B, K, h, w), (B, K, 2, h, w)
    p_cls = torch.sigmoid(logits)  # (B, K, h, w)
    p_loc = localisation_likelihood(offsets, target, tau, kernel)  # (B, K, h, w)

    bag_flat = bag.flatten(-2)  # (B, K, h·w)
    bag_prob = mean_max((p_cls * p_loc).flatten(-2), bag_flat)  # (B, K)
    has_bag = bag_flat.sum(-1) > 0  # (B, K)
    # −log of a clamped probability: finite even if every candidate is hopeless; 0 where there is no bag.
    positive = torch.where(has_bag, -torch.log(bag_prob.clamp(min=_EPS)), torch.zeros_like(bag_prob))

    p_neg = (p_cls * (1.0 - p_loc.detach())).clamp(max=1.0 - _PROB_EPS)  # (B, K, h, w)
    focal = p_neg.pow(gamma) * -torch.log1p(-p_neg)  # (B, K, h, w), exactly 0 where p_neg = 0
    negative = focal.flatten(-2).sum(-1) / bag_flat.sum(-1).clamp(min=1.0)  # (B, K)
    return {"positive": alpha * positive, "negative": (1.0 - alpha) * negative}
