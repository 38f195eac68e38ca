"""Pixel error and PCK (kpreg.metrics.pixel) against hand-computed values: an unlabelled keypoint, a box of size 0,
a prediction that is not finite; the streaming metric equals the array function; the metric contract."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kpreg.metrics.contract import KeypointMetrics
from kpreg.metrics.pixel import PixelMetrics, pixel_results
from kpreg.metrics.uncertainty import UncertaintyMetric

NAMES = ("a", "b")
# Three samples × two keypoints. Errors (px): sample 0: 3, 4; sample 1: 0, unlabelled (its 100 never counts);
# sample 2: 12, not finite. Boxes: 50, 20, 0 (sample 2 cannot be normalised).
ERRORS = np.array([[3.0, 4.0], [0.0, 100.0], [12.0, np.inf]])
LABELLED = np.array([[True, True], [True, False], [True, True]])
BOX = np.array([50.0, 20.0, 0.0])


def test_pixel_figures_by_hand() -> None:
    r = pixel_results(ERRORS, LABELLED, BOX, NAMES, box_thresholds=(0.05, 0.1, 0.2), pixel_thresholds=(2.0, 5.0))
    # errors over labelled, finite keypoints: 3, 4, 0, 12 (the unpredicted one is left out)
    assert r["MeanError"] == pytest.approx(19 / 4)
    assert r["MedianError"] == pytest.approx(3.5)
    assert r["RMSE"] == pytest.approx(math.sqrt((9 + 16 + 0 + 144) / 4))
    # box-relative: samples 0 and 1 only (box 0 cannot be normalised): ratios 0.06, 0.08, 0.0 over 3 keypoints
    assert r["PCK@0.05"] == pytest.approx(100 / 3)
    assert r["PCK@0.1"] == pytest.approx(100.0) and r["PCK@0.2"] == pytest.approx(100.0)
    # fixed pixels: every labelled keypoint counts, the unpredicted one as wrong: 0 ≤ 2; 3, 4, 0 ≤ 5 of 5
    assert r["PCK@2px"] == pytest.approx(100 / 5) and r["PCK@5px"] == pytest.approx(300 / 5)
    # per keypoint: a: 3, 0, 12; b: 4 only
    assert r["MeanError/a"] == pytest.approx(5.0) and r["MedianError/a"] == pytest.approx(3.0)
    assert r["MeanError/b"] == pytest.approx(4.0) and r["RMSE/b"] == pytest.approx(4.0)
    assert r["PCK@0.1/a"] == pytest.approx(100.0) and r["PCK@0.1/b"] == pytest.approx(100.0)


def test_auc_of_the_box_relative_pck_by_hand() -> None:
    # one keypoint, two samples of box 100: errors 0 and 10 px = 0.1 box. PCK(t) = 50 below 0.1, 100 from 0.1:
    # trapezoid on the 0.01 grid over [0, 0.2]: 0.09·50 + 0.01·75 + 0.1·100 = 15.25, / 0.2 → 76.25 %
    r = pixel_results(np.array([[0.0], [10.0]]), np.ones((2, 1), bool), np.array([100.0, 100.0]), ("a",))
    assert r["PCK-AUC"] == pytest.approx(76.25)


def test_nothing_normalisable_gives_nan_not_an_error() -> None:
    r = pixel_results(np.array([[1.0]]), np.ones((1, 1), bool), np.array([0.0]), ("a",))
    assert math.isnan(r["PCK@0.1"]) and math.isnan(r["PCK-AUC"]) and r["MeanError"] == 1.0


def _meta(gt: torch.Tensor, labelled: torch.Tensor, box: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"keypoints_orig": gt, "visible_orig": labelled, "box_size": box, "norm_length": box}


def test_streaming_metric_equals_the_array_function_and_merges_like_ddp() -> None:
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(10, 2, 2, generator=g, dtype=torch.float64) * 100
    pred = gt + torch.randn(10, 2, 2, generator=g, dtype=torch.float64) * 5
    labelled = torch.rand(10, 2, generator=g) > 0.2
    box = torch.rand(10, generator=g, dtype=torch.float64) * 60
    box[3] = 0.0
    whole, a, b = PixelMetrics(NAMES), PixelMetrics(NAMES), PixelMetrics(NAMES)
    whole.update(pred, torch.ones(10, 2), _meta(gt, labelled, box))
    a.update(pred[:4], torch.ones(4, 2), _meta(gt[:4], labelled[:4], box[:4]))
    b.update(pred[4:], torch.ones(6, 2), _meta(gt[4:], labelled[4:], box[4:]))
    a.merge_state(b)  # what DDP's concatenation of the states does
    errors = np.where(labelled.numpy(), (pred - gt).norm(dim=-1).numpy(), np.nan)
    ref = pixel_results(errors, labelled.numpy(), box.numpy(), NAMES)
    for metric in (whole, a):
        got = metric.compute()
        assert got.keys() == ref.keys()
        for key, value in ref.items():
            assert got[key] == pytest.approx(value, nan_ok=True), key


def test_contract_directions_and_primary() -> None:
    metrics = KeypointMetrics([PixelMetrics(NAMES)], primary="MeanError", title="t")
    assert metrics.higher_is_better is False  # a pixel error: lower is better
    assert metrics.higher_is_better_key("PCK@0.1") is True and metrics.higher_is_better_key("MeanError/a") is False
    assert metrics.describe()["primary"] == "MeanError"
    with pytest.raises(ValueError, match="primary metric 'AP' is not reported"):
        KeypointMetrics([PixelMetrics(NAMES)], primary="AP")


def test_uncertainty_figures_are_normalised_by_the_sample_scale_and_worsen_with_the_predictions() -> None:
    """On box-normalised data a keypoint is correct within 0.1 box sizes; the figures must move when the
    predictions get worse (with COCO's area taken as a length they would stay 100 % whatever the predictions)."""
    g = torch.Generator().manual_seed(1)
    gt = torch.rand(40, 4, 2, generator=g, dtype=torch.float64) * 200
    box = torch.full((40,), 100.0, dtype=torch.float64)
    meta = _meta(gt, torch.ones(40, 4, dtype=torch.bool), box)
    figures = []
    for noise in (2.0, 8.0, 30.0):  # px: 0.02, 0.08, 0.3 box sizes
        pred = gt + torch.randn(40, 4, 2, generator=g, dtype=torch.float64) * noise
        conf = torch.rand(40, 4, generator=g)
        metric = UncertaintyMetric(threshold=0.1)
        metric.update(pred, conf, meta)
        figures.append(metric.compute()["pck_all"])
    assert figures[0] > figures[1] > figures[2] and figures[2] < 50.0
