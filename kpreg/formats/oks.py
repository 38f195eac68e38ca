"""The COCO keypoint protocol's math: Object Keypoint Similarity, OKS-NMS and the top-down instance score.

What a COCO keypoint results file contains is defined here, so that writing a results file (``kpreg.data``), scoring
one (``kpreg.metrics``) and predicting on new images (``kpreg.inference``) agree exactly:

* Sigmas are in pycocotools' COCOeval units (nose = 0.026); the per-keypoint variance is ``(2 * sigma) ** 2``.
* An instance's score is ``box_score * mean(keypoint confidences > thr)`` (HRNet / mmpose), then greedy OKS-NMS
  per image.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from kpreg.formats.coco import COCO_SIGMAS

__all__ = ["oks", "oks_nms", "oks_nms_single", "instance_score", "make_results"]

_EPS = np.spacing(1)  # pycocotools adds this to the area


def oks(
    kpts_a: np.ndarray,
    kpts_b: np.ndarray,
    area: float | np.ndarray,
    sigmas: Sequence[float] | np.ndarray = COCO_SIGMAS,
) -> np.ndarray:
    """OKS between predicted keypoints ``kpts_a`` and ground truth ``kpts_b``.

    The formula of pycocotools' ``COCOeval.computeOks``::

        e_k = d_k^2 / (2 sigma_k)^2 / (area + eps) / 2
        OKS = mean over labelled GT keypoints (v > 0) of exp(-e_k)

    Args:
        kpts_a: ``(..., K, 2)`` or ``(..., K, 3)`` predictions; a third column is ignored.
        kpts_b: ``(..., K, 3)`` ground truth x, y, v (only v > 0 counts) or
            ``(..., K, 2)`` (all keypoints count).
        area: object area (the GT segment area in COCO), broadcast against the batch shape.
        sigmas: ``(K,)``.

    Returns:
        OKS with the broadcast batch shape of the inputs, e.g. ``a[:, None]`` (N, 1, K, 2)
        against ``b[None]`` (1, M, K, 3) gives the (N, M) matrix. A GT with no labelled
        keypoint gives 0 (pycocotools instead measures the distance to its doubled
        box; that needs the box and only matters for ignored/crowd GT).
    """
    a = np.asarray(kpts_a, dtype=np.float64)  # (..., K, 2|3)
    b = np.asarray(kpts_b, dtype=np.float64)  # (..., K, 2|3)
    var = (np.asarray(sigmas, dtype=np.float64) * 2) ** 2  # (K,)
    if a.shape[-1] < 2 or b.shape[-1] < 2 or a.shape[-2] != var.shape[0] or b.shape[-2] != var.shape[0]:
        raise ValueError(f"shapes {a.shape}, {b.shape} do not match {var.shape[0]} sigmas")
    dx = a[..., 0] - b[..., 0]  # (..., K)
    dy = a[..., 1] - b[..., 1]  # (..., K)
    area_ = np.asarray(area, dtype=np.float64)[..., None]  # (..., 1)
    # same operation order as pycocotools so that values agree to the last bit
    e = (dx**2 + dy**2) / var / (area_ + _EPS) / 2  # (..., K)
    if b.shape[-1] >= 3:
        labelled = np.broadcast_to(b[..., 2] > 0, e.shape)  # (..., K)
    else:
        labelled = np.ones(e.shape, dtype=bool)
    n = labelled.sum(-1)  # (...)
    total = np.where(labelled, np.exp(-e), 0.0).sum(-1)  # (...)
    return np.where(n > 0, total / np.maximum(n, 1), 0.0)


def oks_nms_single(
    kpts: np.ndarray,
    scores: np.ndarray,
    areas: np.ndarray,
    sigmas: Sequence[float] | np.ndarray = COCO_SIGMAS,
    thr: float = 0.9,
) -> np.ndarray:
    """Greedy OKS-NMS over the instances of ONE image.

    As in HRNet / mmpose ``oks_nms``: visit instances by descending score; keep the
    best remaining one and drop every remaining instance whose OKS with it is
    ``> thr``. The OKS between two predictions uses all K keypoints (no visibility
    threshold) and the mean of the two instances' areas, ``(a_i + a_j) / 2``, where
    the area is the one the caller supplies (HRNet/mmpose: the padded person box
    fed to the network, w*h; fallback: the keypoints' extent).
    Ties in score are broken by input order (stable sort), which mmpose leaves to
    ``argsort``.

    Args:
        kpts: ``(N, K, 2|3)`` x, y (original-image pixels).
        scores: ``(N,)`` instance scores.
        areas: ``(N,)``.

    Returns:
        indices of kept instances, in descending score order.
    """
    kpts = np.asarray(kpts, dtype=np.float64)  # (N, K, 2|3)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)  # (N,)
    areas = np.asarray(areas, dtype=np.float64).reshape(-1)  # (N,)
    n = kpts.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    xy = kpts[..., :2]  # (N, K, 2)
    pair_area = (areas[:, None] + areas[None, :]) / 2  # (N, N)
    sim = oks(xy[:, None], xy[None, :], pair_area, sigmas)  # (N, N), all keypoints count
    order = np.argsort(-scores, kind="stable")  # (N,)
    alive = np.ones(n, dtype=bool)
    keep: list[int] = []
    for i in order:
        if not alive[i]:
            continue
        keep.append(int(i))
        alive &= ~(sim[i] > thr)  # suppress OKS > thr (keep <= thr), as mmpose
        alive[i] = False
    return np.asarray(keep, dtype=np.int64)


def oks_nms(
    results: Sequence[Mapping[str, Any]],
    sigmas: Sequence[float] | np.ndarray = COCO_SIGMAS,
    thr: float = 0.9,
) -> list[int]:
    """OKS-NMS per image over COCO-style results.

    Each result needs ``image_id``, ``keypoints`` (flat ``[x, y, v]*K`` or ``(K, 2|3)``),
    ``score`` and ``area`` (see :func:`oks_nms_single` for which area; when missing,
    the keypoints' bounding-box area is used, as mmpose does without box sizes).

    Returns:
        indices (into ``results``) of the kept entries, ascending.
    """
    k = len(sigmas)
    by_image: dict[Any, list[int]] = defaultdict(list)
    for idx, r in enumerate(results):
        by_image[r["image_id"]].append(idx)
    kept: list[int] = []
    for idxs in by_image.values():
        kp = np.stack(
            [np.asarray(results[i]["keypoints"], dtype=np.float64).reshape(k, -1) for i in idxs]
        )  # (n, K, 2|3)
        sc = np.array([float(results[i]["score"]) for i in idxs])  # (n,)
        ar = np.array(
            [
                float(results[i]["area"]) if "area" in results[i] else _extent_area(kp[j])
                for j, i in enumerate(idxs)
            ]
        )  # (n,)
        kept.extend(idxs[j] for j in oks_nms_single(kp, sc, ar, sigmas, thr))
    return sorted(kept)


def _extent_area(kpts: np.ndarray) -> float:
    """Area of the keypoints' bounding box (mmpose's fallback when no box is known)."""
    xy = np.asarray(kpts)[..., :2]  # (K, 2)
    span = xy.max(0) - xy.min(0)  # (2,)
    return float(span[0] * span[1])


def instance_score(
    kp_scores: np.ndarray | torch.Tensor,
    box_score: np.ndarray | torch.Tensor,
    thr: float = 0.2,
) -> np.ndarray:
    """Top-down instance score, HRNet / mmpose ``score_mode='bbox_keypoint'``.

    ``box_score * mean(kp_scores[kp_scores > thr])`` (strictly greater). If no
    keypoint confidence exceeds ``thr`` the mean is taken as 0, so the instance
    score is 0 (mmpose initialises the mean to 0 and only divides when the count
    is non-zero).

    Args:
        kp_scores: ``(N, K)`` keypoint confidences.
        box_score: ``(N,)`` detector (box) scores; 1 for GT boxes.

    Returns:
        ``(N,)`` float64.
    """
    kp = _np(kp_scores).reshape(len(_np(box_score).reshape(-1)), -1)  # (N, K)
    box = _np(box_score).reshape(-1)  # (N,)
    valid = kp > thr  # (N, K)
    count = valid.sum(1)  # (N,)
    mean = np.where(count > 0, np.where(valid, kp, 0.0).sum(1) / np.maximum(count, 1), 0.0)  # (N,)
    return box * mean


def _np(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().to(torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def make_results(
    pred: np.ndarray,
    scores: np.ndarray,
    image_id: np.ndarray,
    box_score: np.ndarray,
    area: np.ndarray,
    category_id: int,
    sigmas: Sequence[float] | np.ndarray,
    use_nms: bool = True,
    nms_thr: float = 0.9,
    kp_score_thr: float = 0.2,
) -> list[dict[str, Any]]:
    """COCO keypoint results of N top-down instances: rescored (``instance_score``), then OKS-NMS per image.

    pred (N, K, 2) x,y original pixels; scores (N, K) keypoint confidences; image_id, box_score, area (N,) (area:
    the OKS-NMS area, HRNet / mmpose's padded box w × h). Each result's ``keypoints`` is ``[x, y, confidence]*K``
    (unshifted, the ground truth's convention) and ``score`` the instance score; ascending input order.
    """
    pred = np.asarray(pred, dtype=np.float64)  # (N, K, 2)
    scores = np.asarray(scores, dtype=np.float64)  # (N, K)
    inst = instance_score(scores, box_score, kp_score_thr)  # (N,)
    kpts = np.concatenate([pred, scores[..., None]], axis=-1)  # (N, K, 3) x, y, confidence
    out = [
        {
            "image_id": int(image_id[i]),
            "category_id": int(category_id),
            "keypoints": kpts[i].reshape(-1).tolist(),
            "score": float(inst[i]),
            "area": float(area[i]),
        }
        for i in range(len(pred))
    ]
    if use_nms:
        out = [out[i] for i in oks_nms(out, sigmas, nms_thr)]
    for r in out:
        del r["area"]  # NMS input only: pycocotools recomputes a result's area itself
    return out
