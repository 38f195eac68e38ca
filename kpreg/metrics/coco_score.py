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

import copy
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from kpreg.data.coco_files import load_coco, load_results_json, read_category
from kpreg.metrics.oks import STAT_NAMES, evaluate_keypoints

__all__ = ["score_coco_files", "coco_table", "prepare_gt", "BOX_AREA_FACTOR"]

# xtcocoapi (CrowdPose) uses this fraction of the box area when a GT has no segment area.
BOX_AREA_FACTOR = 0.53


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
    with open(gt_path) as f:
        data = json.load(f)
    coco_gt = load_coco(prepare_gt(data))
    category = read_category(coco_gt, category_id=category_id, sigmas=sigmas)
    coco_dt = load_results_json(results_path, coco_gt)
    return evaluate_keypoints(coco_gt, coco_dt, category.sigmas)


def prepare_gt(data: dict[str, Any]) -> dict[str, Any]:
    """The GT dict pycocotools can score: fills what custom COCO-format files often leave out.

    ``area`` (missing: ``BOX_AREA_FACTOR`` × box area, see the module docstring) and ``num_keypoints``
    (missing: the count of labelled keypoints, ``v > 0``; COCOeval reads it to ignore unlabelled GT).
    Returns ``data`` itself when nothing is missing, else a filled deep copy (the caller's dict is
    never changed). Used by ``score_coco_files`` and by ``COCODataModule``'s metric, so that a results
    file scores the same in both.
    """
    anns = data.get("annotations", [])
    if all("area" in a and "num_keypoints" in a for a in anns):
        return data
    data = copy.deepcopy(data)
    for ann in data["annotations"]:
        if "area" not in ann:
            _, _, w, h = ann["bbox"]
            ann["area"] = w * h * BOX_AREA_FACTOR
        if "num_keypoints" not in ann and ann.get("keypoints") is not None:
            ann["num_keypoints"] = int(sum(1 for v in ann["keypoints"][2::3] if v > 0))
    return data


def coco_table(summary: Mapping[str, float], title: str | None = "COCO keypoints (OKS)") -> Table:
    """A rich table of the 10 stats, three decimals (``-1`` shown as '-', as 'no GT in this range')."""
    table = Table(title=title, box=None, header_style="bold underline")  # compact: fits 80 columns
    names = [k for k in STAT_NAMES if k in summary] + [k for k in summary if k not in STAT_NAMES]
    for name in names:
        table.add_column(name, justify="right", no_wrap=True, min_width=5)
    cells = []
    for name in names:
        v = float(summary[name])
        cells.append("-" if v == -1 else f"{v:.3f}")
    table.add_row(*cells)
    return table
