"""COCO keypoint AP (pycocotools) as a dataset metric.

``OKSAP`` follows the top-down protocol of HRNet / mmpose: an instance's score is
``box_score * mean(keypoint confidences > thr)``, then greedy OKS-NMS per image (both in ``kpreg.formats.oks``),
then pycocotools' ``COCOeval(iouType='keypoints')`` on all ground-truth images. Coordinates are original-image
pixels in kpreg's 0-based pixel-centre convention, which is also COCO's; predictions are written to results
files unshifted.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torchmetrics.utilities import dim_zero_cat

from kpreg.formats.coco import load_coco, read_category, results_to_coco
from kpreg.formats.oks import instance_score, make_results, oks
from kpreg.metrics.contract import Column, DatasetMetric

__all__ = ["STAT_NAMES", "OKS_COLUMNS", "evaluate_keypoints", "OKSAP"]

# Keys of pycocotools' keypoint `stats`, in its order.
STAT_NAMES: tuple[str, ...] = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
SECTION = "OKS (pycocotools)"
OKS_COLUMNS: tuple[Column, ...] = tuple(
    Column(k, k, True, digits=3, section=SECTION, unit="", headline=k in ("AP", "AP50", "AP75", "AR"))
    for k in STAT_NAMES
)

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


class OKSAP(DatasetMetric):
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

    section = SECTION
    family = "oks"
    default_primary = "AP"

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

    @property
    def columns(self) -> list[Column]:
        return list(OKS_COLUMNS)

    @classmethod
    def declared_columns(cls, keypoint_names: Sequence[str] = ()) -> list[Column]:
        return list(OKS_COLUMNS)

    @classmethod
    def higher_is_better(cls, key: str) -> bool | None:
        return True if key in STAT_NAMES else None

    def update(self, pred: torch.Tensor, scores: torch.Tensor, meta: dict[str, Any]) -> None:  # type: ignore[override]
        """pred (B, K, 2) x,y original pixels, scores (B, K); ``meta`` gives ``image_id``, ``box_score`` and the
        OKS-NMS area ``nms_area`` of every instance (``kpreg.data.coco`` puts them in each val / test sample)."""
        self.update_instances(pred, scores, meta["image_id"], meta.get("box_score"), meta.get("nms_area"))

    def update_instances(
        self,
        pred: torch.Tensor,
        scores: torch.Tensor,
        image_id: torch.Tensor,
        box_score: torch.Tensor | None = None,
        area: torch.Tensor | None = None,
    ) -> None:
        """Add a batch of B predicted instances with explicit ids, box scores and NMS areas.

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
        return make_results(pred, scores, image_id, box_score, area, self.category.id, self.sigmas,
                            self.use_nms, self.nms_thr, self.kp_score_thr)

    def compute(self) -> dict[str, torch.Tensor]:
        """The 10 pycocotools keypoint stats (fractions, float64 scalars); zeros without predictions."""
        res = self.results()
        if not res:
            stats = dict.fromkeys(STAT_NAMES, 0.0)
        else:
            coco_dt = results_to_coco(res, self.coco_gt, copy_results=False)  # res is ours to mutate
            stats = evaluate_keypoints(self.coco_gt, coco_dt, self.sigmas)
        return {k: torch.tensor(v, dtype=torch.float64) for k, v in stats.items()}

    def own_instances(self, pred: np.ndarray, scores: np.ndarray, image_id: np.ndarray,
                      box_score: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        """(OKS (S,), instance score (S,)) of S top-down predictions, each with the one scored ground-truth instance
        of its image: what ``kpreg.metrics.resampling.APStatistic`` resamples. None unless every image holds exactly
        one prediction and one non-crowd annotation with labelled keypoints, and every such image is predicted —
        only then does COCOeval match each prediction to that instance (otherwise it matches greedily among the
        image's instances, after OKS-NMS).

        pred (S, K, 2) x,y original pixels; scores (S, K) the keypoint confidences AP was computed with."""
        ids = np.asarray(image_id).astype(np.int64).reshape(-1)  # (S,)
        if len(np.unique(ids)) != len(ids):
            return None
        scored: dict[int, dict[str, Any]] = {}
        for img in self._gt_img_ids:
            anns = [a for a in self.coco_gt.imgToAnns.get(img, []) if a.get("category_id") == self.category.id]
            counted = [a for a in anns if not a.get("iscrowd", 0) and a.get("num_keypoints", 0) > 0]
            if len(anns) > 1 or (anns and not counted):
                return None
            if counted:
                scored[int(img)] = counted[0]
        if set(scored) != set(ids.tolist()):
            return None
        gt = np.stack([np.asarray(scored[int(i)]["keypoints"], dtype=np.float64).reshape(-1, 3) for i in ids])
        area = np.array([float(scored[int(i)]["area"]) for i in ids])  # (S,)
        similarity = oks(np.asarray(pred, dtype=np.float64), gt, area, self.sigmas)  # (S,)
        box = np.ones(len(ids)) if box_score is None else np.asarray(box_score, dtype=np.float64).reshape(-1)
        return similarity, instance_score(np.asarray(scores, dtype=np.float64), box, self.kp_score_thr)
