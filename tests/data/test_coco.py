"""COCODataModule on the tiny fixture of tests/testkit/coco.py (written to tmp_path, no real data)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from testkit.coco import INSTANCE_BOXES, UNLABELLED_IN_IMAGE_3, CocoFixture, make_coco_fixture

from kpreg.cli import evaluate_main
from kpreg.coords import apply_affine
from kpreg.data.coco import COCODataModule
from kpreg.data.topdown import Augmentation, DataError
from kpreg.formats.coco import COCO_FLIP_PAIRS, COCO_SIGMAS
from kpreg.formats.oks import instance_score
from kpreg.formats.predictions import read_predictions
from kpreg.metrics import build_metrics
from kpreg.metrics.coco_score import score_coco_files
from kpreg.metrics.oks import STAT_NAMES

ANIMAL = ("nose", "left_ear", "right_ear", "left_paw", "right_paw", "tail")


@pytest.fixture(scope="module")
def fx(tmp_path_factory: pytest.TempPathFactory) -> CocoFixture:
    return make_coco_fixture(tmp_path_factory.mktemp("coco"))


def _dm(fx: CocoFixture, **kwargs) -> COCODataModule:
    args = dict(train_ann=str(fx.train_ann), val_ann=str(fx.val_ann), train_images=str(fx.images),
                batch_size=4, num_workers=0)
    return COCODataModule(**{**args, **kwargs})


def _all_batches(dm: COCODataModule) -> list[dict]:
    return list(dm.test_dataloader())


def test_which_annotations_become_samples(fx: CocoFixture) -> None:
    dm = _dm(fx)
    dm.setup("fit")
    # the crowd and the zero-keypoint annotations (last two of each image list) are excluded, counted
    train_ids = [r.extra["image_id"] for r in dm.records["train"]]
    assert train_ids == [n for n, _ in INSTANCE_BOXES]
    val_ids = [r.extra["image_id"] for r in dm.records["val"]]
    assert val_ids == [100 + n for n, _ in INSTANCE_BOXES]
    for split in ("train", "val"):
        skipped = dm.reports[split].skipped
        assert skipped == {"crowd annotation(s)": 1, "annotation(s) without labelled keypoints": 1}
    assert all(r.extra["box_score"] == 1.0 for r in dm.records["val"])  # GT boxes
    image3 = dm.records["val"][3]
    assert np.flatnonzero(~image3.visible).tolist() == list(UNLABELLED_IN_IMAGE_3)


def test_detected_boxes_replace_gt_boxes_in_val_and_test(fx: CocoFixture) -> None:
    dm = _dm(fx, bbox_file=str(fx.bbox_file))
    dm.setup("test")
    recs = dm.records["val"]
    # 5 instances + the zero-keypoint person are detected; other category and zero-size box counted
    assert [r.extra["image_id"] for r in recs] == [101, 101, 102, 103, 104, 102]
    assert [r.extra["box_score"] for r in recs] == [0.9] * 5 + [0.8]
    assert dm.reports["val"].skipped == {"detection(s) of other categories than 1": 1,
                                         "detection(s) with a zero or negative size box": 1}
    batch = _all_batches(dm)[0]
    assert batch["visibility"].sum() == 0  # GT keypoints are unknown per detected box: no loss
    assert set(batch["meta"]) >= {"image_id", "box_score", "nms_area", "box_size"}
    # the threshold drops the 0.8 detection
    dm_thr = _dm(fx, bbox_file=str(fx.bbox_file), det_score_thr=0.85)
    dm_thr.setup("test")
    assert len(dm_thr.records["val"]) == 5


def test_box_expanded_to_aspect_ratio_with_padding(fx: CocoFixture) -> None:
    dm = _dm(fx)  # 256×192 input: aspect w/h = 0.75
    dm.setup("validate")
    tall = dm.records["val"][0]  # box (6, 10, 40, 70): narrower than 0.75 → width grows to 52.5
    np.testing.assert_allclose(tall.center, [6 + 20 - 0.5, 10 + 35 - 0.5])
    np.testing.assert_allclose(tall.box_size, [52.5 * 1.25, 70 * 1.25])
    wide = dm.records["val"][3]  # box (20, 20, 56, 50): wider than 0.75 → height grows to 56 / 0.75
    np.testing.assert_allclose(wide.center, [20 + 28 - 0.5, 20 + 25 - 0.5])
    np.testing.assert_allclose(wide.box_size, [56 * 1.25, 56 / 0.75 * 1.25])
    assert wide.extra["nms_area"] == pytest.approx(56 * 1.25 * 56 / 0.75 * 1.25)  # OKS-NMS area: padded box
    assert wide.instance_size == 56 and wide.norm_length == 56  # the sample's scale: the larger side of its box

    by_kpts = _dm(fx, box_source="keypoints", input_size=(64, 64), padding=1.5)
    by_kpts.setup("validate")
    rec = by_kpts.records["val"][0]
    pts = rec.keypoints[rec.visible]
    lo, hi = pts.min(0), pts.max(0)
    np.testing.assert_allclose(rec.center, (lo + hi) / 2)
    np.testing.assert_allclose(rec.box_size, [max(hi - lo) * 1.5] * 2)
    whole = _dm(fx, box_source="image", input_size=(96, 128), padding=1.0)
    whole.setup("validate")
    np.testing.assert_allclose(whole.records["val"][0].center, [63.5, 47.5])
    np.testing.assert_allclose(whole.records["val"][0].box_size, [128, 96])


@pytest.mark.parametrize("split", ["train", "val"])
def test_affine_round_trip_to_original_pixels(fx: CocoFixture, split: str) -> None:
    aug = Augmentation(scale_factor=0.3, rotation=40.0, rotation_prob=1.0, flip_prob=0.5, half_body_prob=0.5,
                       half_body_min_joints=3)
    dm = _dm(fx, augmentation=aug, input_size=(64, 48))
    dm.setup("fit")
    ds = dm.datasets[split]
    for i in range(len(ds)):
        s = ds[i]
        back = apply_affine(s["keypoints"].double(), s["meta"]["affine_inv"])  # (K, 2) original px
        vis = s["meta"]["visible_orig"]
        err = (back - s["meta"]["keypoints_orig"])[vis].abs().max()
        assert err <= 1e-3
        assert s["image"].shape == (3, 64, 48)


def test_keypoint_layout_from_categories_and_config(tmp_path: Path, fx: CocoFixture) -> None:
    dm = _dm(fx)
    assert dm.flip_pairs == list(COCO_FLIP_PAIRS)
    np.testing.assert_array_equal(dm.sigmas, COCO_SIGMAS)
    assert dm.skeleton[0] == (15, 13) and dm.input_size == (256, 192)

    animal = make_coco_fixture(tmp_path / "animal", ANIMAL, category_name="dog", category_id=3)
    inferred = _dm(animal)
    assert inferred.keypoint_names == list(ANIMAL) and inferred.num_keypoints == 6
    assert inferred.flip_pairs == [(1, 2), (3, 4)]  # from left_/right_ in the names
    np.testing.assert_array_equal(inferred.sigmas, [0.05] * 6)  # unknown layout: default_sigma
    custom = _dm(animal, flip_pairs=[(1, 2)], sigmas=[0.02, 0.03, 0.03, 0.08, 0.08, 0.1], default_sigma=0.07)
    assert custom.flip_pairs == [(1, 2)]
    np.testing.assert_allclose(custom.sigmas, [0.02, 0.03, 0.03, 0.08, 0.08, 0.1])
    assert list(_dm(animal, default_sigma=0.07).sigmas) == [0.07] * 6
    with pytest.raises(ValueError, match="got 2 sigmas for 6 keypoints"):
        _dm(animal, sigmas=[0.1, 0.1])


def _predictions(dm: COCODataModule, shift_per_sample: float) -> tuple[list[dict], torch.Tensor, torch.Tensor]:
    """(batches, preds (N, K, 2) original px = GT shifted by i × shift in x, confidences (N, K) = 1)."""
    batches = _all_batches(dm)
    gt = torch.cat([b["meta"]["keypoints_orig"] for b in batches])  # (N, K, 2)
    shift = torch.arange(len(gt), dtype=torch.float64)[:, None] * shift_per_sample  # (N, 1)
    pred = gt.clone()
    pred[..., 0] += shift
    return batches, pred, torch.ones(gt.shape[:2], dtype=torch.float64)


def _feed(dm: COCODataModule, batches: list[dict], pred: torch.Tensor, scores: torch.Tensor) -> dict[str, float]:
    metric, start = build_metrics(dm.evaluation()), 0
    for b in batches:
        n = len(b["image"])
        metric.update(pred[start:start + n], scores[start:start + n], b["meta"])
        start += n
    return {k: float(v) for k, v in metric.compute().items()}


def test_perfect_predictions_score_ap_one(fx: CocoFixture) -> None:
    dm = _dm(fx)
    batches, pred, scores = _predictions(dm, 0.0)
    metrics = _feed(dm, batches, pred, scores)
    assert build_metrics(dm.evaluation()).primary == "AP"  # OKS AP leads COCO's metrics
    assert set(STAT_NAMES) <= set(metrics) and metrics["MeanError"] == 0.0
    assert metrics["AP"] == pytest.approx(1.0) and metrics["AR"] == pytest.approx(1.0)


def test_shifted_predictions_score_what_plain_pycocotools_says(fx: CocoFixture) -> None:
    dm = _dm(fx)
    batches, pred, scores = _predictions(dm, 1.5)  # 0, 1.5, 3, 4.5, 6 px: AP strictly between 0 and 1
    metrics = _feed(dm, batches, pred, scores)
    image_ids = torch.cat([b["meta"]["image_id"] for b in batches]).tolist()
    results = [
        {"image_id": iid, "category_id": 1, "score": 1.0,
         "keypoints": np.concatenate([p.numpy(), np.ones((len(p), 1))], 1).reshape(-1).tolist()}
        for iid, p in zip(image_ids, pred)
    ]  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(fx.val_ann))
        ev = COCOeval(gt, gt.loadRes(results), iouType="keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert 0.0 < metrics["AP"] < 1.0
    assert [metrics[k] for k in STAT_NAMES] == pytest.approx(ev.stats.tolist(), abs=1e-12)


def test_results_json_scores_the_same_through_evaluate_score(fx: CocoFixture, tmp_path: Path) -> None:
    dm = _dm(fx, bbox_file=str(fx.bbox_file))
    batches = _all_batches(dm)
    gt_dm = _dm(fx)
    gt_dm.setup("validate")
    rng = np.random.default_rng(0)
    n = len(dm.records["val"])
    # the 5 detections of annotated people get noisy GT keypoints, the extra one keypoints at its centre
    pred = torch.zeros(n, dm.num_keypoints, 2, dtype=torch.float64)
    for i, rec in enumerate(dm.records["val"]):
        base = gt_dm.records["val"][i].keypoints if i < 5 else np.tile(rec.center, (dm.num_keypoints, 1))
        pred[i] = torch.from_numpy(base + rng.normal(0, 2.0, base.shape))
    scores = torch.from_numpy(rng.uniform(0, 1, (n, dm.num_keypoints)))  # threshold 0.2 matters
    in_eval = _feed(dm, batches, pred, scores)
    indices = torch.cat([b["meta"]["index"] for b in batches])
    written = {p.name: p for p in dm.write_predictions(tmp_path, indices, pred, scores.float().double())}
    assert set(written) == {"results.json", "predictions.json"}
    path = written["results.json"]
    results = json.loads(path.read_text())
    assert {r["image_id"] for r in results} <= set(fx.image_ids["val"])
    # predictions.json: every sample (no NMS), where it came from, and the metric's instance scores
    every = read_predictions(written["predictions.json"])
    assert every.index.tolist() == list(range(n))
    assert every.image_id.tolist() == [rec.extra["image_id"] for rec in dm.records["val"]]
    assert every.file_name == tuple(Path(rec.image_path).relative_to(fx.images).as_posix() for rec in dm.records["val"])
    np.testing.assert_allclose(every.keypoints, pred.numpy(), atol=1e-4)
    box_score = np.array([rec.extra["box_score"] for rec in dm.records["val"]])  # (N,)
    np.testing.assert_allclose(every.score, instance_score(scores.numpy(), box_score, dm.kp_score_thr), atol=1e-6)
    out = tmp_path / "scored.json"
    evaluate_main(["score", "--dataset", "coco", "--gt", str(fx.val_ann), "--pred", str(path), "--json", str(out)])
    scored = json.loads(out.read_text())
    assert 0.0 < in_eval["AP"] < 1.0
    assert scored == pytest.approx({k: in_eval[k] for k in STAT_NAMES}, abs=1e-12)


def test_recoverable_problems_are_skipped_and_counted(fx: CocoFixture, tmp_path: Path, capsys) -> None:
    data = fx.load("val")
    good = data["annotations"][0]
    data["annotations"] += [
        {**good, "id": 9001, "bbox": [10.0, 10.0, 0.0, 30.0]},  # zero-width box
        {**good, "id": 9002, "bbox": [10.0, 10.0, 20.0, -3.0]},  # negative height
        {**good, "id": 9003, "keypoints": [500.0, 20.0, 2] + good["keypoints"][3:]},  # one keypoint outside
        {**good, "id": 9004, "image_id": 777},  # no such image
    ]
    val = tmp_path / "val.json"
    val.write_text(json.dumps(data))
    dm = COCODataModule(val_ann=str(val), val_images=str(fx.images), num_workers=0)
    dm.setup("validate")
    out = capsys.readouterr().out
    assert "skipped 1 crowd annotation(s), 1 annotation(s) without labelled keypoints" in out
    assert "2 annotation(s) with a zero or negative size box" in out
    assert "1 keypoint(s) outside their image (set unlabelled)" in out
    assert "1 annotation(s) whose image_id is not in 'images'" in out
    assert len(dm.records["val"]) == 6  # 5 + the one with a keypoint outside (that keypoint unlabelled)
    assert dm.records["val"][-1].visible.tolist() == [False] + [True] * 16


def test_bad_files_raise_naming_file_and_id(fx: CocoFixture, tmp_path: Path) -> None:
    def broken(edit) -> Path:
        data = fx.load("val")
        edit(data)
        path = tmp_path / "broken.json"
        path.write_text(json.dumps(data))
        return path

    def setup(val_ann: Path, **kwargs) -> None:
        COCODataModule(val_ann=str(val_ann), val_images=str(fx.images), num_workers=0, **kwargs).setup("test")

    no_kp = broken(lambda d: d["annotations"][2].pop("keypoints"))
    with pytest.raises(ValueError, match=r"broken.json: annotation id 1003 .*has no 'keypoints' field"):
        setup(no_kp)
    short = broken(lambda d: d["annotations"][1].update(keypoints=[1.0, 2.0, 2] * 5))
    with pytest.raises(ValueError, match=r"broken.json: annotation id 1002 .*15 values, expected 3\*17=51"):
        setup(short)
    with pytest.raises(ValueError, match="no category has a 'keypoints' list|exactly one keypoint category"):
        setup(broken(lambda d: d["categories"][0].pop("keypoints")))
    missing_image = broken(lambda d: d["images"][2].update(file_name="nope.jpg"))
    with pytest.raises(DataError, match=r"1 of 4 images .*nope.jpg \(image_id 103\)"):
        setup(missing_image)
    dets = json.loads(fx.bbox_file.read_text()) + [
        {"image_id": 4242, "category_id": 1, "bbox": [1.0, 1.0, 9.0, 9.0], "score": 0.5}
    ]
    bad_v = broken(lambda d: d["annotations"][1]["keypoints"].__setitem__(5, 3))  # keypoint 1 of id 1002: v = 3
    with pytest.raises(ValueError, match=r"broken.json: annotation id 1002 .*visibility flag other than 0.*keypoint 1 "
                                         r"has v=3"):
        setup(bad_v)
    bad_dets = tmp_path / "dets.json"
    bad_dets.write_text(json.dumps(dets))
    with pytest.raises(DataError, match=r"dets.json: entry 8 has image_id 4242, which is not in .*val.json"):
        setup(fx.val_ann, bbox_file=str(bad_dets))


def test_an_empty_validation_split_is_an_error(fx: CocoFixture, tmp_path: Path) -> None:
    """A validation file whose every annotation is skipped used to train with no validation and no warning."""
    data = fx.load("val")
    for ann in data["annotations"]:
        ann["iscrowd"] = 1
    val = tmp_path / "all_crowd.json"
    val.write_text(json.dumps(data))
    dm = _dm(fx, val_ann=str(val))
    with pytest.raises(DataError, match=r"the val split has no samples \(COCO val: 0 samples from 0 images "
                                        r"\(.*all_crowd.json\); skipped 7 crowd annotation\(s\)\)"):
        dm.setup("fit")


def test_gt_without_area_and_num_keypoints_scores_the_same_in_both_places(fx: CocoFixture, tmp_path: Path) -> None:
    data = fx.load("val")
    for ann in data["annotations"]:
        del ann["area"], ann["num_keypoints"]  # custom files often lack both; pycocotools needs them
    val = tmp_path / "bare.json"
    val.write_text(json.dumps(data))
    dm = COCODataModule(val_ann=str(val), val_images=str(fx.images), num_workers=0)
    batches, pred, scores = _predictions(dm, 1.0)
    in_eval = _feed(dm, batches, pred, scores)
    indices = torch.cat([b["meta"]["index"] for b in batches])
    path = tmp_path / "results.json"
    assert path in dm.write_predictions(tmp_path, indices, pred, scores)
    assert 0.0 < in_eval["AP"] < 1.0
    assert score_coco_files(val, path) == pytest.approx({k: in_eval[k] for k in STAT_NAMES}, abs=1e-12)
