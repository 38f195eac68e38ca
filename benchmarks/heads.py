#!/usr/bin/env python
"""What each head costs, per output stride, on one backbone and input size; prints a markdown table and
writes JSON.

Per head × output stride (4, 8, 16, 32; the FC head has no stride and runs once):

* ``train ms``: one training step (forward, loss with its targets, backward, AdamW step, zero_grad),
* ``infer ms``: eval-mode forward + ``head.decode`` without gradients (no flip test),
* ``decode ms``: ``head.decode`` alone on the raw output of that forward,
* ``loss ms``: ``head.loss`` alone (target construction + loss + its backward to the raw output), i.e. all the
  work in a training step that belongs to the head's representation rather than its layers,
* ``loss %`` / ``decode %``: those two as shares of the training step (targets: ≤ 5 % and ≤ 2 %),
* ``peak MB``: peak memory of a training step (CUDA: ``max_memory_allocated``; CPU: growth of the process's
  resident-set high-water mark over the step, Linux only, approximate — the allocator may reuse freed memory),
* ``params M`` (head params in brackets) and ``GFLOPs`` of a training step and of one inference batch
  (``torch.utils.flop_counter.FlopCounterMode``: matmuls and convolutions only, so target construction and
  losses count as 0).

Timing: a warm-up of each measurement first (it also counts the FLOPs), then ``--repeats`` rounds in which the
four measurements are interleaved, so that the machine's load drifts over all of them alike; the figures are
medians. The cheap ones (loss, decode) run ``--inner`` times per round. CUDA is timed with events after
synchronising, the CPU with ``time.perf_counter``; on the CPU one thread by default (``--threads``), which is
the fair comparison on a shared machine.

Reference setting (ResNet-50, 256 × 256; on a GPU use the default batch of 8):

    python benchmarks/heads.py --backbone resnet50 --input 256 --batch 8

On the CPU the defaults are batch 2 and strides 4 and 32 so that the table takes ~3 minutes on one core (the
shares hardly depend on the batch: every part scales with it); ``--strides 4 8 16 32`` gives the full table. Smoke run (seconds, used by tests/test_benchmarks.py):

    python benchmarks/heads.py --quick
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere without installing kpreg
from _report import write_json  # benchmarks/ is on sys.path when a script runs

import kpreg.heads as heads  # noqa: E402
from kpreg.training.module import KeypointModule  # noqa: E402

STRIDES = (4, 8, 16, 32)
# (label, head class, extra init args): every variant each head in kpreg.heads.__all__ declares worth benchmarking
# (Head.variants: its defaults first, then e.g. DARK, the costliest decoder). No head is named here.
VARIANTS: tuple[tuple[str, str, dict[str, Any]], ...] = tuple(
    (label, name, dict(init_args))
    for name in heads.__all__
    for label, init_args in getattr(heads, name).variants.items()
)


# ---- timing / memory helpers ---------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    """Seconds that ``fn()`` takes: CUDA events on a GPU (the queue is drained first, so only ``fn``'s work is
    counted), ``time.perf_counter`` on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(end) / 1000.0
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _rss_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def peak_memory_mb(fn: Callable[[], Any], device: torch.device) -> float | None:
    """Peak memory that ``fn()`` adds, in MB (``None`` where it cannot be measured)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    # CPU: writing 5 to clear_refs resets VmHWM to the current RSS (Linux ≥ 4.0); the peak is then read back.
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        fn()
        return None
    base = _rss_kb("VmRSS")
    fn()
    peak = _rss_kb("VmHWM")
    return None if base is None or peak is None else (peak - base) / 1024.0


def count_flops(fn: Callable[[], Any]) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


# ---- one head × stride ---------------------------------------------------------------------------------
def build(args: argparse.Namespace, class_name: str, init_args: dict[str, Any], stride: int | None,
          device: torch.device) -> KeypointModule:
    torch.manual_seed(0)
    kwargs = dict(init_args)
    if stride is not None:
        kwargs["output_stride"] = stride
    head = getattr(heads, class_name)(**kwargs)
    model = KeypointModule(head, backbone=args.backbone, num_keypoints=args.keypoints,
                           input_size=(args.input, args.input), flip_test=False,
                           sigmas=[0.05] * args.keypoints).to(device)
    if head.needs_fit:  # what the module does before training: heads such as anchor poses see the keypoints once
        g = torch.Generator().manual_seed(2)
        head.fit((torch.rand(64, args.keypoints, 2, generator=g) * (args.input - 1)).to(device),
                 torch.ones(64, args.keypoints, device=device))
    return model


def measure(args: argparse.Namespace, label: str, class_name: str, init_args: dict[str, Any],
            stride: int | None, device: torch.device) -> dict[str, Any]:
    model = build(args, class_name, init_args, stride, device)
    head = model.head
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(1)
    images = torch.randn(args.batch, 3, args.input, args.input, generator=g).to(device)
    keypoints = (torch.rand(args.batch, args.keypoints, 2, generator=g) * (args.input - 1)).to(device)  # (B, K, 2) input px
    visibility = (torch.rand(args.batch, args.keypoints, generator=g) > 0.1).float().to(device)  # (B, K)
    scale = torch.full((args.batch,), args.input / 2.0, device=device)  # (B,) object scale, input px (OKS losses)

    def train_step() -> None:
        model.train()
        loss = model.compute_loss(model(images), keypoints, visibility, scale)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def infer() -> None:
        model.eval()
        with torch.no_grad():
            head.decode(model(images))

    model.eval()
    with torch.no_grad():
        raw_eval = model(images)
    # The loss alone runs on a leaf copy of a training-mode output, so its backward stops at the raw output.
    model.train()
    with torch.no_grad():
        raw_train = model(images)
    raw_train.requires_grad_(True)

    def loss_only() -> None:
        for _ in range(args.inner):
            model.compute_loss(raw_train, keypoints, visibility, scale)["loss"].backward()
            raw_train.grad = None

    def decode_only() -> None:
        head.eval()
        with torch.no_grad():
            for _ in range(args.inner):
                head.decode(raw_eval)

    # Warm-up of every measurement; the FLOP counter rides on the first step/inference (untimed anyway).
    train_flops = count_flops(train_step)
    infer_flops = count_flops(infer)
    loss_only()
    decode_only()
    sync(device)

    times: dict[str, list[float]] = {"train": [], "infer": [], "loss": [], "decode": []}
    peak: float | None = None
    for i in range(args.repeats):
        if i == 0:  # the first round's step also gives the peak memory (reset/read happen outside the timer)
            peak = peak_memory_mb(lambda: times["train"].append(timed(train_step, device)), device)
        else:
            times["train"].append(timed(train_step, device))
        times["infer"].append(timed(infer, device))
        times["loss"].append(timed(loss_only, device) / args.inner)
        times["decode"].append(timed(decode_only, device) / args.inner)
    ms = {k: 1000.0 * statistics.median(v) for k, v in times.items()}
    return {
        "head": label,
        "class": class_name,
        "init_args": init_args,
        "stride": stride,
        "grid": list(getattr(head, "grid_size", ())) or None,
        "train_ms": ms["train"],
        "infer_ms": ms["infer"],
        "decode_ms": ms["decode"],
        "loss_ms": ms["loss"],
        "loss_share": ms["loss"] / ms["train"],
        "decode_share": ms["decode"] / ms["train"],
        "peak_mb": peak,
        "params": sum(p.numel() for p in model.parameters()),
        "head_params": sum(p.numel() for p in head.parameters()),
        "train_gflops": train_flops / 1e9,
        "infer_gflops": infer_flops / 1e9,
        "times_s": times,
    }


# ---- output ---------------------------------------------------------------------------------------------
def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| head | stride | train ms | infer ms | decode ms | loss ms | loss % | decode % | peak MB | params M "
        "(head) | GFLOPs train / infer |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        peak = "n/a" if r["peak_mb"] is None else f"{r['peak_mb']:.0f}"
        lines.append(
            f"| {r['head']} | {r['stride'] or '–'} | {r['train_ms']:.1f} | {r['infer_ms']:.1f} | "
            f"{r['decode_ms']:.3f} | {r['loss_ms']:.3f} | {100 * r['loss_share']:.2f} | "
            f"{100 * r['decode_share']:.2f} | {peak} | {r['params'] / 1e6:.2f} ({r['head_params'] / 1e6:.2f}) | "
            f"{r['train_gflops']:.1f} / {r['infer_gflops']:.1f} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--input", type=int, default=256, help="square input size, pixels")
    parser.add_argument("--batch", type=int, default=None, help="default: 8 on CUDA, 2 on the CPU")
    parser.add_argument("--keypoints", type=int, default=16)
    parser.add_argument("--strides", type=int, nargs="+", default=None,
                        help="default: 4 8 16 32 on CUDA; 4 32 on the CPU (keeps the run to ~3 minutes)")
    parser.add_argument("--heads", nargs="+", default=None,
                        help=f"labels to run (default all): {[v[0] for v in VARIANTS]}")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds (default: 20 CUDA, 3 CPU)")
    parser.add_argument("--inner", type=int, default=None, help="loss/decode calls per round (default 10, CPU 5)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--json", default="runs/benchmarks/heads.json", help="where the JSON goes ('' = not written)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: test_resnet, 64 px, batch 2, strides 4 and 32, one round")
    args = parser.parse_args(argv)
    cuda = args.device.startswith("cuda")
    if args.quick:
        args.backbone, args.input, args.strides = "test_resnet", 64, [4, 32]
        args.batch = args.batch or 2
        args.repeats, args.inner = args.repeats or 1, args.inner or 1
    args.strides = args.strides or (list(STRIDES) if cuda else [4, 32])
    args.batch = args.batch or (8 if cuda else 2)
    args.repeats = args.repeats or (20 if cuda else 3)
    args.inner = args.inner or (10 if cuda else 5)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    else:
        torch.backends.cudnn.benchmark = True
    wanted = set(args.heads) if args.heads else None
    rows = []
    start = time.perf_counter()
    for label, class_name, init_args in VARIANTS:
        if wanted is not None and label not in wanted:
            continue
        strides: list[int | None] = list(args.strides) if getattr(heads, class_name).has_output_stride else [None]
        for stride in strides:
            rows.append(measure(args, label, class_name, init_args, stride, device))
            r = rows[-1]
            print(f"  {label:<18} stride {stride or '-':>2}: train {r['train_ms']:8.1f} ms, loss "
                  f"{100 * r['loss_share']:.2f} %, decode {100 * r['decode_share']:.3f} %", file=sys.stderr)
    threads = f", {torch.get_num_threads()} thread(s)" if device.type == "cpu" else ""
    setting = (f"{args.backbone}, {args.input}×{args.input}, batch {args.batch}, {args.keypoints} keypoints, "
               f"{device.type}{threads}, fp32, medians of {args.repeats} rounds")
    print(f"Head costs: {setting}\n")
    print(markdown_table(rows))
    result = {"setting": {k: v for k, v in vars(args).items() if k != "json"}, "torch": torch.__version__,
              "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "wall_s": time.perf_counter() - start, "rows": rows}
    write_json(args.json, result)


if __name__ == "__main__":
    main()
