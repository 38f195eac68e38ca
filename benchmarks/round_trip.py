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
import kpreg.heads as heads  # noqa: E402
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
    head.build(HeadSpec(in_channels=8, in_stride=32, num_keypoints=keypoints.shape[1], input_size=INPUT,
                        sigmas=(0.05,) * keypoints.shape[1]))
    if head.needs_fit:  # e.g. anchor poses: fitted on the keypoints they will encode
        head.fit(keypoints, torch.ones(keypoints.shape[:2]))
    head.eval()
    with torch.no_grad():
        coords, _ = head.decode(head.ideal_output(keypoints))
    return (coords - keypoints).abs()


def cases(stride: int) -> dict[str, Head]:
    """Every variant each head in ``kpreg.heads.__all__`` declares (``Head.variants``), at ``stride`` where it has
    one (σ = 2 cells for the heatmap rows unless stated)."""
    out = {}
    for name in heads.__all__:
        cls = getattr(heads, name)
        for label, init_args in cls.variants.items():
            kwargs = {**init_args, **({"output_stride": stride} if cls.has_output_stride else {})}
            out[label] = cls(**kwargs)
    return out


def main() -> None:
    keypoints = random_keypoints()
    rows: dict[str, list[str]] = {}
    for stride in STRIDES:
        for name, head in cases(stride).items():
            if not head.has_output_stride and stride != STRIDES[0]:
                rows.setdefault(name, []).append("– (no stride)")
                continue
            err = round_trip_error(head, keypoints)
            mark = "" if err.max() <= head.round_trip_tolerance() else " (!)"  # beyond the head's declared bound
            rows.setdefault(name, []).append(f"{err.max():.2e} / {err.norm(dim=-1).mean():.2e}{mark}")
    print(f"Round trip decode(ideal_output(k)) on a {INPUT[0]}×{INPUT[1]} input; "
          "max per-axis |error| / mean Euclidean error, input pixels (σ = 2 cells for the heatmap rows unless stated)\n")
    print("| head | " + " | ".join(f"stride {s}" for s in STRIDES) + " |")
    print("|---|" + "---|" * len(STRIDES))
    for name, cols in rows.items():
        print(f"| {name} | " + " | ".join(cols) + " |")


if __name__ == "__main__":
    main()
