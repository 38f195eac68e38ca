"""Scoring saved MPII prediction files end to end (tiny hand-made gt_valid.mat)."""

import numpy as np
import pytest
import scipy.io
from formats.test_mpii import write_gt_mat
from rich.console import Console

from kpreg.formats.mpii import save_pred_mat
from kpreg.metrics.mpii_score import SUMMARY_KEYS, mpii_table, score_mpii_files, score_mpii_files_detailed


@pytest.fixture()
def gt_file(tmp_path):
    """Two people, head size 6 px (box diagonal 10), r_ankle of person 1 missing. 1-based on disk."""
    joints = np.tile(np.arange(16, dtype=float)[:, None] * 10 + 20, (2, 1, 2))  # (2, 16, 2) 1-based
    missing = np.zeros((2, 16), bool)
    missing[1, 0] = True
    boxes = np.array([[[1, 1], [7, 9]]] * 2, float)
    path = tmp_path / "gt_valid.mat"
    write_gt_mat(path, joints, missing, boxes)
    return path, joints - 1  # (2, 16, 2) 0-based


def test_score_hand_computed(tmp_path, gt_file):
    gt_path, gt0 = gt_file
    preds = gt0.copy()  # (2, 16, 2) 0-based
    preds[0, 9, 0] += 3.0  # head_top of person 0: 3 / 6 = 0.5 -> correct at 0.5 (<=), wrong at 0.1
    preds[1, 9, 0] += 3.5  # head_top of person 1: wrong
    preds[1, 0, 0] += 99.0  # r_ankle of person 1 is missing: ignored
    preds[0, 15, 1] += 0.6  # l_wrist of person 0: 0.1 exactly -> correct at 0.1
    save_pred_mat(tmp_path / "pred.mat", preds)
    s = score_mpii_files(gt_path, tmp_path / "pred.mat")
    assert tuple(s) == SUMMARY_KEYS
    assert s["Head"] == 50.0 and s["Ankle"] == 100.0 and s["Wrist"] == 100.0
    # 14 joints x 2 people - 1 missing = 27 visible; 1 wrong at 0.5; 2 wrong at 0.1.
    assert s["Mean"] == pytest.approx(100 * 26 / 27)
    assert s["Mean@0.1"] == pytest.approx(100 * 25 / 27)
    d = score_mpii_files_detailed(gt_path, tmp_path / "pred.mat")
    assert d.per_joint["head_top"] == 50.0 and d.per_joint["r_ankle"] == 100.0
    assert d.unweighted_mean == pytest.approx(100 * 13.5 / 14)
    assert d.mean_error_px == pytest.approx((3.0 + 3.5 + 0.6) / 31)  # 32 joints - 1 missing


def test_matlab_coordinates_score_perfectly(tmp_path, gt_file):
    # A file holding the GT in MATLAB coordinates (what pred.mat looks like) scores 100 / 0 px (<= counts zero error even at threshold 0).
    gt_path, gt0 = gt_file
    scipy.io.savemat(tmp_path / "pred.mat", {"preds": (gt0 + 1).transpose(2, 1, 0)})  # 2x16xN
    d = score_mpii_files_detailed(gt_path, tmp_path / "pred.mat")
    assert d.summary["Mean"] == 100.0 and d.summary["AUC"] == 100.0 and d.mean_error_px == 0.0
    d0 = score_mpii_files_detailed(gt_path, tmp_path / "pred.mat", one_based=False)
    assert d0.mean_error_px == pytest.approx(np.sqrt(2))


def test_count_mismatch_names_files_and_shapes(tmp_path, gt_file):
    gt_path, gt0 = gt_file
    save_pred_mat(tmp_path / "short.mat", gt0[:1])
    with pytest.raises(ValueError, match=r"short\.mat.*\(1, 16, 2\).*gt_valid\.mat.*\(2, 16, 2\)"):
        score_mpii_files(gt_path, tmp_path / "short.mat")
    scipy.io.savemat(tmp_path / "k15.mat", {"preds": np.zeros((2, 15, 2))})
    with pytest.raises(ValueError, match=r"k15\.mat.*\(2, 15, 2\).*gt_valid\.mat.*\(2, 16, 2\)"):
        score_mpii_files(gt_path, tmp_path / "k15.mat")


def test_mpii_table_two_decimals():
    summary = dict.fromkeys(SUMMARY_KEYS, 87.3049)
    table = mpii_table(summary, name="model")
    headers = [c.header for t in table.renderables[1:] for c in t.columns]  # after the title line
    assert headers == [*SUMMARY_KEYS[:-3], "PCKh@0.5", "PCKh@0.1", "AUC"]
    console = Console(width=80, record=True)
    console.print(table)
    text = console.export_text()
    assert text.count("87.30") == len(SUMMARY_KEYS) and "…" not in text
