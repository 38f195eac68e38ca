"""Learning-rate schedules that LightningCLI can configure by ``class_path``."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


class WarmupCosine(LambdaLR):
    """Linear warm-up from ``warmup_start_factor × lr`` over ``warmup_steps``, then cosine decay to
    ``min_factor × lr`` at ``max_steps``. Stepped every optimizer step (``interval = "step"``).

    ``max_steps=None`` is filled in by ``KeypointModule`` with the trainer's total number of steps.
    """

    interval = "step"

    def __init__(
        self,
        optimizer: Optimizer,
        warmup_steps: int = 100,
        max_steps: int | None = None,
        warmup_start_factor: float = 0.01,
        min_factor: float = 0.0,
    ) -> None:
        self.warmup_steps = warmup_steps
        self.max_steps = max_steps
        self.warmup_start_factor = warmup_start_factor
        self.min_factor = min_factor
        super().__init__(optimizer, self.factor)

    def factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.warmup_start_factor + (1 - self.warmup_start_factor) * step / max(1, self.warmup_steps)
        total = self.max_steps if self.max_steps is not None else step + 1
        progress = min(1.0, (step - self.warmup_steps) / max(1, total - self.warmup_steps))
        return self.min_factor + (1 - self.min_factor) * 0.5 * (1 + math.cos(math.pi * progress))
