"""The head interface. A head owns its layers, its targets, its loss and its decoding.

Lifecycle: the config instantiates a head with its own hyper-parameters only (``sigma``,
``output_stride`` …). ``KeypointModule`` then calls ``head.build(spec)`` with what only the backbone and
the data know (channels, stride, keypoint count, input size), which creates the layers. Nothing outside
the head knows which head runs: the module only calls ``forward``, ``loss``, ``decode`` and
``flip_merge``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from kpreg.coords import flip_points, flip_values


@dataclass(frozen=True)
class HeadSpec:
    """What a head needs to know about its surroundings to build its layers."""

    in_channels: int  # channels of the backbone feature map
    in_stride: int  # stride of the backbone feature map, input pixels per feature cell
    num_keypoints: int
    input_size: tuple[int, int]  # (H, W) of the network input


class Head(nn.Module, ABC):
    """Base class of all heads; subclasses implement ``_build``, ``forward``, ``loss`` and ``decode``."""

    spec: HeadSpec

    def build(self, spec: HeadSpec) -> None:
        """Create the layers for ``spec``. Called once by the module before training or loading."""
        self.spec = spec
        self._build(spec)

    @abstractmethod
    def _build(self, spec: HeadSpec) -> None: ...

    @abstractmethod
    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) backbone features → the head's raw output (its own layout)."""

    @abstractmethod
    def loss(
        self, raw: torch.Tensor, keypoints: torch.Tensor, visibility: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Named loss terms; ``"loss"`` is the total that is optimised, the rest are logged.

        keypoints: (B, K, 2) x,y input pixels.  visibility: (B, K), 0 = contributes nothing.
        """

    @abstractmethod
    def decode(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw output → (coords (B, K, 2) x,y input pixels, confidence (B, K))."""

    def flip_merge(
        self, raw: torch.Tensor, raw_flipped: torch.Tensor, flip_pairs: Sequence[Sequence[int]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Flip test: average the prediction on the input and on its mirror image.

        The mirrored prediction is mapped back (x → W - 1 - x, left/right swapped) and averaged in
        coordinate space. On an input that is its own mirror image this is exactly mirror-symmetric:
        a midline joint lands on x = (W - 1) / 2 and a left/right pair on mirrored positions.
        """
        coords, scores = self.decode(raw)  # (B, K, 2) input pixels, (B, K)
        coords_f, scores_f = self.decode(raw_flipped)
        width = self.spec.input_size[1]
        coords_back = flip_points(coords_f, width, flip_pairs)  # (B, K, 2) input pixels
        scores_back = flip_values(scores_f, flip_pairs)  # (B, K)
        return (coords + coords_back) / 2.0, (scores + scores_back) / 2.0

    def ideal_output(self, keypoints: torch.Tensor) -> torch.Tensor:
        """The raw output a perfect network would give for (B, K, 2) x,y input-pixel ``keypoints``.

        The encode half of the head's encode/decode pair: ``decode(ideal_output(k))`` recovers ``k`` up to
        the representation's own error (the round-trip tests and ``benchmarks/round_trip.py`` measure it).
        """
        raise NotImplementedError(f"{type(self).__name__} does not define its ideal output")

    def spread(self, raw: torch.Tensor) -> torch.Tensor | None:
        """(B, K) predicted spread, Var[x] + Var[y] of the head's distribution in input pixels², for heads
        that predict a distribution (an uncertainty to rank predictions by); ``None`` otherwise."""
        return None

    def heatmaps(self, raw: torch.Tensor) -> torch.Tensor | None:
        """(B, K, h, w) maps to visualise, for heads that have them; ``None`` otherwise."""
        return None
