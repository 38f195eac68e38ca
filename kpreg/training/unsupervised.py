"""Unsupervised losses on unlabelled video (Lightning Pose, Biderman et al., Nature Methods 2024), for every head
that declares a differentiable keypoint (``Head.soft_coords_source``).

A training step with unlabelled clips (``kpreg.data.unlabelled``: N clips of T consecutive frames, one augmentation
per clip) runs the labelled images and the clips' frames through the network as one batch; the clips' raw outputs
become keypoints through ``head.soft_coords`` (decode where decode is differentiable, else the head's stand-in),
are mapped back to the video's pixels with the clip's ``affine_inv`` (undoing its warp and flip), and give::

    temporal   (N·(T−1), K)  max(‖x_{t+1} − x_t‖ − ε_t, 0)    a keypoint moves little between neighbouring frames
    pca        (N·T, K)      max(r_k − ε_k, 0)                a pose stays near the span of the labelled poses
                             r_k: the keypoint's distance from the pose-PCA projection (``kpreg.posepca``)

both in pixels of the video frame, each reduced by the one shared reduction (``kpreg.losses.reduce_keypoint_losses``,
every keypoint of a clip counts) and added to the supervised loss with its weight. The pose PCA is fitted once,
before the first step, on the training split's labelled poses (``KeypointDataModule.labelled_poses``), stored in the
checkpoint, and read by ``predict.py`` to score video frames.

``UnsupervisedLosses`` is the config (``model.unsupervised``); ``UnsupervisedTerms`` holds the PCA and computes the
terms. A head with no differentiable keypoint is refused with one message when the module is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from kpreg.coords import apply_affine
from kpreg.data.unlabelled import unpermute_flipped
from kpreg.heads.base import Head
from kpreg.losses import epsilon_insensitive, reduce_keypoint_losses, temporal_difference
from kpreg.posepca import DEFAULT_VARIANCE, PosePCA


@dataclass(frozen=True)
class UnsupervisedLosses:
    """The unsupervised losses of ``model.unsupervised`` (both in pixels of the video frame).

    temporal_weight: weight of the temporal-difference loss (0: off).
    temporal_epsilon: px a keypoint may move between neighbouring frames of a clip at no cost.
    pca_weight: weight of the pose-PCA loss (0: off).
    pca_components: the PCA's axes: a number (int), or the share of the labelled poses' variance they explain
        (float in (0, 1); Lightning Pose's 0.99).
    pca_epsilon: px a keypoint may lie off the PCA's span at no cost; None: per keypoint, the 90th percentile of the
        labelled poses' cross-fitted residuals (``kpreg.posepca``).
    """

    temporal_weight: float = 0.0
    temporal_epsilon: float = 0.0
    pca_weight: float = 0.0
    pca_components: int | float = DEFAULT_VARIANCE
    pca_epsilon: float | None = None

    def __post_init__(self) -> None:
        for name in ("temporal_weight", "temporal_epsilon", "pca_weight"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"model.unsupervised.{name} must be >= 0, got {getattr(self, name)}")
        if self.pca_epsilon is not None and not self.pca_epsilon >= 0:
            raise ValueError(f"model.unsupervised.pca_epsilon must be >= 0 px (or null), got {self.pca_epsilon}")

    @property
    def active(self) -> bool:
        return self.temporal_weight > 0 or self.pca_weight > 0


def refuse_head(head: Head) -> None:
    """A ``ValueError`` for a head with no differentiable keypoint (the unsupervised losses need one)."""
    if not head.soft_coords_source:
        raise ValueError(
            f"model.unsupervised: {type(head).__name__} has no differentiable keypoint (its decode is not "
            "differentiable and it declares no stand-in, Head.soft_coords_source), so the temporal and pose-PCA "
            "losses cannot train it; use another head or set model.unsupervised to null")


class UnsupervisedTerms(nn.Module):
    """Args:
    options: the losses' weights and ε.
    num_keypoints: K.
    flip_pairs: the keypoints' left/right pairs (a flipped clip's keypoints are swapped back).
    """

    def __init__(self, options: UnsupervisedLosses, num_keypoints: int, flip_pairs: Sequence[Sequence[int]]) -> None:
        super().__init__()
        self.options = options
        self.flip_pairs = [(int(a), int(b)) for a, b in flip_pairs]
        self.pca = PosePCA(num_keypoints) if options.pca_weight > 0 else None

    @property
    def needs_fit(self) -> bool:
        return self.pca is not None and not self.pca.is_fitted()

    def fit(self, poses: np.ndarray, labelled: np.ndarray) -> None:
        """The pose PCA from the training split's labelled poses (N, K, 2) px and their (N, K) labelled mask."""
        if self.pca is not None:
            self.pca.fit(poses, labelled, self.options.pca_components, self.options.pca_epsilon)

    def video_keypoints(self, head: Head, raw: torch.Tensor, clips: dict[str, Any]) -> torch.Tensor:
        """The clips' raw outputs (N·T, …) → (N, T, K, 2) differentiable keypoints in the video's pixels."""
        n, t = clips["images"].shape[:2]
        coords = head.soft_coords(raw)  # (N·T, K, 2) input pixels
        coords = coords.view(n, t, *coords.shape[1:])  # (N, T, K, 2)
        affine = clips["affine_inv"].to(coords.dtype)[:, None]  # (N, 1, 2, 3) input → video pixels
        video = apply_affine(coords, affine)  # (N, T, K, 2) video pixels
        return unpermute_flipped(video, clips["flipped"].to(coords.device), self.flip_pairs)

    def forward(self, keypoints: torch.Tensor) -> dict[str, torch.Tensor]:
        """(N, T, K, 2) video pixels → ``{"loss": the weighted sum, "temporal": …, "pca": …}``, each term the mean
        over keypoints of its ε-insensitive distance (px, unweighted: the logged value)."""
        o = self.options
        n, t, k, _ = keypoints.shape
        out: dict[str, torch.Tensor] = {}
        total = keypoints.new_zeros(())
        if o.temporal_weight > 0:
            term = temporal_difference(keypoints, o.temporal_epsilon).reshape(n * (t - 1), k)  # (N(T−1), K)
            out["temporal"] = reduce_keypoint_losses(term, torch.ones_like(term))
            total = total + o.temporal_weight * out["temporal"]
        if self.pca is not None:
            eps = self.pca.epsilon.to(keypoints.dtype)  # (K,) px
            term = epsilon_insensitive(self.pca.residual(keypoints), eps).reshape(n * t, k)  # (N·T, K)
            out["pca"] = reduce_keypoint_losses(term, torch.ones_like(term))
            total = total + o.pca_weight * out["pca"]
        return {"loss": total, **out}

    def state(self) -> dict[str, Any]:
        """Plain data for the checkpoint: the options and the fitted PCA (``predict.py`` scores frames with them)."""
        return {"temporal_epsilon": float(self.options.temporal_epsilon),
                "pose_pca": self.pca.state() if self.pca is not None and self.pca.is_fitted() else None}
