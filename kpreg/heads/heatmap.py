"""Gaussian heatmap + arg-max (SimpleBaseline / HRNet).

Targets: an unnormalised Gaussian (peak 1) of ``sigma`` *heatmap cells* centred on the exact sub-cell
position of each keypoint. Loss: visibility-weighted MSE. Decoding: arg-max cell, optionally refined
(``quarter``: the classic ¼-cell shift towards the higher neighbour), converted to input pixels.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from kpreg.coords import cells_to_pixels, pixels_to_cells
from kpreg.heads.base import Head, HeadSpec
from kpreg.heads.neck import NeckKind, build_neck, check_divisible
from kpreg.losses import heatmap_mse
from kpreg.ops import argmax_2d, quarter_offset, render_gaussian

Decoder = Literal["argmax", "quarter"]


class HeatmapHead(Head):
    """Args:
    output_stride: input pixels per heatmap cell (4 = SimpleBaseline).
    sigma: Gaussian standard deviation in heatmap cells (2 at stride 4 = SimpleBaseline).
    neck: ``deconv`` upsamples the backbone features to ``output_stride``; ``none`` uses them as is.
    neck_channels: channels of each deconvolution (256 in SimpleBaseline).
    decoder: ``argmax`` (integer cell) or ``quarter`` (¼-cell shift towards the higher neighbour).
    """

    def __init__(
        self,
        output_stride: int = 4,
        sigma: float = 2.0,
        neck: NeckKind = "deconv",
        neck_channels: int = 256,
        decoder: Decoder = "quarter",
    ) -> None:
        super().__init__()
        if decoder not in ("argmax", "quarter"):
            raise ValueError(f"unknown decoder '{decoder}' (choose argmax or quarter)")
        self.output_stride = output_stride
        self.sigma = sigma
        self.neck_kind = neck
        self.neck_channels = neck_channels
        self.decoder = decoder

    def _build(self, spec: HeadSpec) -> None:
        self.grid_size = check_divisible(spec.input_size, self.output_stride)  # (h, w) cells
        self.neck, channels = build_neck(
            self.neck_kind, spec.in_channels, spec.in_stride, self.output_stride, self.neck_channels
        )
        self.final = nn.Conv2d(channels, spec.num_keypoints, kernel_size=1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.final(self.neck(features))  # (B, K, h, w) heatmaps

    def targets(self, keypoints: torch.Tensor) -> torch.Tensor:
        """(B, K, 2) x,y input pixels → (B, K, h, w) Gaussian targets."""
        return render_gaussian(pixels_to_cells(keypoints, self.output_stride), self.grid_size, self.sigma)

    def loss(
        self, raw: torch.Tensor, keypoints: torch.Tensor, visibility: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        mse = heatmap_mse(raw, self.targets(keypoints), visibility)
        return {"loss": mse, "heatmap_mse": mse.detach()}

    def decode(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        heatmaps = raw.float()  # (B, K, h, w)
        cells, maxvals = argmax_2d(heatmaps)  # (B, K, 2) integer cells, (B, K)
        if self.decoder == "quarter":
            cells = quarter_offset(heatmaps, cells)
        return cells_to_pixels(cells, self.output_stride), maxvals  # (B, K, 2) input pixels

    def heatmaps(self, raw: torch.Tensor) -> torch.Tensor:
        return raw.float()
