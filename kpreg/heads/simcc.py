"""SimCC: per-axis coordinate classification (Li et al., "SimCC: a Simple Coordinate Classification
Perspective for Human Pose Estimation", ECCV 2022), with GFL's distribution focal loss as an option
(Li et al., "Generalized Focal Loss", NeurIPS 2020).

Each keypoint's map (neck at ``output_stride``, 1×1 conv to one map per keypoint) is flattened and a
shared linear layer gives two 1-D logit vectors: ``W · r`` bins for x and ``H · r`` bins for y, where
``r = split_ratio`` (SimCC's k). Bins are kpreg cells at stride ``1 / r``::

    bin j of ratio r is centred on input pixel (j + 0.5) / r − 0.5      (kpreg.coords.cells_to_pixels)
    input pixel x lies at bin (x + 0.5) · r − 0.5                      (kpreg.coords.pixels_to_cells)

so the ``W · r`` bins tile the input edge to edge, ``[-0.5, W − 0.5]``, and flipping x ↦ W − 1 − x maps
bin j onto bin ``W·r − 1 − j`` exactly.

Losses (per axis, summed over x and y, averaged over visible joints):

* ``kl``: KL(target ‖ softmax) to a normalised Gaussian of ``sigma`` *bins* at the exact sub-bin position
  (SimCC's Gaussian label smoothing; the paper uses σ = 6 bins for a 256×192 input at r = 2);
* ``ce``: cross-entropy to the one-hot of the nearest bin, smoothed with ``label_smoothing`` (SimCC's
  "one-hot + label smoothing" variant);
* ``dfl``: distribution focal loss: the target's mass on the two bins around it, in proportion to
  closeness, ``−((i + 1 − y) log S_i + (y − i) log S_{i+1})``.

Decoding: ``argmax`` (SimCC; at most half a bin, ``0.5 / r`` pixels, of quantisation) or ``expectation``
(soft-argmax over the bins; GFL's decoding, exact for a DFL-trained output). Confidence: the geometric
mean of the x and y peak probabilities. Spread: Var[x] + Var[y] of the two distributions, input pixels².
"""

from __future__ import annotations

from typing import Literal

import torch

from kpreg.coords import cells_to_pixels, pixels_to_cells
from kpreg.heads.base import HeadSpec
from kpreg.heads.neck import FlattenHead, NeckKind
from kpreg.losses import distribution_focal_loss, kl_to_target, label_smoothed_cross_entropy
from kpreg.ops import expectation_1d, hat_1d, normalized_gaussian_1d, variance_1d

BinLoss = Literal["kl", "ce", "dfl"]
BinDecoder = Literal["argmax", "expectation"]


class SimCCHead(FlattenHead):
    """Args:
    output_stride, neck, neck_channels: see ``SpatialHead`` (the map each keypoint's vector is read from).
    split_ratio: bins per input pixel (SimCC's k; 2 in the paper). ``W · r`` and ``H · r`` must be whole.
    loss: ``kl`` (Gaussian target), ``ce`` (label-smoothed one-hot) or ``dfl`` (distribution focal loss).
    sigma: σ of the ``kl`` target, in bins.
    label_smoothing: ε of the ``ce`` target.
    decoder: ``argmax`` or ``expectation``.
    """

    name = "simcc"
    soft_coords_source = "the expectation over its bins (decode with decoder: expectation)"
    variants = {"SimCC (KL, argmax)": {}, "SimCC (KL, expectation)": {"decoder": "expectation"}}

    def round_trip_tolerance(self) -> float:
        # argmax: at most half a bin per axis, 0.5 / r input pixels; the expectation of the ideal (hat) output is exact
        return 0.5 / self.split_ratio + 1e-4 if self.decoder == "argmax" else 1e-3

    def __init__(
        self,
        output_stride: int = 4,
        neck: NeckKind = "deconv",
        neck_channels: int | None = None,
        split_ratio: float = 2.0,
        loss: BinLoss = "kl",
        sigma: float = 6.0,
        label_smoothing: float = 0.1,
        decoder: BinDecoder = "argmax",
    ) -> None:
        super().__init__(output_stride, neck, neck_channels)
        if loss not in ("kl", "ce", "dfl"):
            raise ValueError(f"unknown loss '{loss}' (choose kl, ce or dfl)")
        if decoder not in ("argmax", "expectation"):
            raise ValueError(f"unknown decoder '{decoder}' (choose argmax or expectation)")
        if split_ratio <= 0 or sigma <= 0 or not 0.0 <= label_smoothing < 1.0:
            raise ValueError("split_ratio and sigma must be positive and label_smoothing in [0, 1)")
        self.split_ratio = split_ratio
        self.bin_loss = loss
        self.sigma = sigma
        self.label_smoothing = label_smoothing
        self.decoder = decoder

    def out_features(self, spec: HeadSpec) -> int:
        h, w = spec.input_size
        nx, ny = w * self.split_ratio, h * self.split_ratio
        if nx != int(nx) or ny != int(ny):
            raise ValueError(f"split_ratio {self.split_ratio} gives a fractional number of bins for {h}x{w}")
        self.num_bins = (int(nx), int(ny))  # (x bins, y bins)
        return self.num_bins[0] + self.num_bins[1]

    def _split(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, K, nx + ny) raw → x logits (B, K, nx), y logits (B, K, ny), at least float32."""
        raw = raw if raw.dtype == torch.float64 else raw.float()
        return raw[..., : self.num_bins[0]], raw[..., self.num_bins[0] :]

    def _bins(self, keypoints: torch.Tensor) -> torch.Tensor:
        return pixels_to_cells(keypoints, 1.0 / self.split_ratio)  # (B, K, 2) x,y sub-bin positions

    def loss(
        self,
        raw: torch.Tensor,
        keypoints: torch.Tensor,
        visibility: torch.Tensor,
        scale: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        target = self._bins(keypoints.float())  # (B, K, 2) x,y bins
        per_joint = 0.0
        for axis, logits in enumerate(self._split(raw)):  # (B, K, n) each
            n = logits.shape[-1]
            t = target[..., axis].clamp(0.0, n - 1.0)  # (B, K); a joint outside the input sits on the edge bin
            if self.bin_loss == "kl":
                per_joint = per_joint + kl_to_target(logits, normalized_gaussian_1d(t, n, self.sigma))
            elif self.bin_loss == "ce":
                per_joint = per_joint + label_smoothed_cross_entropy(logits, t.round(), self.label_smoothing)
            else:
                per_joint = per_joint + distribution_focal_loss(logits, t)
        return {self.bin_loss: per_joint}  # (B, K)

    def _distributions(self, raw: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """[(probs (B, K, n), bin centres (n,) input pixels)] for x then y."""
        out = []
        for logits in self._split(raw):
            probs = torch.softmax(logits, dim=-1)  # (B, K, n)
            centres = cells_to_pixels(torch.arange(probs.shape[-1], dtype=probs.dtype, device=probs.device),
                                      1.0 / self.split_ratio)  # (n,) input pixels
            out.append((probs, centres))
        return out

    def decode(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        coords, peaks = [], []
        for probs, centres in self._distributions(raw):
            peak, idx = probs.max(dim=-1)  # (B, K), (B, K)
            coords.append(centres[idx] if self.decoder == "argmax" else expectation_1d(probs, centres))
            peaks.append(peak)
        return torch.stack(coords, dim=-1), (peaks[0] * peaks[1]).sqrt()  # (B, K, 2) input pixels, (B, K)

    def soft_coords(self, raw: torch.Tensor) -> torch.Tensor:
        # The expectation whatever the decoder: the arg-max bin has no gradient.
        return torch.stack([expectation_1d(p, c) for p, c in self._distributions(raw)], dim=-1)  # (B, K, 2) input px

    def soft_round_trip_tolerance(self) -> float:
        return 1e-3  # the expectation of the ideal (hat) output is exact

    def spread(self, raw: torch.Tensor) -> torch.Tensor:
        return sum(variance_1d(p, c) for p, c in self._distributions(raw))  # (B, K) input pixels²

    def ideal_output(self, keypoints: torch.Tensor) -> torch.Tensor:
        # log of the per-axis hat distribution: its expectation is exactly the keypoint and its arg-max the
        # nearest bin (so the argmax decoder is off by at most half a bin, 0.5 / r input pixels).
        target = self._bins(keypoints.float())  # (B, K, 2)
        hats = [hat_1d(target[..., a], n) for a, n in enumerate(self.num_bins)]  # (B, K, n) each
        return torch.cat(hats, dim=-1).clamp(min=1e-30).log()  # (B, K, nx + ny)

    def heatmaps(self, raw: torch.Tensor) -> torch.Tensor:
        (px, _), (py, _) = self._distributions(raw)
        return py[..., :, None] * px[..., None, :]  # (B, K, ny, nx): the joint's independent 2-D distribution
