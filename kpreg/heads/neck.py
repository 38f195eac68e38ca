"""The spatial neck shared by all spatial heads: from the backbone's stride to the head's output stride.

Upsampling uses SimpleBaseline's deconvolutions (4×4, stride 2, BN, ReLU) — one per factor of two — so
that stride 32 → 4 is SimpleBaseline's three-deconv neck; coarser outputs than the backbone's stride are
average-pooled. Every spatial head builds the same neck, so a comparison between heads at one output
stride differs only in the head's own final layer, targets, loss and decoding.
"""

from __future__ import annotations

import math
from typing import Literal

from torch import nn

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


def check_divisible(input_size: tuple[int, int], output_stride: int) -> tuple[int, int]:
    """(h, w) of the output grid; the input must be a whole number of output cells."""
    h, w = input_size
    if h % output_stride or w % output_stride:
        raise ValueError(f"input size {h}x{w} is not divisible by output_stride {output_stride}")
    return h // output_stride, w // output_stride
