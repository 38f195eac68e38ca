"""Scoring saved results files: pycocotools' numbers, error naming, table."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from rich.console import Console

from kpreg.formats.coco import COCO_KEYPOINT_NAMES, write_results_json
from kpreg.metrics.coco_score import coco_table, score_coco_files

K = 17
KEYS = ["AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"]


def tiny_gt() -> dict:
    """2 images: a large and a medium person, a crowd region, a zero-keypoint person."""
    rng = np.random.default_rng(5)
    anns = []
    for n, (img, x, y, w, h, crowd, nkp) in enumerate(
        [
            (1, 10, 10, 120, 250, 0, 17),
            (1, 300, 40, 50, 90, 0, 12),
            (1, 150, 0, 100, 100, 1, 0),
            (2, 30, 30, 40, 80, 0, 0),
        ]
    ):
        kp = np.zeros((K, 3))  # (K, 3) x, y, v
        kp[:nkp, 0] = x + rng.uniform(0, w, nkp)
        kp[:nkp, 1] = y + rng.uniform(0, h, nkp)
        kp[:nkp, 2] = 2
        anns.append({"id": n + 1, "image_id": img, "category_id": 1, "iscrowd": crowd, "bbox": [x, y, w, h],
                     "area": 0.5 * w * h, "keypoints": kp.reshape(-1).tolist(), "num_keypoints": nkp})  # fmt: skip
    return {
        "images": [{"id": 1, "width": 500, "height": 400}, {"id": 2, "width": 200, "height": 200}],
        "categories": [{"id": 1, "name": "person", "keypoints": list(COCO_KEYPOINT_NAMES), "skeleton": []}],
        "annotations": anns,
    }


def predictions(gt: dict, shift: float) -> list[dict]:
    rng = np.random.default_rng(6)
    out = []
    for a in gt["annotations"]:
        if a["iscrowd"] or a["num_keypoints"] == 0:  # ignored by COCOeval; a guess would be a false positive
            continue
        kp = np.asarray(a["keypoints"], dtype=np.float64).reshape(K, 3)  # (K, 3)
        kp[:, :2] += shift * rng.normal(size=(K, 2))
        kp[:, 2] = 1.0
        out.append({"image_id": a["image_id"], "category_id": 1, "keypoints": kp.reshape(-1).tolist(),
                    "score": float(rng.uniform())})  # fmt: skip
    return out


def plain(gt_path: Path, res_path: Path) -> list[float]:
    with contextlib.redirect_stdout(io.StringIO()):
        g = COCO(str(gt_path))
        ev = COCOeval(g, g.loadRes(str(res_path)), "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(v) for v in ev.stats]


@pytest.mark.parametrize("shift", [0.0, 4.0])
def test_score_matches_plain_pycocotools(tmp_path: Path, shift: float) -> None:
    gt = tiny_gt()
    gt_path = tmp_path / "gt.json"
    gt_path.write_text(json.dumps(gt))
    res_path = write_results_json(tmp_path / "res.json", predictions(gt, shift))
    summary = score_coco_files(gt_path, res_path)
    assert list(summary) == KEYS
    assert list(summary.values()) == plain(gt_path, res_path)  # exact
    if shift == 0.0:
        # (pycocotools averages masked arrays: APm can come out as 1 - 2e-16)
        assert all(v == pytest.approx(1.0, abs=1e-12) for v in summary.values())
    else:
        assert 0.0 < summary["AP"] < 1.0


def test_custom_sigmas_change_the_score(tmp_path: Path) -> None:
    gt = tiny_gt()
    gt_path = tmp_path / "gt.json"
    gt_path.write_text(json.dumps(gt))
    res_path = write_results_json(tmp_path / "res.json", predictions(gt, 4.0))
    loose = score_coco_files(gt_path, res_path, sigmas=np.full(K, 0.2))
    assert loose["AP"] > score_coco_files(gt_path, res_path)["AP"]


def test_gt_without_area_uses_box_surrogate(tmp_path: Path) -> None:
    """CrowdPose-style GT (no 'area'): 0.53 * box w*h, as xtcocoapi's use_area=False."""
    gt = tiny_gt()
    res = predictions(gt, 4.0)
    with_area = copy.deepcopy(gt)
    for a in with_area["annotations"]:
        a["area"] = a["bbox"][2] * a["bbox"][3] * 0.53
    for a in gt["annotations"]:
        del a["area"]
    (tmp_path / "noarea.json").write_text(json.dumps(gt))
    (tmp_path / "area.json").write_text(json.dumps(with_area))
    res_path = write_results_json(tmp_path / "res.json", res)
    assert list(score_coco_files(tmp_path / "noarea.json", res_path).values()) == plain(
        tmp_path / "area.json", res_path
    )


def test_unknown_image_id_is_named(tmp_path: Path) -> None:
    gt = tiny_gt()
    gt_path = tmp_path / "gt.json"
    gt_path.write_text(json.dumps(gt))
    res = predictions(gt, 1.0)
    res[1]["image_id"] = 31337
    res_path = tmp_path / "preds_unknown.json"
    res_path.write_text(json.dumps(res))
    with pytest.raises(ValueError, match=r"preds_unknown\.json.*image_id 31337"):
        score_coco_files(gt_path, res_path)


def test_coco_table_three_decimals() -> None:
    summary = dict(zip(KEYS, [0.12345, 1.0, 0.5, -1.0, 0.25, 0.3333, 0.9999, 0.0, -1.0, 0.75]))
    table = coco_table(summary)
    assert [c.header for t in table.renderables[1:] for c in t.columns] == KEYS  # after the title line
    console = Console(width=200, record=True)
    console.print(table)
    text = console.export_text()
    for cell in ["0.123", "1.000", "0.500", "0.250", "0.333", "0.000", "0.750"]:
        assert cell in text
    assert "0.1234" not in text and "-1.000" not in text
