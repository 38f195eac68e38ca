"""The spatial neck shared by all spatial heads: from the backbone's stride to the head's output stride.

Upsampling uses SimpleBaseline's deconvolutions (4×4, stride 2, BN, ReLU) — one per factor of two — so
that stride 32 → 4 is SimpleBaseline's three-deconv neck; coarser outputs than the backbone's stride are
average-pooled. Every spatial head builds the same neck, so a comparison between heads at one output
stride differs only in the head's own final layer, targets, loss and decoding.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from kpreg.heads.base import Head, HeadSpec
from kpreg.ops import variance_2d

NeckKind = Literal["deconv", "none"]


def build_neck(
    kind: NeckKind, in_channels: int, in_stride: int, output_stride: int, channels: int
) -> tuple[nn.Module, int]:
    """Return (neck, its output channels) taking (B, in_channels, H/in_stride, W/in_stride) features to
    (B, channels', H/output_stride, W/output_stride)."""
    if output_stride <= 0 or (output_stride & (output_stride - 1)) != 0:
        raise ValueError(f"output_stride must be a power of two, got {output_stride}")
    if kind == "none":
        if output_stride != in_stride:
            raise ValueError(
                f"neck 'none' keeps the backbone's stride {in_stride}, but output_stride is {output_stride}; "
                "use neck 'deconv' or set output_stride to the backbone's stride"
            )
        return nn.Identity(), in_channels
    if kind != "deconv":
        raise ValueError(f"unknown neck '{kind}' (choose 'deconv' or 'none')")
    layers: list[nn.Module] = []
    if output_stride > in_stride:
        factor = output_stride // in_stride
        layers.append(nn.AvgPool2d(factor, factor))
        return nn.Sequential(*layers), in_channels
    c = in_channels
    for _ in range(int(math.log2(in_stride // output_stride))):
        layers += [
            nn.ConvTranspose2d(c, channels, kernel_size=4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        ]
        c = channels
    return nn.Sequential(*layers), c


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
    output_stride: input pixels per output cell (4 = SimpleBaseline; 4, 8, 16, 32 supported).
    neck: ``deconv`` (SimpleBaseline's deconvolutions, or average pooling above the backbone's stride) or
        ``none`` (the backbone's features as they are; output_stride must then equal the backbone's).
    neck_channels: channels of each deconvolution (256 in SimpleBaseline).
    """

    maps_per_keypoint: int = 1

    def __init__(self, output_stride: int = 4, neck: NeckKind = "deconv", neck_channels: int = 256) -> None:
        super().__init__()
        self.output_stride = output_stride
        self.neck_kind = neck
        self.neck_channels = neck_channels

    def _build(self, spec: HeadSpec) -> None:
        self.grid_size = check_divisible(spec.input_size, self.output_stride)  # (h, w) cells
        self.neck, channels = build_neck(
            self.neck_kind, spec.in_channels, spec.in_stride, self.output_stride, self.neck_channels
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
