"""The calibration of an evaluation table (kpreg.metrics.calibration.evaluation) on hand-made tables: what each
mode scores with, and that no labelled keypoint is scored by a map that saw it."""

from __future__ import annotations

import pytest
import torch

from kpreg.metrics.calibration import ConfidenceMap, choose_method, cross_fit, data_fingerprint
from kpreg.metrics.calibration.evaluation import Calibration, calibrate_table, check_calibration_method
from kpreg.metrics.table import EvaluationTable

K = 3
SETTINGS = {"threshold": 0.5, "scale": "head", "flip_test": True, "num_keypoints": K}


def epoch(s: int, seed: int) -> EvaluationTable:
    """S samples: errors of 0–10 px around a 10 px head (correct ⇔ ≤ 5 px), raw scores on a SimCC-like scale that
    fall with the error, a spread that grows with it; keypoint 2 of every 4th sample unlabelled."""
    g = torch.Generator().manual_seed(seed)
    gt = 50.0 * torch.rand(s, K, 2, generator=g, dtype=torch.float64)
    error = 10.0 * torch.rand(s, K, generator=g, dtype=torch.float64)  # (S, K) px
    angle = 6.283 * torch.rand(s, K, generator=g, dtype=torch.float64)
    coords = gt + error[..., None] * torch.stack((angle.cos(), angle.sin()), -1)
    noise = torch.rand(s, K, generator=g, dtype=torch.float64)
    confidence = 0.08 * torch.exp(-error / 4.0) * (0.7 + 0.6 * noise)  # (S, K)
    visible = torch.ones(s, K, dtype=torch.bool)
    visible[::4, 2] = False
    return EvaluationTable(index=torch.arange(s), coords=coords, gt=gt, visible=visible,
                           norm_length=torch.full((s,), 10.0, dtype=torch.float64),
                           box_size=torch.full((s,), 40.0, dtype=torch.float64), confidence=confidence,
                           spread=1.0 + error**2, extra={"image_id": torch.arange(s) // 2})  # two samples per image


def test_fit_scores_labelled_keypoints_out_of_fold_and_records_the_map() -> None:
    table = epoch(60, seed=0)
    out = calibrate_table(table, fit=True, method="auto", record=None, split="validation", **SETTINGS)
    assert out.mode == "fitted" and out.record is not None
    labelled = table.visible
    correct = (table.coords - table.gt).norm(dim=-1) <= 5.0
    features = torch.stack((table.confidence[labelled], table.spread[labelled].log()), 1)  # (N, 2)
    choice = choose_method(features, correct[labelled], keypoint_index=torch.arange(K).expand(60, K)[labelled],
                           groups=table.groups[:, None].expand(60, K)[labelled])
    assert out.record.method == choice.name
    torch.testing.assert_close(out.confidence[labelled], choice.probability)  # out of fold
    final = ConfidenceMap(choice.calibrator, K)(table.confidence, table.spread)
    torch.testing.assert_close(out.confidence[~labelled], final[~labelled])  # unlabelled: the stored map
    assert not torch.allclose(out.confidence[labelled], final[labelled])  # the stored map is not what is scored
    assert out.record.fitted_on == {"split": "validation", "samples": 60, "keypoints": int(labelled.sum()),
                                    "fingerprint": data_fingerprint(table.index, table.gt, table.visible)}
    assert out.record.correct["definition"] == "error ≤ 0.5 × head size (PCKh@0.5)"
    assert out.record.scores == out.scores and out.scores["ECE"] < out.scores["ECE_raw"]
    assert out.correct.tolist() == correct[labelled].tolist()


def test_a_stored_map_is_cross_fitted_on_its_own_data_and_applied_to_other_data() -> None:
    table = epoch(60, seed=0)
    record = calibrate_table(table, fit=True, method="platt", record=None, split="validation", **SETTINGS).record
    same = calibrate_table(table, fit=False, method="auto", record=record, split="evaluated", **SETTINGS)
    assert same.mode == "cross-fitted" and "cross-fitted again" in same.note
    labelled = table.visible
    again = cross_fit("platt", table.confidence[labelled], same.correct, folds=5,
                      groups=table.groups[:, None].expand(60, K)[labelled],
                      keypoint_index=torch.arange(K).expand(60, K)[labelled])
    torch.testing.assert_close(same.confidence[labelled], again.probability)

    other = epoch(40, seed=1)
    held_out = calibrate_table(other, fit=False, method="auto", record=record, split="evaluated", **SETTINGS)
    assert held_out.mode == "applied" and "held-out data" in held_out.note
    torch.testing.assert_close(held_out.confidence, ConfidenceMap.from_state(record.map, K)(other.confidence))
    assert held_out.record is record  # the stored map is kept as it is


def test_raw_without_a_map_and_too_little_data_to_fit() -> None:
    table = epoch(12, seed=2)
    raw = calibrate_table(table, fit=False, method="auto", record=None, split="evaluated", **SETTINGS)
    assert raw.mode == "raw" and raw.note.startswith("raw head scores")
    assert torch.equal(raw.confidence, table.confidence) and raw.calibrated is None
    assert "ECE_raw" in raw.scores and "ECE" not in raw.scores
    tiny = table.select(torch.arange(12) < 6)  # 3 images: fewer than the 5 cross-fitting folds
    out = calibrate_table(tiny, fit=True, method="auto", record=None, split="validation", **SETTINGS)
    assert out.mode == "raw" and out.record is None


def test_calibration_state_fits_keeps_and_applies_its_record() -> None:
    table = epoch(60, seed=0)
    calibration = Calibration("platt", K)
    assert calibration.confidence_map() is None and calibration.state() is None
    fitted = calibration.evaluate(table, fit=True, threshold=0.5, scale="head", flip_test=True, split="validation")
    assert fitted.mode == "fitted" and calibration.record is fitted.record
    again = Calibration("platt", K)
    again.load({"kpreg": {"calibration": calibration.state()}})
    other = epoch(40, seed=1)
    torch.testing.assert_close(again.confidence_map()(other.confidence), calibration.confidence_map()(other.confidence))
    off = Calibration("none", K)
    raw = off.evaluate(table, fit=True, threshold=0.5, scale="head", flip_test=True, split="validation")
    assert raw.mode == "raw" and off.record is None


@pytest.mark.parametrize("method", ["bogus"])
def test_unknown_method_is_refused(method: str) -> None:
    with pytest.raises(ValueError, match="model.calibration_method must be one of auto, none, identity"):
        check_calibration_method(method)
