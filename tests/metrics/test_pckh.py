"""Hand-computed checks of the MPII PCKh protocol (kpreg.metrics.pckh)."""

import numpy as np
import pytest
import torch

from kpreg.formats.mpii import MPII_FLIP_PAIRS, MPII_GROUPS, MPII_JOINT_NAMES, head_sizes_from_boxes
from kpreg.metrics.pckh import PCKh, exact_thresholds, metric_thresholds, pckh_results

K = 16
HEAD_TOP, R_ANKLE, PELVIS = 9, 0, 6


def _case(n: int, head_size: float = 10.0):
    """All joints perfect and visible; tests then move / hide single joints."""
    gt = np.zeros((n, K, 2)) + 100.0  # (N, K, 2) px
    return gt.copy(), gt, np.ones((n, K), bool), np.full(n, head_size)


def test_constants_consistent():
    assert len(MPII_JOINT_NAMES) == 16
    for a, b in MPII_FLIP_PAIRS:
        assert MPII_JOINT_NAMES[a][2:] == MPII_JOINT_NAMES[b][2:]
    assert sorted(i for idx in MPII_GROUPS.values() for i in idx) == [*range(6), *range(9, 16)]


def test_head_sizes_from_boxes_and_zero_box_error():
    boxes = np.array([[[0, 0], [3, 4]], [[10, 10], [16, 18]]], float)  # (2, 2, 2) diagonals 5 and 10
    np.testing.assert_allclose(head_sizes_from_boxes(boxes), [3.0, 6.0])
    boxes = np.concatenate([boxes, [[[5, 5], [5, 5]]]])  # index 2 degenerate
    with pytest.raises(ValueError, match="index 2"):
        head_sizes_from_boxes(boxes)
    boxes[2, 1, 0] = np.nan
    with pytest.raises(ValueError, match="index 2"):
        head_sizes_from_boxes(boxes)


def test_joint_exactly_at_threshold_is_correct():
    pred, gt, vis, hs = _case(2)
    pred[0, HEAD_TOP] += (3.0, 4.0)  # error exactly 5 = 0.5 * 10 -> correct (official <=)
    pred[1, HEAD_TOP] += (3.0, 4.0 + 1e-9)  # just above -> wrong
    r = pckh_results(pred, gt, vis, hs)
    assert r["joint/head_top"] == 50.0
    assert r["Head"] == 50.0


def test_missing_joint_ignored():
    pred, gt, vis, hs = _case(2)
    pred[0, R_ANKLE] += 1000.0  # way off, but not annotated -> must not count
    vis[0, R_ANKLE] = False
    vis[:, 5] = False  # l_ankle never annotated -> NaN per joint
    r = pckh_results(pred, gt, vis, hs)
    assert r["joint/r_ankle"] == 100.0
    assert np.isnan(r["joint/l_ankle"])
    assert r["Mean"] == 100.0
    assert r["MeanError"] == 0.0


def test_weighted_mean_vs_per_joint():
    # head_top visible 4x (all right), r_ankle visible 1x (wrong), pelvis wrong but excluded.
    pred, gt, vis, hs = _case(4)
    vis[:] = False
    vis[:, HEAD_TOP] = True
    vis[0, R_ANKLE] = True
    vis[:, PELVIS] = True
    pred[0, R_ANKLE, 0] += 50.0
    pred[:, PELVIS, 0] += 50.0
    r = pckh_results(pred, gt, vis, hs)
    assert r["joint/head_top"] == 100.0 and r["joint/r_ankle"] == 0.0 and r["joint/pelvis"] == 0.0
    assert r["Mean"] == pytest.approx(100.0 * 4 / 5)  # pooled counts, not (100 + 0) / 2
    assert r["MeanError"] == pytest.approx(50.0 * 5 / 9)  # over all visible joints incl. pelvis


def test_groups_average_left_and_right():
    # r_wrist: 1 of 1 right; l_wrist: 1 of 4 right -> group = (100 + 25) / 2, not pooled 2/5.
    pred, gt, vis, hs = _case(4)
    vis[1:, 10] = False
    pred[1:, 15] += 20.0
    r = pckh_results(pred, gt, vis, hs)
    assert r["Wrist"] == pytest.approx(62.5)


def test_mean_at_exactly_0_1():
    pred, gt, vis, hs = _case(2)
    vis[:] = False
    vis[:, HEAD_TOP] = True
    pred[0, HEAD_TOP, 0] += 1.0  # 1 / 10 == 0.1 exactly -> correct at 0.10
    pred[1, HEAD_TOP, 0] += 1.05  # 0.105: wrong at 0.10 (HRNet's "0.11" would count it)
    r = pckh_results(pred, gt, vis, hs)
    assert r["Mean@0.1"] == 50.0
    assert exact_thresholds([0.1])[0] == 0.1
    assert 0.1 in metric_thresholds() and 0.5 in metric_thresholds()


def test_auc_by_hand():
    # One joint, two samples: normalised errors 0.0 and 0.25.
    # PCK(t) = 50 for t < 0.25, 100 from 0.25; trapezoid on the 0.01 grid:
    # 0.24 * 50 + 0.01 * 75 + 0.25 * 100 = 37.75, / 0.5 -> 75.5 %.
    names = ("a",)
    gt = np.zeros((2, 1, 2))
    pred = gt.copy()
    pred[1, 0, 0] = 1.0
    r = pckh_results(pred, gt, np.ones((2, 1), bool), np.array([4.0, 4.0]), joint_names=names)
    assert r["AUC"] == pytest.approx(75.5)
    assert set(r) == {"Mean", "Mean@0.1", "AUC", "MeanError", "joint/a"}  # no MPII group columns


def test_nan_prediction_counts_as_wrong():
    pred, gt, vis, hs = _case(2)
    pred[0, HEAD_TOP] = np.nan
    r = pckh_results(pred, gt, vis, hs)
    assert r["joint/head_top"] == 50.0
    assert r["MeanError"] == 0.0  # the non-finite error is left out of the pixel mean


def _random(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    gt = rng.uniform(0, 500, (n, K, 2))
    hs = rng.uniform(5, 40, n)
    pred = gt + rng.normal(0, 1, (n, K, 2)) * hs[:, None, None] * 0.3
    vis = rng.random((n, K)) > 0.2
    return pred, gt, vis, hs


def test_metric_matches_numpy_and_merges_like_ddp():
    pred, gt, vis, hs = _random(60)
    t = [torch.from_numpy(a) for a in (pred, gt, vis, hs)]
    whole = PCKh()
    whole.update_arrays(*t)
    a, b = PCKh(), PCKh()
    a.update_arrays(*(x[:25] for x in t))
    b.update_arrays(*(x[25:] for x in t))
    a.merge_state(b)  # what DDP's sum-reduction of the states does
    ref = pckh_results(pred, gt, vis, hs)
    del ref["MeanError"]  # the streaming metric leaves the pixel error to PixelMetrics
    for m in (whole, a):
        res = m.compute()
        assert res.keys() == ref.keys()
        for key in ref:
            assert res[key] == pytest.approx(ref[key], rel=1e-12, abs=1e-12), key
    assert torch.equal(whole.correct, a.correct) and torch.equal(whole.total, a.total)


def test_metric_rejects_zero_head_size():
    pred, gt, vis, hs = _random(3)
    hs[1] = 0.0
    with pytest.raises(ValueError, match="index 1"):
        PCKh().update_arrays(*(torch.from_numpy(x) for x in (pred, gt, vis, hs)))


def test_metric_reads_the_sample_meta():
    pred, gt, vis, hs = _random(5)
    meta = {"keypoints_orig": torch.from_numpy(gt), "visible_orig": torch.from_numpy(vis),
            "norm_length": torch.from_numpy(hs)}
    m = PCKh()
    m.update(torch.from_numpy(pred), torch.ones(5, K), meta)
    ref = pckh_results(pred, gt, vis, hs)
    assert m.compute()["Mean"] == pytest.approx(ref["Mean"], abs=1e-12)
    assert {c.key for c in m.columns} == {*MPII_GROUPS, "Mean", "Mean@0.1", "AUC"}
    assert PCKh.higher_is_better("Mean") is True and PCKh.higher_is_better("MeanError") is None


def test_metric_float32_input_and_custom_names():
    m = PCKh(joint_names=("nose", "tail"))
    pred = torch.tensor([[[0.0, 0.0], [3.0, 4.0]]])  # (1, 2, 2) float32
    gt = torch.zeros(1, 2, 2)
    m.update_arrays(pred, gt, torch.ones(1, 2, dtype=torch.bool), torch.tensor([10.0]))
    r = m.compute()
    assert r["joint/nose"] == 100.0 and r["joint/tail"] == 100.0  # 5 / 10 at threshold 0.5
    assert r["Mean@0.1"] == 50.0 and "MeanError" not in r
