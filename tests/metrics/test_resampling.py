"""Summary metrics as image statistics (kpreg.metrics.resampling): at unit weights they equal the metric functions
(pixel_results, pckh_results, pycocotools); integer weights equal the metric of the data with images repeated; small
cases by hand; the paired swap of two runs' images."""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from kpreg.formats.oks import oks
from kpreg.metrics.pckh import pckh_results
from kpreg.metrics.pixel import pixel_results
from kpreg.metrics.resampling import (
    MedianStatistic,
    RatioStatistic,
    ap_statistics,
    image_index,
    pckh_statistics,
    pixel_statistics,
)

NAMES = ("a", "b")
# as tests/metrics/test_pixel.py: three samples × two keypoints (an unlabelled keypoint, an unpredicted one, a box
# of size 0); samples 0 and 2 are two instances of image 7, sample 1 is image 3
ERRORS = np.array([[3.0, 4.0], [0.0, np.nan], [12.0, np.inf]])
LABELLED = np.array([[True, True], [True, False], [True, True]])
BOX = np.array([50.0, 20.0, 0.0])
IMAGE_ID = np.array([7, 3, 7])


def _random_run(rng: np.random.Generator, n: int = 30, k: int = 5) -> tuple[np.ndarray, ...]:
    err = rng.gamma(2.0, 2.0, (n, k))  # (N, K) px
    lab = rng.random((n, k)) > 0.15
    err[~lab] = np.nan
    err[rng.random((n, k)) < 0.03] = np.inf  # a few unpredicted keypoints
    err[~lab] = np.nan
    box = rng.uniform(20, 80, n)
    box[0] = 0.0
    return err, lab, box


def test_image_index_groups_samples_in_first_appearance_order() -> None:
    image, n = image_index(IMAGE_ID)
    assert n == 2 and image.tolist() == [0, 1, 0]


def test_pixel_statistics_by_hand() -> None:
    image, n = image_index(IMAGE_ID)
    stats = pixel_statistics(ERRORS, LABELLED, BOX, image, n, pixel_thresholds=(2.0, 5.0))
    one = np.ones((1, n))
    assert stats["MeanError"](one)[0] == pytest.approx(19 / 4)  # 3, 4, 0, 12
    assert stats["MedianError"](one)[0] == pytest.approx(3.5)
    # image 7 twice, image 3 once: errors 3, 4, 12, 3, 4, 12, 0 → mean 38 / 7, median 4
    twice = np.array([[2.0, 1.0]])
    assert stats["MeanError"](twice)[0] == pytest.approx(38 / 7)
    assert stats["MedianError"](twice)[0] == pytest.approx(4.0)
    assert stats["RMSE"](twice)[0] == pytest.approx(math.sqrt((2 * (9 + 16 + 144) + 0) / 7))
    # image 3 alone: one error, 0; image 7 alone: 3, 4 ≤ 5 of its four labelled (12 and the unpredicted one miss)
    assert stats["MeanError"](np.array([[0.0, 1.0]]))[0] == 0.0
    assert stats["PCK@5px"](np.array([[1.0, 0.0]]))[0] == pytest.approx(50.0)
    # no image drawn: nothing counts
    assert math.isnan(stats["MeanError"](np.zeros((1, n)))[0])


@pytest.mark.parametrize("seed", [0, 1])
def test_pixel_statistics_equal_pixel_results_at_unit_and_integer_weights(seed: int) -> None:
    rng = np.random.default_rng(seed)
    err, lab, box = _random_run(rng)
    image_id = np.repeat(np.arange(15), 2)  # two instances per image
    image, n = image_index(image_id)
    stats = pixel_statistics(err, lab, box, image, n)
    names = [f"k{i}" for i in range(err.shape[1])]
    expected = pixel_results(err, lab, box, names)
    for key, stat in stats.items():
        assert stat(np.ones((1, n)))[0] == pytest.approx(expected[key], rel=1e-12), key
    # weights = the data with each image repeated that many times
    w = rng.integers(0, 4, n).astype(float)
    rows = np.repeat(np.arange(len(image)), w[image].astype(int))
    repeated = pixel_results(err[rows], lab[rows], box[rows], names)
    for key, stat in stats.items():
        assert stat(w[None])[0] == pytest.approx(repeated[key], rel=1e-12), key


def test_pckh_statistics_equal_pckh_results() -> None:
    rng = np.random.default_rng(3)
    n, k = 40, 16
    gt = rng.uniform(0, 200, (n, k, 2))
    pred = gt + rng.normal(0, 6, (n, k, 2))
    vis = rng.random((n, k)) > 0.1
    head = rng.uniform(20, 60, n)
    err = np.linalg.norm(pred - gt, axis=-1)
    err[~vis] = np.nan
    image, n_img = image_index(np.arange(n))
    stats = pckh_statistics(err, vis, head, image, n_img, mean_joints=[0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13, 14, 15])
    expected = pckh_results(pred, gt, vis, head)
    for key in ("Mean", "Mean@0.1", "AUC"):
        assert stats[key](np.ones((1, n_img)))[0] == pytest.approx(expected[key], rel=1e-12), key


def _coco(n: int, rng: np.random.Generator, k: int = 4) -> tuple[dict, list, np.ndarray, np.ndarray]:
    """n images with one instance each, predictions with a spread of errors and scores."""
    sigmas = np.full(k, 0.05)
    images, anns, dets = [], [], []
    oks_values, scores = [], []
    for i in range(n):
        gt = rng.uniform(10, 90, (k, 2))
        area = float(rng.uniform(800, 3000))
        pred = gt + rng.normal(0, rng.choice([1.0, 4.0, 15.0]), (k, 2))
        score = float(rng.uniform(0.1, 1.0))
        flat = np.column_stack([gt, np.full(k, 2.0)])  # (K, 3)
        images.append({"id": i + 1, "width": 100, "height": 100})
        anns.append({"id": i + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0, "area": area,
                     "bbox": [0, 0, 100, 100], "num_keypoints": k, "keypoints": flat.reshape(-1).tolist()})
        dets.append({"image_id": i + 1, "category_id": 1, "score": score,
                     "keypoints": np.column_stack([pred, np.ones(k)]).reshape(-1).tolist()})
        oks_values.append(float(oks(pred, flat, area, sigmas)))
        scores.append(score)
    gt_json = {"images": images, "annotations": anns,
               "categories": [{"id": 1, "name": "m", "keypoints": [f"k{i}" for i in range(k)], "skeleton": []}]}
    return gt_json, dets, np.array(oks_values), np.array(scores)


def _pycocotools(gt_json: dict, dets: list, k: int = 4) -> np.ndarray:
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt_json
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(dets), iouType="keypoints")
        ev.params.kpt_oks_sigmas = np.full(k, 0.05)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def test_ap_statistics_equal_pycocotools_with_images_repeated() -> None:
    rng = np.random.default_rng(4)
    gt_json, dets, oks_values, scores = _coco(25, rng)
    stats = ap_statistics(oks_values, scores, np.arange(25), 25)
    ref = _pycocotools(gt_json, dets)
    for key, i in (("AP", 0), ("AP50", 1), ("AP75", 2)):
        assert stats[key](np.ones((1, 25)))[0] == pytest.approx(ref[i], abs=1e-12), key
    # weights: each image repeated as a new image id (scores distinct, so ties cannot reorder)
    w = rng.integers(0, 3, 25)
    w[0] = 1
    images, anns, rep = [], [], []
    for i in np.repeat(np.arange(25), w):
        new = len(images) + 1
        images.append({**gt_json["images"][i], "id": new})
        anns.append({**gt_json["annotations"][i], "id": new, "image_id": new})
        rep.append({**dets[i], "image_id": new})
    ref = _pycocotools({**gt_json, "images": images, "annotations": anns}, rep)
    for key, i in (("AP", 0), ("AP50", 1), ("AP75", 2)):
        assert stats[key](w[None].astype(float))[0] == pytest.approx(ref[i], abs=1e-12), key


def test_ap_statistics_refuse_several_instances_per_image() -> None:
    with pytest.raises(ValueError, match="one instance per image"):
        ap_statistics(np.ones(3), np.ones(3), np.array([0, 0, 1]), 2)


def test_mixed_swaps_the_flagged_images_between_two_runs() -> None:
    a = RatioStatistic(np.array([1.0, 2.0, 3.0]), np.array([1.0, 1.0, 1.0]))
    b = RatioStatistic(np.array([10.0, 20.0, 30.0]), np.array([1.0, 1.0, 1.0]))
    masks = np.array([[False, False, False], [True, False, False], [True, True, True]])
    assert a.mixed(b, masks).tolist() == pytest.approx([2.0, 5.0, 20.0])  # (1+2+3)/3, (10+2+3)/3, (10+20+30)/3
    ma = MedianStatistic(np.array([1.0, 2.0, 3.0, 4.0]), np.array([0, 0, 1, 2]), 3)
    mb = MedianStatistic(np.array([9.0, 9.0, 7.0, 8.0]), np.array([0, 0, 1, 2]), 3)
    # image 1 swapped: 1, 2, 7, 4 → 3.0; all swapped: b's median 8.5
    assert ma.mixed(mb, np.array([[False, True, False], [True, True, True]])).tolist() == [3.0, 8.5]
    gt_json, dets, oks_values, scores = _coco(6, np.random.default_rng(5))
    sa = ap_statistics(oks_values, scores, np.arange(6), 6)["AP"]
    sb = ap_statistics(oks_values[::-1].copy(), scores, np.arange(6), 6)["AP"]
    assert sa.mixed(sb, np.zeros((1, 6), bool))[0] == pytest.approx(sa(np.ones((1, 6)))[0])
    assert sa.mixed(sb, np.ones((1, 6), bool))[0] == pytest.approx(sb(np.ones((1, 6)))[0])
    with pytest.raises(ValueError, match="cannot pair"):
        a.mixed(ma, masks)
