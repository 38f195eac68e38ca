"""OKS loss: one minus the object keypoint similarity of each keypoint, as a differentiable per-keypoint loss
(YOLO-Pose, Maji et al., CVPRW 2022, "YOLO-Pose: Enhancing YOLO for Multi Person Pose Estimation Using Object
Keypoint Similarity Loss").

Per keypoint, with ``d`` the Euclidean distance between prediction and ground truth in input pixels, ``s``
the sample's scale in input pixels (``s² = area``, COCO's OKS scale) and ``σ`` the dataset's OKS sigma in
COCOeval units (nose = 0.026, so ``k = 2σ``)::

    L = 1 − exp(−d² / (2 s² k²))

which is exactly pycocotools' ``e = d² / (2σ)² / area / 2`` (``kpreg.metrics.oks``) inside ``1 − exp(−e)``.
Its mean over the visible keypoints of a sample is ``1 − OKS``, YOLO-Pose's loss; kpreg's shared reduction
(``masked_mean`` over visible keypoints) therefore optimises ``1 − OKS`` directly.

Gradient with respect to the prediction ``p`` (target ``t``)::

    ∂L/∂p = (p − t) / (s² k²) · exp(−d² / (2 s² k²))

It is 0 at ``d = 0`` (the loss is smooth there: no square root of ``d²`` is taken) and ``≈ d / (s² k²)`` in
magnitude near it, i.e. an L2 loss with a per-keypoint weight ``1 / (s k)²``; far away it saturates (the
gradient decays like ``d · exp(−d²/…)``), so a badly wrong keypoint stops pulling — robust, but it also
means a model that starts far from the targets gets little signal: use it with a head whose initial
predictions are near the mean pose (FC, soft-argmax, DSNT) or combined with a coordinate loss.

Only the input-pixel form exists. A head that works in normalised coordinates converts its prediction with
``kpreg.coords.normalized_to_pixels`` first: the conversion is affine, so the gradient flows through it, and
doing the distance in pixels keeps the aspect ratio right (``x`` and ``y`` normalise by ``W`` and ``H``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from kpreg.ops import at_least_float32

MIN_AREA = 1.0  # input px²: keeps the exponent finite for a degenerate (zero-area) sample
OKS: Literal["oks"] = "oks"  # the name of the OKS choice in the heads' ``loss`` arguments


class OKSScaleMissingError(ValueError):
    """The OKS loss was asked for without the samples' scale."""


class OKSSigmasMissingError(ValueError):
    """The OKS loss was chosen for data that declares no (or the wrong number of) OKS sigmas."""


def check_oks_sigmas(sigmas: Sequence[float], num_keypoints: int, where: str) -> None:
    """Fail at build time, before any training step, where a head was given ``loss: oks`` but the data declares
    no OKS sigma per keypoint. ``where`` names the head's argument, e.g. ``"FCHead: loss 'oks'"``."""
    if len(sigmas) == num_keypoints and all(float(s) > 0 for s in sigmas):
        return
    found = "none" if not len(sigmas) else f"{len(sigmas)} ({', '.join(f'{float(s):g}' for s in sigmas)})"
    raise OKSSigmasMissingError(
        f"{where} needs one positive OKS sigma per keypoint ({num_keypoints}), but the data declares {found}: "
        "use data that declares them (the datamodule's sigmas, linked to model.sigmas; COCO-format data takes "
        "data.init_args.sigmas) or choose another loss"
    )


def oks_kappa(sigmas: Sequence[float] | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(K,) per-keypoint ``k = 2σ`` from COCOeval-unit ``sigmas``, on ``like``'s device and float dtype."""
    return 2.0 * torch.as_tensor(sigmas, dtype=like.dtype, device=like.device)


def oks_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    scale: torch.Tensor | None,
    sigmas: Sequence[float] | torch.Tensor,
) -> torch.Tensor:
    """Per-keypoint OKS loss ``1 − exp(−d² / (2 s² k²))``.

    pred, target: (B, K, 2) x,y input pixels.  scale: (B,) the sample's scale ``s = sqrt(area)`` in input
    pixels (areas below ``MIN_AREA`` px² are raised to it).  sigmas: (K,) COCOeval sigmas.
    returns: (B, K) in [0, 1). Invisible keypoints get a value like any other; the caller masks them.
    """
    if scale is None:
        raise OKSScaleMissingError(
            "the OKS loss needs each sample's scale (sqrt of its area, input pixels), but the batch has none: "
            "use a dataset that provides it (COCO segment areas, or 0.53 x box area) or another loss"
        )
    p, t = at_least_float32(pred), at_least_float32(target)
    if p.shape != t.shape or p.ndim != 3 or p.shape[-1] != 2:
        raise ValueError(f"OKS loss: pred {tuple(p.shape)} and target {tuple(t.shape)} must both be (B, K, 2)")
    kappa = oks_kappa(sigmas, p)  # (K,)
    if kappa.shape != (p.shape[1],):
        raise ValueError(f"OKS loss: {kappa.numel()} sigmas for {p.shape[1]} keypoints")
    s = at_least_float32(scale).to(p.dtype)
    if s.shape != (p.shape[0],):
        raise ValueError(f"OKS loss: scale has shape {tuple(s.shape)}, expected ({p.shape[0]},)")
    area = (s * s).clamp(min=MIN_AREA)  # (B,) input px²
    d2 = (p - t).pow(2).sum(-1)  # (B, K) squared distance, input px²
    e = d2 / (2.0 * area[:, None] * kappa**2)  # (B, K) pycocotools' e
    # 1 − exp(−e) as −expm1(−e): exact to the last bit for tiny e, where the loss is ≈ e.
    return -torch.expm1(-e)
