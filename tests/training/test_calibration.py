"""The module's end-of-epoch calibration (kpreg.training.calibration) on hand-made epoch tables: what each mode
scores with, that no labelled keypoint is scored by a map that saw it, and the gathered table's order."""

from __future__ import annotations

import pytest
import torch

from kpreg.metrics.calibration import ConfidenceMap, choose_method, cross_fit, data_fingerprint
from kpreg.training.calibration import EpochRows, EpochTable, calibrate_epoch, gather_table

K = 3
SETTINGS = {"threshold": 0.5, "scale": "head", "flip_test": True, "num_keypoints": K}


def epoch(s: int, seed: int) -> EpochTable:
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
    return EpochTable(index=torch.arange(s), coords=coords, gt=gt, visible=visible,
                      norm_length=torch.full((s,), 10.0, dtype=torch.float64), confidence=confidence,
                      spread=1.0 + error**2, groups=torch.arange(s) // 2)  # two samples per image


def test_fit_scores_labelled_keypoints_out_of_fold_and_records_the_map() -> None:
    table = epoch(60, seed=0)
    out = calibrate_epoch(table, fit=True, method="auto", record=None, split="validation", **SETTINGS)
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
    record = calibrate_epoch(table, fit=True, method="platt", record=None, split="validation", **SETTINGS).record
    same = calibrate_epoch(table, fit=False, method="auto", record=record, split="evaluated", **SETTINGS)
    assert same.mode == "cross-fitted" and "cross-fitted again" in same.note
    labelled = table.visible
    again = cross_fit("platt", table.confidence[labelled], same.correct, folds=5,
                      groups=table.groups[:, None].expand(60, K)[labelled],
                      keypoint_index=torch.arange(K).expand(60, K)[labelled])
    torch.testing.assert_close(same.confidence[labelled], again.probability)

    other = epoch(40, seed=1)
    held_out = calibrate_epoch(other, fit=False, method="auto", record=record, split="evaluated", **SETTINGS)
    assert held_out.mode == "applied" and "held-out data" in held_out.note
    torch.testing.assert_close(held_out.confidence, ConfidenceMap.from_state(record.map, K)(other.confidence))
    assert held_out.record is record  # the stored map is kept as it is


def test_raw_without_a_map_and_too_little_data_to_fit() -> None:
    table = epoch(12, seed=2)
    raw = calibrate_epoch(table, fit=False, method="auto", record=None, split="evaluated", **SETTINGS)
    assert raw.mode == "raw" and raw.note.startswith("raw head scores")
    assert torch.equal(raw.confidence, table.confidence) and raw.calibrated is None
    assert "ECE_raw" in raw.scores and "ECE" not in raw.scores
    tiny = table.rows(torch.arange(12) < 6)  # 3 images: fewer than the 5 cross-fitting folds
    out = calibrate_epoch(tiny, fit=True, method="auto", record=None, split="validation", **SETTINGS)
    assert out.mode == "raw" and out.record is None


def test_gathered_table_is_sorted_by_index_and_maps_local_rows_back() -> None:
    table = epoch(10, seed=3)
    order = torch.tensor([3, 9, 0, 5, 1, 8, 2, 7, 4, 6])
    local = table.rows(order)  # batches came in another order
    full, positions = gather_table(local)
    assert full.index.tolist() == list(range(10))
    torch.testing.assert_close(full.confidence[positions], local.confidence)
    torch.testing.assert_close(full.gt, table.gt)


def test_epoch_rows_table_and_batches() -> None:
    rows = EpochRows()
    table = epoch(6, seed=4)
    for part in (slice(0, 4), slice(4, 6)):
        meta = {"index": table.index[part], "keypoints_orig": table.gt[part], "visible_orig": table.visible[part],
                "norm_length": table.norm_length[part], "image_id": table.groups[part]}
        rows.add(table.coords[part], table.confidence[part], table.spread[part], meta)
    assert len(rows) == 6
    again = EpochTable.of(rows)
    for name in ("index", "coords", "gt", "visible", "norm_length", "confidence", "spread", "groups"):
        assert torch.equal(getattr(again, name), getattr(table, name)), name
    sizes = [len(conf) for _, conf, _, _ in rows.batches(table.confidence)]
    assert sizes == [4, 2]


@pytest.mark.parametrize("method", ["bogus"])
def test_unknown_method_is_refused(method: str) -> None:
    from kpreg.training.calibration import check_calibration_method

    with pytest.raises(ValueError, match="model.calibration_method must be one of auto, none, identity"):
        check_calibration_method(method)
