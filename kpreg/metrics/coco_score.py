"""Score a saved COCO keypoint results file against a ground-truth file.

The numbers are pycocotools' own (``COCOeval(iouType='keypoints')``), only the
sigmas are taken from the GT category (COCO-17 / CrowdPose-14 known, else
``sigmas`` or a constant default, see ``read_category``).

GT files without an ``area`` field (CrowdPose, AI Challenger) cannot go through
plain pycocotools, which reads ``gt['area']``. For those we follow xtcocoapi's
``use_area=False`` convention and use ``0.53 * bbox_w * bbox_h`` as the area.
This reproduces the AP/AR over all instances of a CrowdPose-style evaluation; the
CrowdPose easy/medium/hard split (``crowdIndex``) is not computed, and APm/APl/ARm/ARl
then refer to that surrogate area.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from rich.console import Group

from kpreg.formats.coco import load_coco, load_results_json, prepare_gt, read_category
from kpreg.formats.files import read_json
from kpreg.metrics.contract import metric_table
from kpreg.metrics.oks import OKS_COLUMNS, evaluate_keypoints

__all__ = ["score_coco_files", "coco_table"]


def score_coco_files(
    gt_path: str | Path,
    results_path: str | Path,
    sigmas: Sequence[float] | np.ndarray | None = None,
    category_id: int | None = None,
) -> dict[str, float]:
    """pycocotools keypoint stats of a results file: keys ``AP, AP50, AP75, APm, APl, AR, AR50, AR75, ARm, ARl``.

    Raises ``ValueError`` naming the results file for entries with an image_id that
    is not in the ground truth.
    """
    data = read_json(gt_path, "ground truth")
    if not isinstance(data, dict):
        raise ValueError(f"{gt_path}: a COCO ground truth holds a JSON object, got {type(data).__name__}")
    coco_gt = load_coco(prepare_gt(data))
    category = read_category(coco_gt, category_id=category_id, sigmas=sigmas)
    coco_dt = load_results_json(results_path, coco_gt)
    if not coco_dt.dataset.get("annotations"):  # every stat would be 0, as if every prediction were wrong
        raise ValueError(f"{results_path}: holds no predictions (an empty list): nothing to score")
    return evaluate_keypoints(coco_gt, coco_dt, category.sigmas)


def coco_table(summary: Mapping[str, float], title: str = "COCO keypoints (OKS)") -> Group:
    """The 10 stats, three decimals (``-1``, pycocotools' "no GT in this range", shown as '-')."""
    return metric_table(dict(summary), OKS_COLUMNS, title)
