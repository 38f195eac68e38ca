"""The spatial neck shared by all spatial heads: from the backbone's stride to the head's output stride.

Upsampling uses SimpleBaseline's deconvolutions (4×4, stride 2, BN, ReLU) — one per whole factor of two — so
that stride 32 → 4 is SimpleBaseline's three-deconv neck; coarser outputs than the backbone's stride are
average-pooled. The neck always ends on the head's exact grid, ``input size / output_stride`` cells: where the
backbone's stride is not a power-of-two multiple of the output stride (a ViT with 14-pixel patches, stride 14 → 4:
one deconvolution to stride 7, then ×1.75), or where the backbone's feature map does not tile the input exactly,
a bilinear resize (``align_corners=False``: cell centres stay on kpreg's pixel-centre grid) covers the rest. Every
spatial head builds the same neck, so a comparison between heads at one output stride differs only in the head's
own final layer, targets, loss and decoding.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from kpreg.heads.base import Head, HeadSpec
from kpreg.ops import variance_2d

NeckKind = Literal["deconv", "none"]


class ToGrid(nn.Module):
    """Bilinear resize to a fixed (h, w) grid, only where the incoming map differs from it (a no-op otherwise)."""

    def __init__(self, grid_size: tuple[int, int]) -> None:
        super().__init__()
        self.grid_size = (int(grid_size[0]), int(grid_size[1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) == self.grid_size:
            return x
        return F.interpolate(x, size=self.grid_size, mode="bilinear", align_corners=False)  # (B, C, h, w)

    def extra_repr(self) -> str:
        return f"grid_size={self.grid_size}"


def default_neck_channels(in_channels: int) -> int:
    """SimpleBaseline's 256, or half the backbone's channels where that is fewer (a neck no wider than its input:
    128 → 64 for the synthetic protocol's ResNet-18 at stride 8)."""
    return max(8, min(256, in_channels // 2))


def build_neck(
    kind: NeckKind, in_channels: int, in_stride: int, output_stride: int, channels: int,
    grid_size: tuple[int, int] | None = None,
) -> tuple[nn.Module, int]:
    """Return (neck, its output channels) taking (B, in_channels, H/in_stride, W/in_stride) features to
    (B, channels', h, w) with (h, w) = ``grid_size`` (H/output_stride, W/output_stride). Any positive strides:
    whole factors of two by deconvolution, the rest by a bilinear resize (see the module docstring)."""
    if output_stride <= 0 or in_stride <= 0:
        raise ValueError(f"strides must be positive, got backbone stride {in_stride} and output_stride {output_stride}")
    to_grid: list[nn.Module] = [ToGrid(grid_size)] if grid_size is not None else []
    if kind == "none":
        if output_stride != in_stride:
            raise ValueError(
                f"neck 'none' keeps the backbone's stride {in_stride}, but output_stride is {output_stride}; "
                "use neck 'deconv' or set output_stride to the backbone's stride"
            )
        return nn.Sequential(*to_grid), in_channels
    if kind != "deconv":
        raise ValueError(f"unknown neck '{kind}' (choose 'deconv' or 'none')")
    layers: list[nn.Module] = []
    if output_stride > in_stride:
        factor = output_stride / in_stride
        if factor.is_integer():
            layers.append(nn.AvgPool2d(int(factor), int(factor)))
        elif grid_size is not None:
            layers.append(nn.AdaptiveAvgPool2d(grid_size))
        else:
            raise ValueError(f"output_stride {output_stride} is not a multiple of the backbone's stride {in_stride}")
        return nn.Sequential(*layers, *to_grid), in_channels
    c = in_channels
    # Whole factors of two only (stride 14 → 4: one deconvolution to stride 7; the resize does the last ×1.75).
    for _ in range(int(math.floor(math.log2(in_stride / output_stride) + 1e-9))):
        layers += [
            nn.ConvTranspose2d(c, channels, kernel_size=4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        ]
        c = channels
    return nn.Sequential(*layers, *to_grid), c


def map_spread(probs: torch.Tensor, stride: int) -> torch.Tensor:
    """Var[x] + Var[y] of (B, K, h, w) probability maps, cells² → input pixels² (× stride²)."""
    h, w = probs.shape[-2:]
    xs = torch.arange(w, dtype=probs.dtype, device=probs.device)  # (w,) cells
    ys = torch.arange(h, dtype=probs.dtype, device=probs.device)  # (h,)
    return variance_2d(probs, xs, ys).sum(-1) * stride**2  # (B, K)


def check_divisible(input_size: tuple[int, int], output_stride: int) -> tuple[int, int]:
    """(h, w) of the output grid; the input must be a whole number of output cells."""
    h, w = input_size
    if h % output_stride or w % output_stride:
        raise ValueError(f"input size {h}x{w} is not divisible by output_stride {output_stride}")
    return h // output_stride, w // output_stride


class SpatialHead(Head):
    """Base of the heads that predict maps: neck to ``output_stride`` + one 1×1 convolution giving
    ``maps_per_keypoint`` maps per keypoint. Subclasses only define targets, loss and decoding.

    Args (shared by every spatial head, so ``--model.head.init_args.output_stride 32`` works for all):
    output_stride: input pixels per output cell (4 = SimpleBaseline); any positive integer that divides the input
        size, from any backbone stride (see the module docstring).
    neck: ``deconv`` (SimpleBaseline's deconvolutions, or average pooling above the backbone's stride) or
        ``none`` (the backbone's features as they are; output_stride must then equal the backbone's).
    neck_channels: channels of each deconvolution; ``None`` = SimpleBaseline's 256, or half the backbone's channels
        where that is fewer (``default_neck_channels``).
    """

    maps_per_keypoint: int = 1
    has_output_stride = True

    def __init__(self, output_stride: int = 4, neck: NeckKind = "deconv", neck_channels: int | None = None) -> None:
        super().__init__()
        self.output_stride = output_stride
        self.neck_kind = neck
        self.neck_channels = neck_channels

    def _build(self, spec: HeadSpec) -> None:
        self.grid_size = check_divisible(spec.input_size, self.output_stride)  # (h, w) cells
        width = self.neck_channels if self.neck_channels is not None else default_neck_channels(spec.in_channels)
        self.neck, channels = build_neck(
            self.neck_kind, spec.in_channels, spec.in_stride, self.output_stride, width, self.grid_size
        )
        self.final = nn.Conv2d(channels, spec.num_keypoints * self.maps_per_keypoint, kernel_size=1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        maps = self.final(self.neck(features))  # (B, K * m, h, w)
        if self.maps_per_keypoint == 1:
            return maps  # (B, K, h, w)
        b, _, h, w = maps.shape
        return maps.view(b, self.spec.num_keypoints, self.maps_per_keypoint, h, w)  # (B, K, m, h, w)


class FlattenHead(SpatialHead):
    """Base of the heads that read each keypoint's map as a vector (SimCC's design): neck to
    ``output_stride``, a 1×1 convolution to one map per keypoint, each (h, w) map flattened and mapped by
    one linear layer shared by all keypoints to ``out_features`` numbers. Raw output: (B, K, out_features).

    The linear layer sees the whole map, so the output need not be spatially aligned with it: a coarse
    grid (stride 32) can still address fine bins. Subclasses define ``out_features``.
    """

    def out_features(self, spec: HeadSpec) -> int:
        raise NotImplementedError

    def _build(self, spec: HeadSpec) -> None:
        super()._build(spec)  # neck + 1×1 conv to K maps (maps_per_keypoint = 1)
        h, w = self.grid_size
        self.linear = nn.Linear(h * w, self.out_features(spec))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        maps = self.final(self.neck(features))  # (B, K, h, w)
        return self.linear(maps.flatten(-2))  # (B, K, out_features)
