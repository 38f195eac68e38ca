"""OKS, OKS-NMS, instance scoring and the OKSAP metric against plain pycocotools."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from kpreg.formats.coco import COCO_KEYPOINT_NAMES, COCO_SIGMAS
from kpreg.formats.oks import instance_score, oks, oks_nms, oks_nms_single
from kpreg.metrics.oks import OKSAP, STAT_NAMES

K = 17
COCO_SKELETON_1BASED = [[16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8], [7, 9],
                        [8, 10], [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7]]  # fmt: skip


def make_tiny_coco(seed: int = 0) -> dict:
    """3 images; large and medium persons, one with unlabelled keypoints, a crowd region
    and a zero-keypoint annotation (both ignored by COCOeval)."""
    rng = np.random.default_rng(seed)
    images = [
        {"id": 1, "width": 640, "height": 480, "file_name": "a.jpg"},
        {"id": 2, "width": 320, "height": 240, "file_name": "b.jpg"},
        {"id": 7, "width": 400, "height": 400, "file_name": "c.jpg"},
    ]
    boxes = [  # image_id, x, y, w, h, iscrowd, n_unlabelled (-1: zero-keypoint annotation)
        (1, 20, 30, 150, 300, 0, 0),  # large
        (1, 400, 100, 60, 110, 0, 5),  # medium (area 0.6*6600 = 3960), 5 unlabelled
        (1, 250, 50, 120, 200, 1, 0),  # crowd region
        (2, 10, 10, 180, 200, 0, 0),  # large
        (2, 220, 20, 30, 60, -0, -1),  # zero keypoints
        (7, 100, 100, 70, 90, 0, 2),  # medium
    ]
    anns = []
    for n, (img, x, y, w, h, crowd, unl) in enumerate(boxes):
        kp = np.zeros((K, 3))  # (K, 3) x, y, v
        if unl >= 0 and not crowd:
            kp[:, 0] = x + rng.uniform(0.1, 0.9, K) * w
            kp[:, 1] = y + rng.uniform(0.1, 0.9, K) * h
            kp[:, 2] = 2
            kp[rng.choice(K, unl, replace=False)] = 0
        anns.append({
            "id": 100 + n, "image_id": img, "category_id": 1, "iscrowd": crowd,
            "bbox": [x, y, w, h], "area": 0.6 * w * h,
            "keypoints": kp.reshape(-1).round(2).tolist(), "num_keypoints": int((kp[:, 2] > 0).sum()),
        })  # fmt: skip
    cats = [{"id": 1, "name": "person", "supercategory": "person",
             "keypoints": list(COCO_KEYPOINT_NAMES), "skeleton": COCO_SKELETON_1BASED}]  # fmt: skip
    return {"images": images, "annotations": anns, "categories": cats}


def coco_from(data: dict) -> COCO:
    c = COCO()
    c.dataset = copy.deepcopy(data)
    with contextlib.redirect_stdout(io.StringIO()):
        c.createIndex()
    return c


def plain_pycocotools(data: dict, results: list[dict]) -> list[float]:
    """The reference: a direct, plain COCOeval run."""
    gt = coco_from(data)
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(copy.deepcopy(results))
        ev = COCOeval(gt, dt, "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(v) for v in ev.stats]


def person_anns(data: dict) -> list[dict]:
    return [a for a in data["annotations"] if not a["iscrowd"] and a["num_keypoints"] > 0]


def gt_predictions(data: dict) -> tuple[np.ndarray, np.ndarray]:
    """Perfect keypoints for every evaluable person; unlabelled ones at the box centre."""
    kps, ids = [], []
    for a in person_anns(data):
        kp = np.asarray(a["keypoints"], dtype=np.float64).reshape(K, 3)  # (K, 3)
        x, y, w, h = a["bbox"]
        kp[kp[:, 2] == 0, :2] = (x + w / 2, y + h / 2)
        kps.append(kp[:, :2])
        ids.append(a["image_id"])
    return np.stack(kps), np.asarray(ids)  # (N, K, 2), (N,)


# ------------------------------------------------------------------------------ oks


def test_oks_hand_computed_two_keypoints() -> None:
    sigmas = np.array([0.05, 0.1])  # var = (2*sigma)^2 = [0.01, 0.04]
    gt = np.array([[10.0, 10.0, 2], [20.0, 20.0, 1]])  # (2, 3)
    pred = np.array([[11.0, 10.0], [20.0, 22.0]])  # d^2 = 1 and 4
    area = 100.0
    e0 = 1 / 0.01 / (area + np.spacing(1)) / 2  # 0.5
    e1 = 4 / 0.04 / (area + np.spacing(1)) / 2  # 0.5
    assert oks(pred, gt, area, sigmas) == pytest.approx((math.exp(-e0) + math.exp(-e1)) / 2, rel=1e-15)
    assert oks(pred, gt, area, sigmas) == pytest.approx(math.exp(-0.5), rel=1e-12)
    # an unlabelled GT keypoint does not count, wherever the prediction is
    gt_unl = gt.copy()
    gt_unl[1] = [0, 0, 0]
    assert oks(np.array([[11.0, 10.0], [500.0, -3.0]]), gt_unl, area, sigmas) == pytest.approx(math.exp(-0.5))
    assert oks(pred, gt, area, sigmas) <= 1.0 and oks(gt[:, :2], gt, area, sigmas) == pytest.approx(1.0)
    # no labelled keypoint -> 0
    assert oks(pred, np.zeros((2, 3)), area, sigmas) == 0.0


def test_oks_broadcasts_to_matrix() -> None:
    rng = np.random.default_rng(1)
    a = rng.uniform(0, 50, (4, K, 2))  # (N, K, 2)
    b = np.concatenate([rng.uniform(0, 50, (3, K, 2)), np.full((3, K, 1), 2.0)], -1)  # (M, K, 3)
    m = oks(a[:, None], b[None], 900.0, COCO_SIGMAS)  # (N, M)
    assert m.shape == (4, 3)
    assert m[2, 1] == pytest.approx(oks(a[2], b[1], 900.0, COCO_SIGMAS), rel=1e-14)


# ------------------------------------------------------------------------------ nms / scores


def test_oks_nms_keeps_and_suppresses() -> None:
    rng = np.random.default_rng(2)
    base = rng.uniform(100, 200, (K, 2))  # (K, 2)
    near = base + 0.5  # OKS ~ 1 with base -> suppressed
    far = base + 300  # OKS ~ 0 -> kept
    kpts = np.stack([near, base, far])  # (3, K, 2)
    scores = np.array([0.8, 0.9, 0.7])
    areas = np.full(3, 100.0 * 100.0)
    keep = oks_nms_single(kpts, scores, areas, COCO_SIGMAS, thr=0.9)
    assert keep.tolist() == [1, 2]  # highest first; 'near' dropped
    # threshold above the actual OKS keeps both
    o = oks(near, base, 100.0 * 100.0, COCO_SIGMAS)
    assert 0.9 < o < 1.0
    assert oks_nms_single(kpts, scores, areas, COCO_SIGMAS, thr=o + 1e-9).tolist() == [1, 0, 2]
    # NMS is per image: the same pose on another image survives
    res = [
        {"image_id": 1, "keypoints": base, "score": 0.9, "area": 1e4},
        {"image_id": 1, "keypoints": near, "score": 0.8, "area": 1e4},
        {"image_id": 2, "keypoints": near, "score": 0.8, "area": 1e4},
    ]
    assert oks_nms(res, COCO_SIGMAS, 0.9) == [0, 2]
    assert oks_nms([], COCO_SIGMAS) == []


def test_instance_score_rule() -> None:
    kp = np.array([[0.9, 0.1, 0.5], [0.1, 0.1, 0.1], [0.2, 0.3, 0.2]])  # (N, K)
    box = np.array([0.5, 1.0, 1.0])  # (N,)
    # mean over confidences strictly above thr; none above -> score 0
    np.testing.assert_allclose(instance_score(kp, box, thr=0.2), [0.5 * 0.7, 0.0, 0.3])
    np.testing.assert_allclose(
        instance_score(torch.tensor(kp), torch.tensor(box), thr=0.0), [0.25, 0.1, 0.7 / 3]
    )


# ------------------------------------------------------------------------------ metric


def test_perfect_predictions_score_one(tmp_path: Path) -> None:
    data = make_tiny_coco()
    gt_file = tmp_path / "gt.json"
    gt_file.write_text(json.dumps(data))
    kpts, ids = gt_predictions(data)
    metric = OKSAP(str(gt_file))
    metric.update_instances(torch.tensor(kpts), torch.ones(len(ids), K), torch.tensor(ids))
    out = metric.compute()
    assert set(out) == set(STAT_NAMES) and len(out) == 10
    for name in STAT_NAMES:
        assert out[name].item() == pytest.approx(1.0, abs=1e-12), name


def shifted_batch(
    data: dict, seed: int = 3
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    kpts, ids = gt_predictions(data)
    kpts = kpts + rng.normal(0, 1, (len(ids), 1, 2)) * np.array([[[2.0]], [[6.0]], [[1.0]], [[12.0]]])
    kpts = kpts + rng.normal(0, 3, kpts.shape)
    # a duplicate-ish second detection of person 0 (NMS removes it) and a false positive on image 7
    kpts = np.concatenate([kpts, kpts[:1] + 0.3, kpts[3:4] + 60])  # (6, K, 2)
    ids = np.concatenate([ids, ids[:1], ids[3:4]])
    conf = rng.uniform(0, 1, (len(ids), K))  # (6, K)
    box = rng.uniform(0.5, 1, len(ids))  # (6,)
    area = np.array([150 * 300, 60 * 110, 180 * 200, 70 * 90, 150 * 300, 70 * 90]) * 1.25**2
    return kpts, conf, ids, box, area


@pytest.mark.parametrize("use_nms", [False, True])
def test_shifted_predictions_match_plain_pycocotools(use_nms: bool) -> None:
    data = make_tiny_coco()
    kpts, conf, ids, box, area = shifted_batch(data)
    metric = OKSAP(coco_from(data), use_nms=use_nms, kp_score_thr=0.2)
    metric.update_instances(torch.tensor(kpts[:3]), torch.tensor(conf[:3]), torch.tensor(ids[:3]), torch.tensor(box[:3]),
                  torch.tensor(area[:3]))  # fmt: skip
    metric.update_instances(torch.tensor(kpts[3:]), torch.tensor(conf[3:]), torch.tensor(ids[3:]), torch.tensor(box[3:]),
                  torch.tensor(area[3:]))  # fmt: skip
    out = metric.compute()

    # reference results built independently of kpreg
    results = []
    for i in range(len(ids)):
        valid = conf[i] > 0.2
        s = box[i] * (conf[i][valid].mean() if valid.any() else 0.0)
        kp = np.concatenate([kpts[i], conf[i][:, None]], 1).reshape(-1).tolist()
        results.append({"image_id": int(ids[i]), "category_id": 1, "keypoints": kp, "score": float(s)})
    if use_nms:
        del results[4]  # the near-copy of person 0 (lower score) is suppressed
        assert len(metric.results()) == 5
    ref = plain_pycocotools(data, results)
    assert [out[n].item() for n in STAT_NAMES] == ref  # exact
    assert 0.0 < ref[0] < 1.0


def test_no_predictions_give_zeros() -> None:
    metric = OKSAP(coco_from(make_tiny_coco()))
    out = metric.compute()
    assert {k: v.item() for k, v in out.items()} == dict.fromkeys(STAT_NAMES, 0.0)
    assert metric.results() == []


def test_update_rejects_unknown_image_and_bad_shape() -> None:
    metric = OKSAP(coco_from(make_tiny_coco()))
    with pytest.raises(ValueError, match="999"):
        metric.update_instances(torch.zeros(1, K, 2), torch.ones(1, K), torch.tensor([999]))
    with pytest.raises(ValueError, match="17"):
        metric.update_instances(torch.zeros(1, 5, 2), torch.ones(1, 5), torch.tensor([1]))


def test_ddp_style_merge_equals_single_pass() -> None:
    data = make_tiny_coco()
    kpts, conf, ids, box, area = shifted_batch(data)
    t = [torch.tensor(x) for x in (kpts, conf, ids, box, area)]
    full = OKSAP(coco_from(data))
    full.update_instances(*t)
    expected = {k: v.item() for k, v in full.compute().items()}

    def halves() -> tuple[OKSAP, OKSAP]:
        a, b = OKSAP(coco_from(data)), OKSAP(coco_from(data))
        a.update_instances(*[x[:3] for x in t])
        b.update_instances(*[x[3:] for x in t])
        return a, b

    # 1) torchmetrics' merge_state
    a, b = halves()
    a.merge_state(b)
    assert {k: v.item() for k, v in a.compute().items()} == expected

    # 2) the DDP sync path, with a fake all_gather returning [rank0, rank1] per state
    a, b = halves()
    other = iter([torch.cat(getattr(b, name)) for name in a._reductions])

    def fake_all_gather(x: torch.Tensor, group: object = None) -> list[torch.Tensor]:
        return [x, next(other)]

    a.sync(dist_sync_fn=fake_all_gather, distributed_available=lambda: True)
    assert [r["image_id"] for r in a.results()] == [r["image_id"] for r in full.results()]
    assert a.results() == full.results()

    # 3) padding duplicates (DistributedSampler repeats samples) do not change the result
    dup = OKSAP(coco_from(data), use_nms=False)
    dup.update_instances(*t)
    dup.update_instances(*[x[:2] for x in t])
    ref = OKSAP(coco_from(data), use_nms=False)
    ref.update_instances(*t)
    assert {k: v.item() for k, v in dup.compute().items()} == {k: v.item() for k, v in ref.compute().items()}
