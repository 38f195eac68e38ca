"""Test-only head: a heatmap head whose training loss becomes NaN from a given call on.

It lives under tests/ (imported by train.py through PYTHONPATH in the fault tests), so no user of kpreg can
reach it by accident.
"""

from __future__ import annotations

import torch

from kpreg.heads import HeatmapHead


class NanLossHead(HeatmapHead):
    """``HeatmapHead`` whose loss is NaN on training calls ``nan_from_call``, ``nan_from_call + 1``, …
    (0-based), for ``nan_calls`` calls (0 = for ever)."""

    def __init__(self, nan_from_call: int = 5, nan_calls: int = 0, output_stride: int = 4, sigma: float = 2.0,
                 neck_channels: int | None = None, decoder: str = "quarter") -> None:
        super().__init__(output_stride=output_stride, sigma=sigma, neck_channels=neck_channels,
                         decoder=decoder)  # type: ignore[arg-type]
        self.nan_from_call = nan_from_call
        self.nan_calls = nan_calls
        self.calls = 0

    def loss(self, raw: torch.Tensor, keypoints: torch.Tensor, visibility: torch.Tensor,
             scale: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        terms = super().loss(raw, keypoints, visibility, scale)
        if self.training:
            call, self.calls = self.calls, self.calls + 1
            if call >= self.nan_from_call and (self.nan_calls == 0 or call < self.nan_from_call + self.nan_calls):
                terms = {k: v * float("nan") for k, v in terms.items()}
        return terms
