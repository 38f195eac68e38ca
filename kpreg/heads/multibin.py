"""Multi-bin classification + residual regression per axis (the MultiBin loss of Mousavian et al.,
"3D Bounding Box Estimation Using Deep Learning and Geometry", CVPR 2017, applied to image coordinates;
the expectation decoding of 3D-RCNN, Kundu et al., CVPR 2018).

Geometry, per axis of length ``L`` input pixels (``W`` for x, ``H`` for y), with ``N = num_bins``::

    spacing        s   = L / N
    bin centre     c_b = −0.5 + (b + 0.5) · s                    (b = 0 … N − 1; tiles [−0.5, L − 0.5])
    half-width     h   = (1 + overlap) · s / 2                   (overlap 0: a partition; 0.5: neighbours share s/2)
    bin b covers x when |x − c_b| ≤ h

Targets: the class is the bin whose centre is nearest (it always covers x); the residual of *every* bin is
``(x − c_b) / h`` (in half-widths, so ≈ [−1, 1] where it covers) and is regressed with smooth-L1 on every
bin that covers x — with overlap, a neighbouring bin chosen by mistake still carries a trained residual.
Classification: softmax cross-entropy, or softmax focal loss ``−α (1 − p_t)^γ log p_t``.

Hierarchical option (``sub_bins = M > 0``): each coarse bin's extent ``[c_b − h, c_b + h]`` is split into
``M`` equal, non-overlapping sub-bins of half-width ``h' = h / M`` and centres
``c_{b,m} = c_b − h + (m + 0.5) · 2h / M``. For every coarse bin b that covers x, the sub-bin containing x,
``m_b = clamp(⌊(x − c_b + h) / (2h / M)⌋, 0, M − 1)``, is classified (softmax cross-entropy over b's M
sub-bin logits) and its residual ``(x − c_{b,m_b}) / h'`` regressed with smooth-L1. Decoding then uses,
inside a coarse bin b, the estimate ``μ_b = c_{b,m} + h' · r_{b,m}`` with ``m`` b's most confident sub-bin,
instead of the coarse ``μ_b = c_b + h · r_b``.

Decoding: ``argmax`` — ``μ_b`` of the most confident coarse bin; ``expectation`` — ``Σ_b p_b μ_b``.
Confidence: geometric mean of the x and y peak bin probabilities. Spread: the variance of the mixture
``Σ_b p_b δ(μ_b)``, ``Σ_b p_b (μ_b − μ)²``, summed over x and y, input pixels².

Raw output: (B, K, 2, D), axis 0 = x, 1 = y, with D = N logits, N residuals, then (hierarchical) N·M sub-bin
logits and N·M sub-bin residuals.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from kpreg.heads.base import HeadSpec
from kpreg.heads.neck import FlattenHead, NeckKind
from kpreg.losses import softmax_focal_loss
from kpreg.ops import expectation_1d, variance_1d

ClassLoss = Literal["ce", "focal"]
Decoder = Literal["argmax", "expectation"]
BETA = 1.0 / 9.0  # smooth-L1 threshold (Fast R-CNN's): residuals live in ≈ [−1, 1], L1-like beyond 1/9


class MultiBinHead(FlattenHead):
    """Args:
    output_stride, neck, neck_channels: see ``SpatialHead`` (the map each keypoint's vector is read from).
    num_bins: bins per axis over the input extent.
    overlap: extra width of each bin as a fraction of the spacing, shared with its neighbours (0 … 1).
    cls_loss: ``ce`` (softmax cross-entropy) or ``focal``; ``alpha``, ``gamma`` are the focal loss's.
    residual_weight: weight of the smooth-L1 residual loss relative to the classification loss.
    sub_bins: M > 0 enables the hierarchical second stage with M sub-bins per bin; 0 disables it.
    decoder: ``argmax`` or ``expectation``.
    """

    name = "multibin"
    soft_coords_source = "the expectation over its bins (decode with decoder: expectation)"
    variants = {
        "multi-bin (argmax)": {},
        "multi-bin (expectation)": {"decoder": "expectation"},
        "multi-bin (hierarchical, 4 sub-bins)": {"sub_bins": 4},
    }

    def __init__(
        self,
        output_stride: int = 4,
        neck: NeckKind = "deconv",
        neck_channels: int | None = None,
        num_bins: int = 8,
        overlap: float = 0.5,
        cls_loss: ClassLoss = "ce",
        alpha: float = 1.0,
        gamma: float = 2.0,
        residual_weight: float = 1.0,
        sub_bins: int = 0,
        decoder: Decoder = "argmax",
    ) -> None:
        super().__init__(output_stride, neck, neck_channels)
        if cls_loss not in ("ce", "focal"):
            raise ValueError(f"unknown cls_loss '{cls_loss}' (choose ce or focal)")
        if decoder not in ("argmax", "expectation"):
            raise ValueError(f"unknown decoder '{decoder}' (choose argmax or expectation)")
        if num_bins < 1 or sub_bins < 0 or not 0.0 <= overlap <= 1.0:
            raise ValueError("need num_bins >= 1, sub_bins >= 0 and overlap in [0, 1]")
        self.num_bins = num_bins
        self.overlap = overlap
        self.cls_loss = cls_loss
        self.alpha = alpha
        self.gamma = gamma
        self.residual_weight = residual_weight
        self.sub_bins = sub_bins
        self.decoder = decoder

    def out_features(self, spec: HeadSpec) -> int:
        n, m = self.num_bins, self.sub_bins
        self.per_axis = 2 * n + 2 * n * m
        return 2 * self.per_axis

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return super().forward(features).unflatten(-1, (2, self.per_axis))  # (B, K, 2, D)

    # ---- geometry ------------------------------------------------------------------------------------
    def _geometry(self, length: int, like: torch.Tensor) -> tuple[torch.Tensor, float, torch.Tensor, float]:
        """Bin centres (N,), half-width, sub-bin centres (N, M), sub half-width; input pixels."""
        n, m = self.num_bins, max(self.sub_bins, 1)
        s = length / n
        centres = -0.5 + (torch.arange(n, dtype=like.dtype, device=like.device) + 0.5) * s  # (N,)
        half = (1.0 + self.overlap) * s / 2.0
        sub = centres[:, None] - half + (torch.arange(m, dtype=like.dtype, device=like.device) + 0.5) * 2 * half / m
        return centres, half, sub, half / m  # (N,), float, (N, M), float

    def _parts(self, raw_axis: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(B, K, D) → logits (B, K, N), residuals (B, K, N), sub logits (B, K, N, M), sub residuals (B, K, N, M)."""
        n, m = self.num_bins, self.sub_bins
        logits, res = raw_axis[..., :n], raw_axis[..., n : 2 * n]
        if m == 0:
            return logits, res, None, None
        sub_logits = raw_axis[..., 2 * n : 2 * n + n * m].unflatten(-1, (n, m))
        sub_res = raw_axis[..., 2 * n + n * m :].unflatten(-1, (n, m))
        return logits, res, sub_logits, sub_res

    def _sub_index(self, x: torch.Tensor, centres: torch.Tensor, half: float) -> torch.Tensor:
        """(B, K) positions → (B, K, N) index of the sub-bin of every coarse bin that contains them."""
        m = self.sub_bins
        return ((x[..., None] - centres + half) / (2 * half / m)).floor().clamp(0, m - 1).long()

    def _lengths(self) -> tuple[int, int]:
        h, w = self.spec.input_size
        return w, h  # x, y

    # ---- loss ----------------------------------------------------------------------------------------
    def loss(
        self,
        raw: torch.Tensor,
        keypoints: torch.Tensor,
        visibility: torch.Tensor,
        scale: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        raw = raw if raw.dtype == torch.float64 else raw.float()  # (B, K, 2, D)
        kp = keypoints.to(raw.dtype)
        cls_total, res_total, sub_total = 0.0, 0.0, 0.0
        for axis, length in enumerate(self._lengths()):
            x = kp[..., axis]  # (B, K) input pixels
            centres, half, sub_centres, sub_half = self._geometry(length, raw)
            logits, res, sub_logits, sub_res = self._parts(raw[:, :, axis])
            d = x[..., None] - centres  # (B, K, N)
            cover = (d.abs() <= half).to(raw.dtype)  # (B, K, N)
            # The nearest centre; clamped so that a joint outside the input still has a class.
            target = ((x + 0.5) / (length / self.num_bins)).floor().clamp(0, self.num_bins - 1).long()  # (B, K)
            if self.cls_loss == "ce":
                cls = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none").view_as(x)
            else:
                cls = softmax_focal_loss(logits, target, self.gamma, self.alpha)  # (B, K)
            # Every covering bin's residual, averaged over them (≥ 1: the target bin always covers, except
            # for joints beyond the input's edge, where the clamp keeps the average finite).
            n_cover = cover.sum(-1).clamp(min=1.0)  # (B, K)
            res_err = F.smooth_l1_loss(res, d / half, reduction="none", beta=BETA)  # (B, K, N)
            res_loss = (res_err * cover).sum(-1) / n_cover
            cls_total, res_total = cls_total + cls, res_total + res_loss
            if self.sub_bins:
                m_idx = self._sub_index(x, centres, half)  # (B, K, N)
                sub_cls = F.cross_entropy(
                    sub_logits.flatten(0, 2), m_idx.flatten(), reduction="none"
                ).view_as(m_idx)  # (B, K, N)
                chosen_centre = sub_centres.expand(*m_idx.shape, -1).gather(-1, m_idx[..., None]).squeeze(-1)
                chosen_res = sub_res.gather(-1, m_idx[..., None]).squeeze(-1)  # (B, K, N)
                sub_err = F.smooth_l1_loss(chosen_res, (x[..., None] - chosen_centre) / sub_half,
                                           reduction="none", beta=BETA)  # (B, K, N)
                sub_total = sub_total + ((sub_cls + sub_err) * cover).sum(-1) / n_cover
        terms = {"classification": cls_total, "residual": self.residual_weight * res_total}  # (B, K) each
        if self.sub_bins:
            terms["sub_bins"] = sub_total
        return terms

    # ---- decoding ------------------------------------------------------------------------------------
    def _estimates(self, raw: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """[(bin probabilities (B, K, N), per-bin estimates μ_b (B, K, N) input pixels)] for x then y."""
        raw = raw if raw.dtype == torch.float64 else raw.float()
        out = []
        for axis, length in enumerate(self._lengths()):
            centres, half, sub_centres, sub_half = self._geometry(length, raw)
            logits, res, sub_logits, sub_res = self._parts(raw[:, :, axis])
            if self.sub_bins:
                m = sub_logits.argmax(-1, keepdim=True)  # (B, K, N, 1) most confident sub-bin of every bin
                mu = sub_centres.expand_as(sub_logits).gather(-1, m).squeeze(-1) + sub_half * sub_res.gather(
                    -1, m).squeeze(-1)  # (B, K, N)
            else:
                mu = centres + half * res  # (B, K, N)
            out.append((torch.softmax(logits, dim=-1), mu))
        return out

    def decode(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        coords, peaks = [], []
        for probs, mu in self._estimates(raw):
            peak, idx = probs.max(dim=-1)  # (B, K)
            if self.decoder == "argmax":
                coords.append(mu.gather(-1, idx[..., None]).squeeze(-1))
            else:
                coords.append(expectation_1d(probs, mu))
            peaks.append(peak)
        return torch.stack(coords, dim=-1), (peaks[0] * peaks[1]).sqrt()  # (B, K, 2) input pixels, (B, K)

    def soft_coords(self, raw: torch.Tensor) -> torch.Tensor:
        # Σ_b p_b μ_b whatever the decoder: the arg-max bin has no gradient.
        return torch.stack([expectation_1d(p, mu) for p, mu in self._estimates(raw)], dim=-1)  # (B, K, 2) input px

    def soft_round_trip_tolerance(self) -> float:
        return 1e-3  # exact residuals on every bin: the expectation is the keypoint

    def spread(self, raw: torch.Tensor) -> torch.Tensor:
        return sum(variance_1d(p, mu) for p, mu in self._estimates(raw))  # (B, K) input pixels²

    def ideal_output(self, keypoints: torch.Tensor) -> torch.Tensor:
        # ±10 logits on the nearest bin (and on each bin's sub-bin containing the joint), exact residuals on
        # every bin and sub-bin: both decoders then give the keypoint exactly.
        kp = keypoints.float()
        axes = []
        for axis, length in enumerate(self._lengths()):
            x = kp[..., axis]  # (B, K)
            centres, half, sub_centres, sub_half = self._geometry(length, kp)
            target = ((x + 0.5) / (length / self.num_bins)).floor().clamp(0, self.num_bins - 1).long()
            parts = [20.0 * F.one_hot(target, self.num_bins).float() - 10.0, (x[..., None] - centres) / half]
            if self.sub_bins:
                m_idx = self._sub_index(x, centres, half)  # (B, K, N)
                parts.append((20.0 * F.one_hot(m_idx, self.sub_bins).float() - 10.0).flatten(-2))
                parts.append(((x[..., None, None] - sub_centres) / sub_half).flatten(-2))
            axes.append(torch.cat(parts, dim=-1))  # (B, K, D)
        return torch.stack(axes, dim=2)  # (B, K, 2, D)
