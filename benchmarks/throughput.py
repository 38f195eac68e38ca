#!/usr/bin/env python
"""Training throughput (images/s) of a KeypointModule train step, per head, with and without channels_last and
torch.compile.

On a GPU (the number we care about; not measured in the development environment, which has no GPU):

    python benchmarks/throughput.py --backbone resnet50 --size 256 --batch 64 --precision bf16

CPU smoke check (tiny, seconds):

    python benchmarks/throughput.py --backbone test_resnet --size 32 --batch 4 --steps 3 --warmup 1 \
        --precision fp32 --compile-backend eager

Each configuration: ``--warmup`` untimed steps (cuDNN autotuning, compilation), then ``--steps`` timed steps,
each timed with CUDA events on a GPU (``time.perf_counter`` on a CPU); the reported figure is the median.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere without installing kpreg
from kpreg.heads import __all__ as HEAD_NAMES  # noqa: E402
from kpreg.heads.base import Head  # noqa: E402
from kpreg.training.module import KeypointModule  # noqa: E402

NUM_KEYPOINTS = 17


def make_head(name: str) -> Head:
    import kpreg.heads as heads

    return getattr(heads, name)()


def train_step_times(model: KeypointModule, images: torch.Tensor, keypoints: torch.Tensor,
                     visibility: torch.Tensor, dtype: torch.dtype | None, steps: int, warmup: int) -> list[float]:
    """Seconds per training step (forward, loss, backward, optimizer)."""
    device = images.device
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            raw = model(images)
            loss = model.compute_loss(raw.float(), keypoints, visibility, None)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1000.0)
        else:
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
    return times


def measure(args: argparse.Namespace, head_name: str, channels_last: bool, compile: bool) -> dict[str, Any]:
    device = torch.device(args.device)
    torch.manual_seed(0)
    compile_kwargs = {"backend": args.compile_backend} if args.compile_backend else {}
    model = KeypointModule(make_head(head_name), backbone=args.backbone, num_keypoints=NUM_KEYPOINTS,
                           input_size=(args.size, args.size), flip_test=False, channels_last=channels_last,
                           compile=compile, compile_kwargs=compile_kwargs).to(device).train()
    model.setup("fit")  # applies compile (no trainer attached: nothing else happens)
    images = torch.randn(args.batch, 3, args.size, args.size, device=device)
    keypoints = torch.rand(args.batch, NUM_KEYPOINTS, 2, device=device) * (args.size - 1)  # (B, K, 2) input px
    visibility = torch.ones(args.batch, NUM_KEYPOINTS, device=device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[args.precision]
    times = train_step_times(model, images, keypoints, visibility, dtype, args.steps, args.warmup)
    median = statistics.median(times)
    return {"head": head_name, "channels_last": channels_last, "compile": compile,
            "median_step_s": median, "images_per_s": args.batch / median}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--precision", choices=["bf16", "fp16", "fp32"], default="bf16")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--heads", nargs="+", default=list(HEAD_NAMES), help=f"default: all ({HEAD_NAMES})")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--compile-backend", default=None, help="torch.compile backend (default inductor)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile configurations")
    args = parser.parse_args()
    if args.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    compile_options = [False] if args.no_compile else [False, True]
    print(f"{args.backbone} {args.size}×{args.size} batch {args.batch} {args.precision} on {args.device}")
    print(f"{'head':<16} {'channels_last':>13} {'compile':>8} {'step ms':>9} {'images/s':>10}")
    for head_name, channels_last, compile in itertools.product(args.heads, [False, True], compile_options):
        r = measure(args, head_name, channels_last, compile)
        print(f"{r['head']:<16} {r['channels_last']!s:>13} {r['compile']!s:>8} "
              f"{1000 * r['median_step_s']:>9.1f} {r['images_per_s']:>10.1f}")


if __name__ == "__main__":
    main()
