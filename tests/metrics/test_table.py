"""The evaluation table: batches packed per process, gathered rows unpacked in dataset order, the per-sample file."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kpreg.metrics.table import EvaluationTable, TableRows, load_per_sample

K = 3


def batch(indices: list[int], padding: list[bool] | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                                           dict[str, torch.Tensor]]:
    """A batch whose every value is a function of the sample index, so rows can be checked after any shuffle."""
    idx = torch.tensor(indices)
    b = len(idx)
    base = idx.double()[:, None, None]  # (B, 1, 1)
    coords = base + torch.arange(2 * K, dtype=torch.float64).reshape(1, K, 2) / 10  # (B, K, 2)
    meta = {
        "index": idx,
        "affine_inv": torch.eye(2, 3, dtype=torch.float64).expand(b, 2, 3),
        "keypoints_orig": coords + 0.5,
        "visible_orig": (idx[:, None] + torch.arange(K)) % 3 != 0,  # (B, K)
        "norm_length": idx.double() + 10.0,
        "box_size": idx.double() + 20.0,
        "image_id": idx // 2,
        "box_score": torch.full((b,), 0.75),
        "occluded": torch.zeros(b, K, dtype=torch.bool),
        "names": ["not a tensor"] * b,  # non-numeric meta is not part of the table
    }
    if padding is not None:
        meta["padding"] = torch.tensor(padding)
    confidence = idx.float()[:, None].expand(b, K) / 100  # (B, K)
    spread = confidence * 2
    return coords, confidence, spread, meta


def test_rows_gathered_from_two_processes_come_back_in_dataset_order() -> None:
    # The evaluation sampler deals 0 2 4 | 1 3 [0: a padded duplicate] to two processes.
    parts = []
    layout = None
    for indices, padding in (([0, 2, 4], [False, False, False]), ([1, 3, 0], [False, False, True])):
        rows = TableRows()
        rows.add(*batch(indices[:2], padding[:2]))
        rows.add(*batch(indices[2:], padding[2:]))
        assert len(rows) == 3
        parts.append(rows.packed())
        layout = rows.layout
    table = EvaluationTable.from_packed(torch.cat(parts), layout)  # type: ignore[arg-type]
    assert table.index.tolist() == [0, 1, 2, 3, 4]
    reference = batch([0, 1, 2, 3, 4])
    torch.testing.assert_close(table.coords, reference[0])
    torch.testing.assert_close(table.confidence, reference[1].double())
    torch.testing.assert_close(table.spread, reference[2].double())
    meta = reference[3]
    torch.testing.assert_close(table.gt, meta["keypoints_orig"])
    assert torch.equal(table.visible, meta["visible_orig"])
    torch.testing.assert_close(table.norm_length, meta["norm_length"])
    torch.testing.assert_close(table.box_size, meta["box_size"])
    assert sorted(table.extra) == ["box_score", "image_id", "occluded"]
    assert table.extra["image_id"].dtype == torch.int64 and table.groups.tolist() == [0, 0, 1, 1, 2]
    assert table.extra["occluded"].dtype == torch.bool and table.extra["occluded"].shape == (5, K)


def test_duplicates_keep_the_first_row_and_a_lone_pad_is_dropped() -> None:
    rows = TableRows()
    rows.add(*batch([2, 1, 2]))
    rows.add(*batch([5], [True]))
    table = EvaluationTable.from_packed(rows.packed(), rows.layout)  # type: ignore[arg-type]
    assert table.index.tolist() == [1, 2]


def test_batches_with_other_meta_are_refused() -> None:
    rows = TableRows()
    rows.add(*batch([0]))
    coords, confidence, spread, meta = batch([1])
    del meta["box_score"]
    with pytest.raises(ValueError, match="differ in their meta"):
        rows.add(coords, confidence, spread, meta)
    del meta["box_size"]
    with pytest.raises(ValueError, match=r"lacks \['box_size'\]"):
        TableRows().add(coords, confidence, spread, meta)


def test_errors_and_the_per_sample_file(tmp_path) -> None:
    rows = TableRows()
    rows.add(*batch([0, 1]))
    table = EvaluationTable.from_packed(rows.packed(), rows.layout)  # type: ignore[arg-type]
    errors = table.errors()  # (S, K): 0.5 px on x and y
    assert math.isnan(float(errors[0, 0])) and not table.visible[0, 0]
    assert float(errors[0, 1]) == pytest.approx(math.sqrt(0.5))
    calibrated = torch.full((2, K), 0.25, dtype=torch.float64)
    path = table.save(tmp_path / "per_sample.npz", ["a", "b", "c"], calibrated, correct_threshold=0.5)
    data = load_per_sample(path)
    assert data["keypoint_names"].tolist() == ["a", "b", "c"]
    assert data["index"].tolist() == [0, 1] and data["image_id"].tolist() == [0, 0]
    np.testing.assert_allclose(data["error_px"], errors.numpy())
    np.testing.assert_allclose(data["confidence"], 0.25)
    np.testing.assert_allclose(data["raw_confidence"], table.confidence.numpy())
    assert str(data["fingerprint"]) == table.fingerprint() and float(data["info/correct_threshold"]) == 0.5
    assert data["extra/box_score"].tolist() == [0.75, 0.75]
    with pytest.raises(FileNotFoundError, match="per-sample table not found"):
        load_per_sample(tmp_path / "missing.npz")
