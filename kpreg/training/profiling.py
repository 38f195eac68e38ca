"""Model cost for comparisons: parameter count, FLOPs and forward latency of ``backbone → head``.

Measured on a CPU copy with batch 1, so that numbers from runs trained on different machines or
accelerators stay comparable, and so that measuring never touches the weights, buffers or random state
of the model being trained.
"""

from __future__ import annotations

import copy
import statistics
import time
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def profile_model(
    backbone: nn.Module, head: nn.Module, input_size: tuple[int, int], runs: int = 7, warmup: int = 2
) -> dict[str, Any]:
    """→ ``{"params", "flops", "latency_ms", "latency_device", "latency_threads"}`` for one (1, 3, H, W) input.

    ``flops`` counts a multiply-add as 2 (``torch.utils.flop_counter``'s convention). ``latency_ms`` is the
    median of ``runs`` timed forwards after ``warmup`` untimed ones, in eval mode without autograd.
    """
    model = copy.deepcopy(nn.Sequential(backbone, head)).cpu().float().eval()
    h, w = int(input_size[0]), int(input_size[1])
    # A fixed input from its own generator: the global random stream stays untouched (reproducible training).
    images = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        counter = FlopCounterMode(display=False)
        with counter:
            model(images)
        for _ in range(warmup):
            model(images)
        times = []
        for _ in range(max(1, runs)):
            start = time.perf_counter()
            model(images)
            times.append(time.perf_counter() - start)
    return {
        "params": count_parameters(model),
        "flops": int(counter.get_total_flops()),
        "latency_ms": 1000.0 * statistics.median(times),
        "latency_device": "cpu",
        "latency_threads": torch.get_num_threads(),
    }
