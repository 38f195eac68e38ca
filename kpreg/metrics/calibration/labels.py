"""What "correct" means for a keypoint, and the features a calibrator sees."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kpreg.metrics.calibration.inputs import ArrayLike, CalibrationError

MIN_LOG_SPREAD_PX2 = 1e-6  # spreads are floored before the log (a degenerate one-cell distribution has 0)


def keypoint_similarity(error: torch.Tensor, scale: torch.Tensor, sigmas: ArrayLike) -> torch.Tensor:
    """COCO's per-keypoint similarity ``ks = exp(−d² / (2 s² (2σ)²))`` (as ``COCOeval.computeOks``).

    error (B, K) pixel distances; scale (B,) ``s = sqrt(area)`` in the same pixels; sigmas (K,) in COCOeval
    units (COCO's nose 0.026). Returns (B, K) in (0, 1].
    """
    sig = torch.as_tensor(sigmas, dtype=torch.float64, device=error.device)  # (K,)
    if error.ndim != 2 or scale.shape != error.shape[:1] or sig.shape != error.shape[1:]:
        raise CalibrationError(f"keypoint_similarity: error {tuple(error.shape)}, scale {tuple(scale.shape)} "
                               f"and sigmas {tuple(sig.shape)} must be (B, K), (B,) and (K,)")
    var = (2.0 * sig) ** 2  # (K,) COCOeval's ``vars``
    s2 = scale.to(torch.float64).pow(2)[:, None]  # (B, 1) object area
    return torch.exp(-error.to(torch.float64).pow(2) / (2.0 * s2 * var))  # (B, K)


def correct_keypoints(
    pred: torch.Tensor, gt: torch.Tensor, scale: torch.Tensor, sigmas: ArrayLike, threshold: float = 0.5
) -> torch.Tensor:
    """(B, K) bool: the keypoint's OKS similarity is ≥ ``threshold``, i.e. its error is at most
    ``2σ_k · s · sqrt(−2 ln threshold)`` (≈ 2.35 σ_k s at 0.5: 6 % of s for COCO's nose, 25 % for a hip).

    pred, gt (B, K, 2) x,y pixels (any one space); scale (B,) ``sqrt(area)`` in the same pixels; sigmas (K,).
    Invisible keypoints get a value too; callers keep only the visible ones (:func:`gather_calibration_set`).
    """
    if not 0.0 < threshold < 1.0:
        raise CalibrationError(f"correct_keypoints: threshold must be in (0, 1), got {threshold}")
    error = (pred.to(torch.float64) - gt.to(torch.float64)).norm(dim=-1)  # (B, K) pixels
    return keypoint_similarity(error, scale, sigmas) >= threshold


def calibration_features(confidence: ArrayLike, spread: ArrayLike | None = None) -> torch.Tensor:
    """Raw confidence (any shape) and optional spread (same shape, input px²) → (N, F) float64 features:
    column 0 the raw confidence, column 1 ``log(max(spread, 1e-6))`` when a spread is given."""
    conf = torch.as_tensor(confidence, dtype=torch.float64).reshape(-1)  # (N,)
    if spread is None:
        return conf[:, None]  # (N, 1)
    var = torch.as_tensor(spread, dtype=torch.float64, device=conf.device).reshape(-1)  # (N,) px²
    if var.shape != conf.shape:
        raise CalibrationError(f"calibration_features: spread has {var.numel()} values, confidence {conf.numel()}")
    return torch.stack((conf, var.clamp(min=MIN_LOG_SPREAD_PX2).log()), dim=1)  # (N, 2)


@dataclass
class CalibrationSet:
    """Flattened visible keypoints of a validation run: what :func:`choose_method` and :func:`cross_fit` take."""

    features: torch.Tensor  # (N, F) float64
    correct: torch.Tensor  # (N,) bool
    keypoint_index: torch.Tensor  # (N,) int64 in [0, K)
    groups: torch.Tensor  # (N,) int64 sample index: all keypoints of one sample share a fold


def gather_calibration_set(
    confidence: torch.Tensor,
    correct: torch.Tensor,
    visibility: torch.Tensor,
    spread: torch.Tensor | None = None,
    sample_ids: torch.Tensor | None = None,
) -> CalibrationSet:
    """(B, K) raw confidence, correctness, visibility and optional spread → the visible keypoints, flattened.

    ``sample_ids`` (B,) groups samples for cross-fitting (e.g. the image id, so that two people of one image
    share a fold); default: one group per row.
    """
    b, k = confidence.shape
    for name, t in (("correct", correct), ("visibility", visibility), ("spread", spread)):
        if t is not None and tuple(t.shape) != (b, k):
            raise CalibrationError(f"gather_calibration_set: {name} is {tuple(t.shape)}, confidence {(b, k)}")
    ids = torch.arange(b) if sample_ids is None else torch.as_tensor(sample_ids).cpu().long()  # (B,)
    if ids.shape != (b,):
        raise CalibrationError(f"gather_calibration_set: sample_ids is {tuple(ids.shape)}, expected ({b},)")
    keep = visibility.cpu().bool()  # (B, K)
    feats = calibration_features(confidence.detach().cpu(), None if spread is None else spread.detach().cpu())
    return CalibrationSet(
        features=feats[keep.reshape(-1)],  # (N, F)
        correct=correct.cpu().bool()[keep],  # (N,)
        keypoint_index=torch.arange(k).expand(b, k)[keep],  # (N,)
        groups=ids[:, None].expand(b, k)[keep],  # (N,)
    )

