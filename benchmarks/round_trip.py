"""Round trip encode → decode on exact targets, per head and output stride; prints a markdown table.

For each head, ``head.ideal_output(keypoints)`` is the raw output a perfect network would give and
``head.decode`` reads it back. Keypoints are random, sub-pixel, in the central half of a 256 × 256 input
(so that at stride 32 the 8 × 8 grid still leaves room for DARK's stencil and the expectation heads' hull
of cell centres). Errors in input pixels over 64 × 16 keypoints: the largest per-axis error and the
mean Euclidean error.

    python benchmarks/round_trip.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere without installing kpreg
from kpreg.heads import (  # noqa: E402
    DSNTHead,
    FCHead,
    HeatmapHead,
    MultiBinHead,
    OffsetHead,
    SimCCHead,
    SoftArgmaxHead,
)
from kpreg.heads.base import Head, HeadSpec  # noqa: E402

INPUT = (256, 256)
STRIDES = (4, 8, 16, 32)


def random_keypoints(n: int = 64, k: int = 16, size: tuple[int, int] = INPUT, seed: int = 0) -> torch.Tensor:
    """(n, k, 2) x,y input pixels, uniform in the central half of the input."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    u = torch.rand(n, k, 2, generator=g)
    return torch.stack((w / 4 + u[..., 0] * w / 2, h / 4 + u[..., 1] * h / 2), dim=-1)


def round_trip_error(head: Head, keypoints: torch.Tensor) -> torch.Tensor:
    """(N, K, 2) per-axis |error| in input pixels of decode(ideal_output(keypoints))."""
    head.build(HeadSpec(in_channels=8, in_stride=32, num_keypoints=keypoints.shape[1], input_size=INPUT))
    head.eval()
    with torch.no_grad():
        coords, _ = head.decode(head.ideal_output(keypoints))
    return (coords - keypoints).abs()


def cases(stride: int) -> dict[str, Head]:
    fc = FCHead()
    return {
        "FC regression": fc,
        "heatmap, argmax": HeatmapHead(output_stride=stride, sigma=2.0, decoder="argmax"),
        "heatmap, quarter": HeatmapHead(output_stride=stride, sigma=2.0, decoder="quarter"),
        "heatmap, DARK": HeatmapHead(output_stride=stride, sigma=2.0, decoder="dark"),
        "heatmap, DARK, σ = 1": HeatmapHead(output_stride=stride, sigma=1.0, decoder="dark"),
        "soft-argmax": SoftArgmaxHead(output_stride=stride),
        "DSNT": DSNTHead(output_stride=stride),
        "heatmap + offset": OffsetHead(output_stride=stride),
        "SimCC, argmax (r = 2)": SimCCHead(output_stride=stride, decoder="argmax"),
        "SimCC, expectation (r = 2)": SimCCHead(output_stride=stride, decoder="expectation"),
        "multi-bin, argmax": MultiBinHead(output_stride=stride, decoder="argmax"),
        "multi-bin, expectation": MultiBinHead(output_stride=stride, decoder="expectation"),
        "multi-bin, hierarchical (4 sub-bins)": MultiBinHead(output_stride=stride, sub_bins=4),
    }


def main() -> None:
    keypoints = random_keypoints()
    rows: dict[str, list[str]] = {}
    for stride in STRIDES:
        for name, head in cases(stride).items():
            err = round_trip_error(head, keypoints)
            rows.setdefault(name, []).append(f"{err.max():.2e} / {err.norm(dim=-1).mean():.2e}")
    print(f"Round trip decode(ideal_output(k)) on a {INPUT[0]}×{INPUT[1]} input; "
          "max per-axis |error| / mean Euclidean error, input pixels (σ = 2 cells for the heatmap rows unless stated)\n")
    print("| head | " + " | ".join(f"stride {s}" for s in STRIDES) + " |")
    print("|---|" + "---|" * len(STRIDES))
    for name, cols in rows.items():
        print(f"| {name} | " + " | ".join(cols) + " |")


if __name__ == "__main__":
    main()
