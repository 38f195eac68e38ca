"""What "a correct keypoint" means in kpreg: one definition for calibration, the uncertainty figures and the
confidence scores.

A labelled keypoint is **correct** when its error, in original-image pixels, is at most ``threshold`` times the
sample's own scale ``meta.norm_length``::

    correct  ⇔  ‖pred − gt‖ ≤ threshold · norm_length

with the threshold the dataset declares (``EvaluationSpec.correct_threshold``, ``kpreg.formats.layout``): PCKh@0.5
on head-normalised data (MPII, synthetic: ``norm_length`` is the head size), PCK@0.1 of the instance box's larger
side everywhere else (COCO, DeepLabCut / Lightning Pose projects). It is the event that the dataset's own PCK /
PCKh column counts, so the mean calibrated confidence over a set estimates that column. ``docs/calibration.md``
says why this definition and not COCO's per-keypoint OKS similarity.
"""

from __future__ import annotations

import torch

from kpreg.formats.layout import DEFAULT_CORRECT_THRESHOLD, ScaleKind


def normalised_error(pred: torch.Tensor, gt: torch.Tensor, norm_length: torch.Tensor) -> torch.Tensor:
    """(B, K) ``‖pred − gt‖ / norm_length`` in float64: pred, gt (B, K, 2) x,y original pixels; norm_length (B,)
    in the same pixels. A sample of scale 0 gives ``inf`` (or NaN for a zero error): callers drop non-finite rows."""
    err = (pred.to(torch.float64) - gt.to(pred.device, torch.float64)).norm(dim=-1)  # (B, K) original px
    return err / norm_length.to(pred.device, torch.float64)[:, None]  # (B, K) scales


def correct_keypoints(
    pred: torch.Tensor, gt: torch.Tensor, norm_length: torch.Tensor, threshold: float
) -> torch.Tensor:
    """(B, K) bool: ``‖pred − gt‖ ≤ threshold · norm_length`` (see the module docstring). Invisible keypoints get a
    value too; callers keep the labelled ones."""
    if not threshold > 0.0:
        raise ValueError(f"correct_keypoints: the threshold must be positive, got {threshold}")
    return normalised_error(pred, gt, norm_length) <= threshold


def describe_correct(scale: ScaleKind, threshold: float | None = None) -> str:
    """The event in words, for files and reports: ``error ≤ 0.5 × head size (PCKh@0.5)``."""
    t = DEFAULT_CORRECT_THRESHOLD[scale] if threshold is None else float(threshold)
    if scale == "head":
        return f"error ≤ {t:g} × head size (PCKh@{t:g})"
    return f"error ≤ {t:g} × the larger side of the instance box (PCK@{t:g})"
