"""Reading per-sample tables (kpreg.compare.per_sample) written by the fixture writer: the statistics at unit weights
are the run's metrics; runs on different frames are refused with one message."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from testkit.per_sample import write_per_sample

from kpreg.compare.per_sample import PairingError, check_same_frames, load_run
from kpreg.metrics.pckh import pckh_results
from kpreg.metrics.pixel import pixel_results


def test_statistics_of_a_written_table_equal_the_metrics(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    err = rng.gamma(2.0, 1.5, (12, 3))
    vis = rng.random((12, 3)) > 0.2
    path = write_per_sample(tmp_path / "a" / "per_sample.npz", err, visible=vis)
    run = load_run("a", path)
    assert run.n_images == 12 and len(run.fingerprint) == 16
    expected = pixel_results(np.where(vis, err, np.nan), vis, np.full(12, 100.0), ["k0", "k1", "k2"])
    for key in ("MeanError", "MedianError", "RMSE", "PCK@0.05", "PCK@5px", "PCK-AUC"):
        assert run.statistics[key](np.ones((1, 12)))[0] == pytest.approx(expected[key]), key
    assert "Mean" not in run.statistics and "AP" not in run.statistics


def test_head_scale_tables_get_pckh(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    err = rng.gamma(2.0, 4.0, (10, 2))
    path = write_per_sample(tmp_path / "h.npz", err, scale="head", norm_length=np.full(10, 20.0))
    run = load_run("h", path)
    gt = np.zeros((10, 2, 2))
    pred = np.stack([err, np.zeros_like(err)], -1)
    expected = pckh_results(pred, gt, np.ones((10, 2), bool), np.full(10, 20.0), joint_names=("k0", "k1"))
    assert run.statistics["Mean"](np.ones((1, 10)))[0] == pytest.approx(expected["Mean"])


def test_an_unpredicted_keypoint_counts_as_wrong(tmp_path: Path) -> None:
    err = np.array([[1.0, np.nan], [2.0, 3.0]])
    run = load_run("u", write_per_sample(tmp_path / "u.npz", err))
    one = np.ones((1, 2))
    assert run.statistics["MeanError"](one)[0] == pytest.approx(2.0)  # 1, 2, 3: the unpredicted one left out
    assert run.statistics["PCK@2px"](one)[0] == pytest.approx(50.0)  # 1, 2 of the four labelled


def test_runs_on_different_frames_are_refused(tmp_path: Path) -> None:
    err = np.ones((5, 2))
    a = load_run("heatmap-seed0", write_per_sample(tmp_path / "a.npz", err, frames_seed=0))
    b = load_run("dsnt-seed0", write_per_sample(tmp_path / "b.npz", err * 2, frames_seed=0))
    c = load_run("dsnt-val2", write_per_sample(tmp_path / "c.npz", err, frames_seed=1))
    check_same_frames([a, b])
    with pytest.raises(PairingError, match="runs evaluated on different frames cannot be paired: heatmap-seed0 .* "
                                           "and dsnt-val2"):
        check_same_frames([a, b, c])
