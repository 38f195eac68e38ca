"""The head interface. A head owns its layers, its targets, its loss and its decoding.

Lifecycle: the config instantiates a head with its own hyper-parameters only (``sigma``,
``output_stride`` …). ``KeypointModule`` then calls ``head.build(spec)`` with what only the backbone and
the data know (channels, stride, keypoint count, input size, OKS sigmas), which creates the layers. A head that
learns something from the training keypoints (``needs_fit``) gets them once through ``fit`` before training.
Nothing outside the head knows which head runs: the module only calls ``forward``, ``loss``, ``decode``,
``flip_merge`` and ``spread``, and reduces the per-keypoint losses in one place
(``kpreg.losses.reduce_keypoint_losses``).

What differs between heads beyond that is declared here, by the head class, never tested by name elsewhere:
``name`` (its config part ``configs/heads/<name>.yaml`` and its name in ``study.py --heads``), ``variants`` (the
settings worth round-tripping and benchmarking), ``has_output_stride``, ``has_confidence``,
``round_trip_tolerance()`` and ``soft_coords_source`` (what the unsupervised losses differentiate, ``soft_coords``).
"""

from __future__ import annotations

import functools
import inspect
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from kpreg.coords import flip_points, flip_values


def _plain(value: Any) -> Any:
    """A constructor argument as plain data (checkpoints load with ``weights_only=True``)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"head argument {value!r} is not plain data (numbers, strings, lists, dicts)")


@dataclass(frozen=True)
class HeadSpec:
    """What a head needs to know about its surroundings to build its layers."""

    in_channels: int  # channels of the backbone feature map
    in_stride: int  # stride of the backbone feature map, input pixels per feature cell
    num_keypoints: int
    input_size: tuple[int, int]  # (H, W) of the network input
    sigmas: tuple[float, ...] = ()  # OKS sigmas per keypoint (COCOeval units) where the dataset declares them


class Head(nn.Module, ABC):
    """Base class of all heads; subclasses implement ``_build``, ``forward``, ``loss``, ``decode`` and
    ``ideal_output``, and declare ``name`` and ``variants``."""

    spec: HeadSpec
    # Short name: configs/heads/<name>.yaml holds this head's config part, `study.py --heads <name>` selects it.
    name: ClassVar[str] = ""
    # Settings worth round-tripping and benchmarking, label → init arguments; the first are the defaults.
    variants: ClassVar[dict[str, dict[str, Any]]] = {}
    # Whether the head has an ``output_stride`` argument (a spatial output grid): studies sweep it.
    has_output_stride: ClassVar[bool] = False
    # Whether the head learns from the training keypoints before training (``fit``).
    needs_fit: ClassVar[bool] = False
    # Whether ``decode``'s confidence depends on the output (a peak, a spread, a probability). False for a head that
    # returns a constant (direct regression): calibration then maps it to the share of correct keypoints, the same
    # for every prediction, and it cannot rank errors or lower an instance score.
    has_confidence: ClassVar[bool] = True
    # What the unsupervised losses on unlabelled video (``kpreg.training.unsupervised``: temporal difference, pose PCA)
    # differentiate: ``soft_coords(raw)``, a keypoint that gradients flow through. ``"decode"``: decode's coordinates
    # are differentiable (an expectation, a regression) and are used as they are. Any other text names the
    # differentiable stand-in of a decode that is not (an arg-max), e.g. ``"soft-argmax of the heatmap"``. ``""``: the
    # head has none, and the unsupervised losses refuse it.
    soft_coords_source: ClassVar[str] = ""
    # The arguments the head was constructed with (all of them, defaults included), recorded by
    # ``__init_subclass__`` below: a checkpoint stores them, so that the head can be rebuilt from it alone.
    init_args: dict[str, Any]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return
        signature = inspect.signature(init)

        @functools.wraps(init)
        def recording_init(self: Head, *args: Any, **kw: Any) -> None:
            init(self, *args, **kw)
            if type(self).__init__ is recording_init:  # the most derived class's arguments are the head's
                bound = signature.bind(self, *args, **kw)
                bound.apply_defaults()
                object.__setattr__(self, "init_args", {k: _plain(v) for k, v in bound.arguments.items()
                                                       if k != "self"})

        cls.__init__ = recording_init  # type: ignore[method-assign]

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
        self,
        raw: torch.Tensor,
        keypoints: torch.Tensor,
        visibility: torch.Tensor,
        scale: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Named per-keypoint loss terms, each (B, K) float32 and already weighted: the optimised loss of keypoint
        k of sample b is their sum. The module reduces them (``kpreg.losses.reduce_keypoint_losses``); a head never
        reduces over keypoints or the batch. An invisible keypoint's terms may hold any finite value.

        keypoints: (B, K, 2) x,y input pixels.  visibility: (B, K), 0 = not labelled.
        scale: (B,) the object's scale in input pixels (sqrt of its area, COCO's OKS s), for scale-aware losses.
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

    def round_trip_tolerance(self) -> float:
        """The bound, in input pixels per axis, on ``|decode(ideal_output(k)) − k|`` for a 256 × 256 input and
        keypoints in its central half (the round-trip tests and ``benchmarks/round_trip.py`` check it)."""
        return 1e-3

    def soft_coords(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw output → (B, K, 2) x,y input pixels that gradients flow through (``soft_coords_source``): decode's
        coordinates where they are differentiable, else the head's stand-in (overridden)."""
        if self.soft_coords_source == "decode":
            return self.decode(raw)[0]
        raise NotImplementedError(f"{type(self).__name__} has no differentiable keypoint (soft_coords_source is "
                                  f"{self.soft_coords_source!r})")

    def soft_round_trip_tolerance(self) -> float:
        """The bound, in input pixels per axis, on ``|soft_coords(ideal_output(k)) − k|`` (as ``round_trip_tolerance``
        for decode; the same where ``soft_coords`` is decode)."""
        return self.round_trip_tolerance()

    def fit(self, keypoints: torch.Tensor, visibility: torch.Tensor) -> None:
        """Learn from the training set's keypoints once before training (heads with ``needs_fit``), e.g. anchor
        poses. keypoints (N, K, 2) x,y input pixels; visibility (N, K). What is learned lives in buffers, so it is
        saved in and restored from checkpoints."""

    def is_fitted(self) -> bool:
        """Whether ``fit`` has run (or its result was loaded from a checkpoint); always True without ``needs_fit``."""
        return True

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
