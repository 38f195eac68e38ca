"""What the head tests share: a tiny backbone, head construction, random batches, the reduced loss, round trips."""

from __future__ import annotations

import inspect

import torch

import kpreg.heads
from kpreg.backbone import Backbone
from kpreg.heads import Head, HeadSpec
from kpreg.losses import reduce_keypoint_losses

HEADS = list(kpreg.heads.__all__)
SIZE = 64  # input H = W
K = 4
FLIP_PAIRS = [(0, 1)]  # joints 0/1 are a left/right pair, 2/3 are on their own
SIGMAS = (0.05, 0.05, 0.08, 0.08)  # OKS sigmas of the K test keypoints


def head_class(name: str) -> type[Head]:
    return getattr(kpreg.heads, name)


def accepts(cls: type[Head], arg: str) -> bool:
    return arg in inspect.signature(cls.__init__).parameters


def make_head(name: str, backbone: Backbone, **kwargs: object) -> Head:
    cls = head_class(name)
    if accepts(cls, "neck_channels"):
        kwargs.setdefault("neck_channels", 16)  # a thin neck keeps the suite fast; defaults are tested elsewhere
    head = cls(**kwargs)
    head.build(HeadSpec(backbone.channels, backbone.stride, K, (SIZE, SIZE), SIGMAS))
    return head


def random_batch(b: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    images = torch.randn(b, 3, SIZE, SIZE)
    keypoints = torch.rand(b, K, 2) * (SIZE - 1)  # (B, K, 2) x,y input pixels
    visibility = torch.ones(b, K)
    visibility[0, 1] = 0
    return images, keypoints, visibility


def fit_if_needed(head: Head, keypoints: torch.Tensor, visibility: torch.Tensor) -> None:
    """What the module does before training: heads that learn from the training keypoints see them once — here the
    given keypoints and 62 more random poses (a "training set" large enough for k-means anchors)."""
    if head.needs_fit and not head.is_fitted():
        g = torch.Generator().manual_seed(3)
        extra = torch.rand(62, *keypoints.shape[1:], generator=g) * (max(head.spec.input_size) - 1)
        head.fit(torch.cat([keypoints, extra.to(keypoints)]),
                 torch.cat([visibility, torch.ones(62, keypoints.shape[1]).to(visibility)]))


def total_loss(head: Head, raw: torch.Tensor, keypoints: torch.Tensor, visibility: torch.Tensor,
               scale: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(the optimised loss, the per-keypoint terms) as ``KeypointModule.compute_loss`` reduces them."""
    if scale is None:
        scale = torch.full((len(raw),), SIZE / 2.0)
    terms = head.loss(raw, keypoints, visibility, scale)
    return reduce_keypoint_losses(sum(terms.values()), visibility), terms


def round_trip_error(head: Head, input_size: int = 256, soft: bool = False) -> torch.Tensor:
    """(N, K, 2) |decode(ideal_output(k)) − k| per axis (``soft``: ``soft_coords`` instead of decode), input pixels,
    keypoints in the central half of the input."""
    head.build(HeadSpec(8, 32, K, (input_size, input_size), SIGMAS))
    g = torch.Generator().manual_seed(0)
    keypoints = input_size / 4 + torch.rand(32, K, 2, generator=g) * input_size / 2
    fit_if_needed(head, keypoints, torch.ones(32, K))
    with torch.no_grad():
        raw = head.eval().ideal_output(keypoints)
        coords = head.soft_coords(raw) if soft else head.decode(raw)[0]
    return (coords - keypoints).abs()
