"""``KeypointNetwork``: the one forward path of kpreg.

::

    images (B, 3, H, W) normalised
      ─▶ backbone ─▶ head ─▶ raw output                        training stops here (the head's loss reads it)
      ─▶ flip test: one batched pass over the images and their mirrors (2B), merged by the head
      ─▶ decode: coords (B, K, 2) x,y input pixels, the head's raw confidence (B, K) [and spread (B, K)]
      ─▶ confidence map (the checkpoint's calibration): P(correct)   where the model has one

Training, validation, ``evaluate.py``, ``kpreg.load`` / ``predict.py`` and ``export.py`` all run this object; the
exported ONNX / TorchScript graph is this module traced (``forward``). The flip test is a plain boolean: with it
the batch and its mirror image go through the network as one batch of 2B (eval-mode BatchNorm keeps samples
independent, so this equals two passes up to float rounding) and ``Head.flip_merge`` averages them in coordinate
space. The spread is the unflipped pass's: ``flip_merge`` averages coordinates, not distributions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from kpreg.backbone import Backbone
from kpreg.heads.base import Head
from kpreg.metrics.calibration import ConfidenceMap


class FlipTestError(ValueError):
    """A flip test on a model that never learned mirrored images (no left/right pairs, no flip augmentation)."""


def check_flip_test_sound(flip_pairs: Sequence[Sequence[int]], flip_augmentation: bool | None, setting: str) -> None:
    """The one rule for a flip test, applied by every entry point (train, evaluate, predict, the Python API, export):
    it averages the prediction on the mirrored image, which only means something if the data is mirror-symmetric up
    to its left/right pairs, or if training flipped images (the model then learned mirrored ones).
    ``flip_augmentation`` None: not recorded (a checkpoint from before it was); only the pairs count then."""
    if flip_pairs or flip_augmentation:
        return
    raise FlipTestError(
        f"{setting}: a flip test on a model without left/right flip pairs that was trained without flip "
        "augmentation averages in a prediction on a mirrored image it never learned: leave the flip test off "
        "(--no-flip, model.flip_test: false), or declare flip pairs / flip images in training")


class NetworkOutput(NamedTuple):
    """What an evaluation pass produces, before calibration."""

    raw: torch.Tensor  # the head's raw output of the unflipped images (its own layout)
    coords: torch.Tensor  # (B, K, 2) x,y input pixels (flip-merged with the flip test)
    raw_confidence: torch.Tensor  # (B, K) the head's own score (flip-merged with the flip test)
    spread: torch.Tensor | None  # (B, K) input px² of the unflipped pass, for heads with a distribution


class KeypointNetwork(nn.Module):
    """backbone → head → [flip test] → decode → [confidence map]; see the module docstring.

    Args:
        backbone: (B, 3, H, W) → (B, C, h, w) features.
        head: a built head (``head.build(spec)`` done).
        flip_pairs: the keypoints' left/right index pairs (the flip test swaps them).
        flip_test: average each prediction with the mirrored image's.
        confidence_map: raw confidence → P(correct) (the checkpoint's calibration); None: the raw score.
        channels_last: feed the backbone NHWC tensors (weights must be converted by the owner as well).
    """

    def __init__(self, backbone: Backbone | nn.Module, head: Head, flip_pairs: Sequence[Sequence[int]] = (),
                 flip_test: bool = False, confidence_map: ConfidenceMap | None = None,
                 channels_last: bool = False) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.flip_pairs = [(int(a), int(b)) for a, b in flip_pairs]
        self.flip_test = bool(flip_test)
        self.confidence_map = confidence_map
        self.channels_last = bool(channels_last)

    @property
    def input_size(self) -> tuple[int, int]:
        return tuple(self.head.spec.input_size)  # type: ignore[return-value]

    @property
    def num_keypoints(self) -> int:
        return int(self.head.spec.num_keypoints)

    def raw(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised images → the head's raw output (what its loss reads)."""
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.head(self.backbone(images))

    def run(self, images: torch.Tensor, with_spread: bool = True) -> NetworkOutput:
        """(B, 3, H, W) → decoded keypoints with the head's raw confidence (the flip test as configured)."""
        if self.flip_test:
            b = images.shape[0]
            both = self.raw(torch.cat((images, images.flip(-1)), dim=0))  # (2B, …) the crops, then their mirrors
            raw = both[:b]
            coords, confidence = self.head.flip_merge(raw, both[b:], self.flip_pairs)
        else:
            raw = self.raw(images)
            coords, confidence = self.head.decode(raw)
        spread = self.head.spread(raw) if with_spread else None
        return NetworkOutput(raw, coords, confidence, spread)

    def calibrate(self, raw_confidence: torch.Tensor, spread: torch.Tensor | None) -> torch.Tensor:
        """(B, K) raw confidence [and spread] → P(correct) through the confidence map; the raw score without one."""
        if self.confidence_map is None:
            return raw_confidence
        return self.confidence_map(raw_confidence, spread if self.confidence_map.uses_spread else None)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) normalised crops → coords (B, K, 2) x,y input pixels, confidence (B, K) (P(correct) where
        the network has a confidence map). The signature of the exported graphs."""
        uses_spread = self.confidence_map is not None and self.confidence_map.uses_spread
        out = self.run(images, with_spread=uses_spread)
        return out.coords, self.calibrate(out.raw_confidence, out.spread)

    def describe_confidence(self) -> str:
        """What ``forward``'s confidence is, in words."""
        if self.confidence_map is None:
            return "the head's raw score (not calibrated)"
        return "P(correct): calibrated (" + self.confidence_map.extra_repr() + ")"
