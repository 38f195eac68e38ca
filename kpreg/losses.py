"""Pure losses and the one reduction of per-keypoint losses.

Heads compute per-keypoint loss terms (B, K) with the functions below; ``reduce_keypoint_losses`` is the one place
where they are reduced to the optimised scalar (visibility, per-keypoint weights, online hard keypoint mining).
Invisible joints contribute nothing, and a batch with no visible joint gives an exact, finite zero (never 0/0)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from kpreg.ops import at_least_float32 as f32
from kpreg.ops import hat_1d, render_gaussian, variance_2d


def masked_mean(per_joint: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Weighted mean of a (B, K) per-joint loss over visible joints; 0 when none is visible."""
    weight = weight.to(per_joint.dtype)  # bool / int visibility → the loss's dtype
    return (per_joint * weight).sum() / weight.sum().clamp(min=1.0)


def reduce_keypoint_losses(
    per_keypoint: torch.Tensor,
    visibility: torch.Tensor,
    keypoint_weights: torch.Tensor | None = None,
    ohkm_topk: int | None = None,
) -> torch.Tensor:
    """The optimised loss from a (B, K) per-keypoint loss: the one reduction every head's loss goes through.

    * Without mining: the weighted mean over visible keypoints, ``Σ w_k v_bk l_bk / Σ w_k v_bk`` (``w`` = 1 without
      ``keypoint_weights``: the masked mean), so the scale of the weights does not matter, only their ratios.
    * ``ohkm_topk = k``: online hard keypoint mining (CPN, Chen et al. 2018; HRNet's ``use_ohkm``): per sample, the
      mean of its ``k`` largest (weighted) visible keypoint losses (all of them if fewer are visible), then the mean
      over the samples that have a visible keypoint. Only the mined keypoints receive gradient.
    """
    loss = f32(per_keypoint)  # (B, K)
    vis = visibility.to(loss.dtype)  # (B, K)
    w = vis if keypoint_weights is None else vis * keypoint_weights.to(loss)  # (B, K)
    # where(), not a product: an invisible keypoint's loss may be anything finite, never a NaN source here.
    weighted = torch.where(w > 0, loss * w, torch.zeros_like(loss))  # (B, K)
    if ohkm_topk is None:
        denom = w.sum()
        return weighted.sum() / torch.where(denom > 0, denom, torch.ones_like(denom))
    if ohkm_topk < 1:
        raise ValueError(f"ohkm_topk must be >= 1, got {ohkm_topk}")
    k = min(int(ohkm_topk), loss.shape[1])
    masked = torch.where(w > 0, weighted, torch.full_like(weighted, -torch.inf))  # (B, K) invisible never mined
    top, _ = masked.topk(k, dim=1)  # (B, k)
    chosen = torch.isfinite(top)  # (B, k) fewer than k visible: the rest are -inf
    per_sample = torch.where(chosen, top, torch.zeros_like(top)).sum(1) / chosen.sum(1).clamp(min=1)  # (B,)
    has_any = chosen.any(1)  # (B,)
    return per_sample.sum() / has_any.sum().clamp(min=1)


def heatmap_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B, K) mean squared error per joint between (B, K, h, w) heatmaps (SimpleBaseline's JointsMSELoss, up to
    its constant ½, before the reduction over visible joints)."""
    return (f32(pred) - f32(target)).pow(2).mean(dim=(-2, -1))


# ----------------------------------------------------------------------------------------------------
# Coordinate losses: (B, K, 2) predictions and targets in the same space → (B, K) per joint
# ----------------------------------------------------------------------------------------------------
CoordLoss = Literal["l1", "l2", "smooth_l1", "euclidean"]


def coord_loss_per_joint(
    pred: torch.Tensor, target: torch.Tensor, kind: CoordLoss, beta: float = 1.0
) -> torch.Tensor:
    """(B, K, 2) × (B, K, 2) → (B, K) per-joint loss, summed over x and y.

    ``l1``: |dx| + |dy|.  ``l2``: dx² + dy².  ``smooth_l1``: Huber-like with threshold ``beta`` per axis.
    ``euclidean``: sqrt(dx² + dy²) (DSNT's loss; its gradient is undefined at 0, so a 1e-12 floor keeps
    it finite when a prediction is exact).
    """
    diff = f32(pred) - f32(target)  # (B, K, 2)
    if kind == "l1":
        return diff.abs().sum(-1)
    if kind == "l2":
        return diff.pow(2).sum(-1)
    if kind == "smooth_l1":
        return F.smooth_l1_loss(f32(pred), f32(target), reduction="none", beta=beta).sum(-1)
    if kind == "euclidean":
        return (diff.pow(2).sum(-1) + 1e-12).sqrt()
    raise ValueError(f"unknown coordinate loss '{kind}' (choose l1, l2, smooth_l1 or euclidean)")


# ----------------------------------------------------------------------------------------------------
# Unsupervised losses on unlabelled video (kpreg.training.unsupervised): ε-insensitive distances → (…, K)
# ----------------------------------------------------------------------------------------------------
def epsilon_insensitive(distance: torch.Tensor, epsilon: float | torch.Tensor) -> torch.Tensor:
    """max(d − ε, 0): a distance ``d`` (…, K) costs nothing up to ``epsilon`` (a number, or (K,) per keypoint) and
    grows linearly beyond it (Lightning Pose's rectification of its temporal and PCA losses)."""
    return (f32(distance) - epsilon).clamp(min=0.0)


def temporal_difference(coords: torch.Tensor, epsilon: float) -> torch.Tensor:
    """(N, T, K, 2) keypoints of N clips of T consecutive frames → (N, T − 1, K): how far each keypoint moved
    between neighbouring frames beyond ``epsilon`` (same units as ``coords``), ``max(‖x_{t+1} − x_t‖ − ε, 0)``.
    A 1e-12 floor under the square root keeps the gradient finite for a keypoint that did not move."""
    step = f32(coords).diff(dim=1)  # (N, T - 1, K, 2)
    return epsilon_insensitive((step.pow(2).sum(-1) + 1e-12).sqrt(), epsilon)


# ----------------------------------------------------------------------------------------------------
# DSNT regularisers (Nibali et al. 2018), on (B, K, h, w) probability maps → (B, K)
# ----------------------------------------------------------------------------------------------------
def variance_regulariser(probs: torch.Tensor, sigma: float) -> torch.Tensor:
    """(Var[x] - σ²)² + (Var[y] - σ²)² per joint, variances and ``sigma`` in *heatmap cells*.

    Cells (dsntnn's current convention, not the paper's normalised units) make one ``sigma`` mean the same
    blob width whatever the map's aspect ratio; the paper's version differs by the constant (2 / size)⁴.
    """
    h, w = probs.shape[-2:]
    probs = f32(probs)
    xs = torch.arange(w, dtype=probs.dtype, device=probs.device)  # (w,) cells
    ys = torch.arange(h, dtype=probs.dtype, device=probs.device)  # (h,)
    var = variance_2d(probs, xs, ys)  # (B, K, 2) cells²
    return (var - sigma**2).pow(2).sum(-1)


def normalized_gaussian(centers: torch.Tensor, size: tuple[int, int], sigma: float) -> torch.Tensor:
    """(..., 2) x,y cell centres → (..., h, w) Gaussians of ``sigma`` cells summing to 1 over the grid."""
    g = render_gaussian(centers, size, sigma)  # (..., h, w)
    return g / g.flatten(-2).sum(-1)[..., None, None].clamp(min=1e-24)


def _kl(p: torch.Tensor, q: torch.Tensor, eps: float) -> torch.Tensor:
    # eps keeps log(0) and its gradient finite where a probability underflows (dsntnn uses 1e-24 too).
    return (p * ((p + eps).log() - (q + eps).log())).flatten(-2).sum(-1)


def js_divergence(p: torch.Tensor, q: torch.Tensor, eps: float = 1e-24) -> torch.Tensor:
    """Jensen–Shannon divergence (natural log, in [0, ln 2]) between (..., h, w) distributions → (...)."""
    p, q = f32(p), f32(q)
    m = 0.5 * (p + q)
    return 0.5 * _kl(p, m, eps) + 0.5 * _kl(q, m, eps)


def js_regulariser(probs: torch.Tensor, centers: torch.Tensor, sigma: float) -> torch.Tensor:
    """JS divergence between each (B, K, h, w) map and a normalised Gaussian of ``sigma`` cells centred on
    the ground truth ``centers`` (B, K, 2) x,y cells → (B, K) (dsntnn's ``js_reg_losses``)."""
    target = normalized_gaussian(centers, probs.shape[-2:], sigma)  # (B, K, h, w)
    return js_divergence(probs, target)


# ----------------------------------------------------------------------------------------------------
# Per-cell classification (heatmap + offset head), (B, K, h, w) logits and {0, 1} targets → (B, K)
# ----------------------------------------------------------------------------------------------------
def bce_per_joint(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy over the cells of each map (DeepLabCut's part-detection loss)."""
    bce = F.binary_cross_entropy_with_logits(f32(logits), f32(target), reduction="none")
    return bce.mean(dim=(-2, -1))


def focal_per_joint(
    logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0, alpha: float = 0.25
) -> torch.Tensor:
    """Sigmoid focal loss (Lin et al. 2017) summed over the cells of each map and divided by its number of
    positive cells (at least 1), as RetinaNet normalises by the number of positives."""
    logits, target = f32(logits), f32(target)
    p = torch.sigmoid(logits)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")  # (B, K, h, w)
    p_t = p * target + (1.0 - p) * (1.0 - target)
    alpha_t = alpha * target + (1.0 - alpha) * (1.0 - target)
    focal = alpha_t * (1.0 - p_t).pow(gamma) * bce
    return focal.sum(dim=(-2, -1)) / target.sum(dim=(-2, -1)).clamp(min=1.0)


# ----------------------------------------------------------------------------------------------------
# 1-D classification over bins (SimCC, multi-bin): (..., n) logits → (...) per axis and joint
# ----------------------------------------------------------------------------------------------------
def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """−Σ_j t_j log softmax(logits)_j over the last dim: cross-entropy to a soft (..., n) ``target``."""
    return -(f32(target) * torch.log_softmax(f32(logits), dim=-1)).sum(-1)


def kl_to_target(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """KL(target ‖ softmax(logits)) = Σ_j t_j (log t_j − log p_j) over the last dim (SimCC's loss).

    The same gradient as ``soft_cross_entropy`` (they differ by the target's entropy), but 0 at the optimum,
    so it reads as a distance. ``xlogy`` makes 0 · log 0 = 0 where the target underflows.
    """
    t = f32(target)
    return (torch.xlogy(t, t) - t * torch.log_softmax(f32(logits), dim=-1)).sum(-1)


def label_smoothed_cross_entropy(logits: torch.Tensor, index: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Cross-entropy to the one-hot of ``index`` (...) smoothed as in Szegedy et al. 2016 (and
    ``F.cross_entropy(label_smoothing=ε)``): target ``(1 − ε) · onehot + ε / n``."""
    n = logits.shape[-1]
    onehot = F.one_hot(index.long(), n).to(f32(logits).dtype)  # (..., n)
    return soft_cross_entropy(logits, (1.0 - smoothing) * onehot + smoothing / n)


def distribution_focal_loss(logits: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
    """GFL's distribution focal loss (Li et al. 2020) for a continuous ``position`` (...) in bins:
    with ``i = ⌊y⌋``, ``−((i + 1 − y) log S_i + (y − i) log S_{i+1})`` — the cross-entropy to the hat
    distribution on the two nearest bins. ``position`` is clamped to ``[0, n − 1]``."""
    n = logits.shape[-1]
    target = hat_1d(f32(position).clamp(0.0, n - 1.0), n)  # (..., n)
    return soft_cross_entropy(logits, target)


def softmax_focal_loss(logits: torch.Tensor, index: torch.Tensor, gamma: float = 2.0, alpha: float = 1.0) -> torch.Tensor:
    """Softmax focal loss (Lin et al. 2017, the multi-class form): ``−α (1 − p_t)^γ log p_t`` for the
    target class ``index`` (...). γ = 0, α = 1 is the cross-entropy; a scalar α only rescales it (the
    per-class α of the binary form has no natural meaning for equivalent bins)."""
    logp = torch.log_softmax(f32(logits), dim=-1)  # (..., n)
    logp_t = logp.gather(-1, index.long()[..., None]).squeeze(-1)  # (...)
    return -alpha * (1.0 - logp_t.exp()).pow(gamma) * logp_t
