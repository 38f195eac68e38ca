"""Object Keypoint Similarity, OKS-NMS, instance rescoring and COCO keypoint AP.

Conventions (see also ``kpreg.data.coco_files``):

* Coordinates are original-image pixels in kpreg's 0-based pixel-centre
  convention, which is also what COCO annotations use; predictions are written
  to results files unshifted.
* Sigmas are in pycocotools' COCOeval units (nose = 0.026); the per-keypoint
  variance is ``(2 * sigma) ** 2``.
* ``OKSAP`` follows the top-down protocol of HRNet / mmpose: an instance's score is
  ``box_score * mean(keypoint confidences > thr)``, then greedy OKS-NMS per image,
  then pycocotools' ``COCOeval(iouType='keypoints')`` on all ground-truth images.
"""

from __future__ import annotations

import contextlib
import io
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from kpreg.data.coco_files import COCO_SIGMAS, load_coco, read_category, results_to_coco

__all__ = [
    "STAT_NAMES",
    "oks",
    "oks_nms",
    "oks_nms_single",
    "instance_score",
    "evaluate_keypoints",
    "OKSAP",
]

# Keys of pycocotools' keypoint `stats`, in its order.
STAT_NAMES: tuple[str, ...] = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")

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


def evaluate_keypoints(
    coco_gt: Any,
    coco_dt: Any,
    sigmas: Sequence[float] | np.ndarray,
    img_ids: Sequence[int] | None = None,
) -> dict[str, float]:
    """Run pycocotools' ``COCOeval(iouType='keypoints')`` quietly; return its 10 stats by name.

    Values are fractions exactly as in ``COCOeval.stats`` (-1 where pycocotools
    reports -1, e.g. APm when there is no medium-sized GT).
    """
    from pycocotools.cocoeval import COCOeval

    sig = np.asarray(sigmas, dtype=np.float64)  # (K,)
    with contextlib.redirect_stdout(io.StringIO()):  # COCOeval prints progress and the table
        ev = COCOeval(coco_gt, coco_dt, iouType="keypoints")
        ev.params.kpt_oks_sigmas = sig
        if img_ids is not None:
            ev.params.imgIds = sorted(img_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {name: float(v) for name, v in zip(STAT_NAMES, ev.stats)}


class OKSAP(Metric):
    """COCO keypoint AP/AR (pycocotools) as a torchmetrics ``Metric``.

    ``update`` collects one row per predicted instance (top-down: one per person box);
    ``compute`` rescores instances (:func:`instance_score`), applies OKS-NMS per image
    (optional), and runs ``COCOeval`` with ``iouType='keypoints'`` and the dataset's
    sigmas. States are lists concatenated across processes (``dist_reduce_fx="cat"``),
    so the DDP result equals the single-process one. Exact duplicate rows (as
    produced by ``DistributedSampler`` padding) are dropped before scoring.

    Args:
        coco_gt: pycocotools ``COCO`` or a path / dict of the GT annotation file.
        sigmas: per-keypoint sigmas; default from the GT category (COCO's for COCO-17).
        use_nms: apply OKS-NMS per image.
        nms_thr: OKS above which an instance is suppressed.
        kp_score_thr: keypoint confidence threshold of the instance score.
        category_id: keypoint category to evaluate (default: the only one).
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    pred: list[torch.Tensor]
    scores: list[torch.Tensor]
    image_id: list[torch.Tensor]
    box_score: list[torch.Tensor]
    area: list[torch.Tensor]

    def __init__(
        self,
        coco_gt: Any,
        sigmas: Sequence[float] | np.ndarray | None = None,
        use_nms: bool = True,
        nms_thr: float = 0.9,
        kp_score_thr: float = 0.2,
        category_id: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.coco_gt = load_coco(coco_gt)
        self.category = read_category(self.coco_gt, category_id=category_id, sigmas=sigmas)
        self.sigmas = self.category.sigmas  # (K,)
        self.use_nms = use_nms
        self.nms_thr = float(nms_thr)
        self.kp_score_thr = float(kp_score_thr)
        self._gt_img_ids = set(self.coco_gt.getImgIds())
        for name in ("pred", "scores", "image_id", "box_score", "area"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(
        self,
        pred: torch.Tensor,
        scores: torch.Tensor,
        image_id: torch.Tensor,
        box_score: torch.Tensor | None = None,
        area: torch.Tensor | None = None,
    ) -> None:
        """Add a batch of B predicted instances.

        Args:
            pred: ``(B, K, 2)`` x, y in original-image pixels (0-based pixel centres).
            scores: ``(B, K)`` keypoint confidences.
            image_id: ``(B,)`` COCO image ids.
            box_score: ``(B,)`` person-box scores (default 1, i.e. GT boxes).
            area: ``(B,)`` box area used by OKS-NMS (HRNet/mmpose: padded box w*h);
                default: the keypoints' extent.
        """
        pred = torch.as_tensor(pred).detach()
        k = self.category.num_keypoints
        if pred.ndim != 3 or pred.shape[1] != k or pred.shape[2] < 2:
            raise ValueError(f"pred must be (B, {k}, 2), got {tuple(pred.shape)}")
        b = pred.shape[0]
        # float64 so that the numbers pycocotools sees are the ones the model produced
        pred = pred[..., :2].to(self.device, torch.float64)  # (B, K, 2)
        scores = torch.as_tensor(scores).detach().to(self.device, torch.float64).reshape(b, k)  # (B, K)
        image_id = torch.as_tensor(image_id).detach().to(self.device, torch.int64).reshape(b)  # (B,)
        if box_score is None:
            box_score = torch.ones(b, dtype=torch.float64, device=self.device)
        box_score = torch.as_tensor(box_score).detach().to(self.device, torch.float64).reshape(b)  # (B,)
        if area is None:
            span = pred.amax(1) - pred.amin(1)  # (B, 2)
            area = span[:, 0] * span[:, 1]
        area = torch.as_tensor(area).detach().to(self.device, torch.float64).reshape(b)  # (B,)
        unknown = set(image_id.tolist()) - self._gt_img_ids
        if unknown:
            raise ValueError(f"image_id(s) {sorted(unknown)[:10]} are not in the ground truth")
        self.pred.append(pred)
        self.scores.append(scores)
        self.image_id.append(image_id)
        self.box_score.append(box_score)
        self.area.append(area)

    def _gathered(self) -> tuple[np.ndarray, ...] | None:
        if isinstance(self.pred, list) and len(self.pred) == 0:
            return None
        pred = dim_zero_cat(self.pred).cpu().numpy()  # (N, K, 2)
        if pred.shape[0] == 0:
            return None
        scores = dim_zero_cat(self.scores).cpu().numpy()  # (N, K)
        image_id = dim_zero_cat(self.image_id).cpu().numpy()  # (N,)
        box_score = dim_zero_cat(self.box_score).cpu().numpy()  # (N,)
        area = dim_zero_cat(self.area).cpu().numpy()  # (N,)
        # DistributedSampler pads the last batch by repeating samples: drop exact
        # duplicates so they cannot count twice (without NMS) in AP.
        rows = np.concatenate(
            [
                image_id[:, None].astype(np.float64),
                pred.reshape(len(pred), -1),
                scores,
                box_score[:, None],
                area[:, None],
            ],
            axis=1,
        )  # (N, 1 + 3K + 2)
        _, first = np.unique(rows, axis=0, return_index=True)
        first = np.sort(first)  # keep the original order
        return pred[first], scores[first], image_id[first], box_score[first], area[first]

    def results(self) -> list[dict[str, Any]]:
        """COCO results list (after rescoring and NMS), ready for ``write_results_json``.

        ``keypoints`` is ``[x, y, confidence]*K`` in original-image pixels (same convention
        as the GT, unshifted); ``score`` is the instance score.
        """
        g = self._gathered()
        if g is None:
            return []
        pred, scores, image_id, box_score, area = g
        inst = instance_score(scores, box_score, self.kp_score_thr)  # (N,)
        kpts = np.concatenate([pred, scores[..., None]], axis=-1)  # (N, K, 3) x, y, confidence
        out = [
            {
                "image_id": int(image_id[i]),
                "category_id": self.category.id,
                "keypoints": kpts[i].reshape(-1).tolist(),
                "score": float(inst[i]),
                "area": float(area[i]),
            }
            for i in range(len(pred))
        ]
        if self.use_nms:
            out = [out[i] for i in oks_nms(out, self.sigmas, self.nms_thr)]
        for r in out:
            del r["area"]  # NMS input only: pycocotools recomputes a result's area itself
        return out

    def compute(self) -> dict[str, torch.Tensor]:
        """The 10 pycocotools keypoint stats (fractions, float64 scalars); zeros without predictions."""
        res = self.results()
        if not res:
            stats = dict.fromkeys(STAT_NAMES, 0.0)
        else:
            coco_dt = results_to_coco(res, self.coco_gt, copy_results=False)  # res is ours to mutate
            stats = evaluate_keypoints(self.coco_gt, coco_dt, self.sigmas)
        return {k: torch.tensor(v, dtype=torch.float64) for k, v in stats.items()}
