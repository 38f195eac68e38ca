"""Label budgets (kpreg.data.budget): counts and shares, nested subsets per seed, whole frames, the kept epoch
length, and the message for a budget larger than the training split."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kpreg.data.budget import BudgetDataset, budget_frames, nested_subset, parse_budget
from kpreg.data.errors import DataError


def test_parse_and_count() -> None:
    assert parse_budget(25) == (25.0, False)
    assert parse_budget("25%") == (0.25, True)
    assert budget_frames("25%", 92) == 23  # 23.0
    assert budget_frames("10%", 92) == 9  # 9.2 → 9
    assert budget_frames("1%", 10) == 1  # at least one frame
    assert budget_frames(92, 92) == 92
    for bad in ("abc", "0%", "150%", 0, 2.5, -3):
        with pytest.raises(DataError, match="train_budget"):
            budget_frames(bad, 92)


def test_budget_larger_than_the_training_split_names_both() -> None:
    with pytest.raises(DataError, match=r"train_budget 200 frames is larger than .*92 labelled frames"):
        budget_frames(200, 92)


def test_subsets_are_nested_per_seed_and_differ_between_seeds() -> None:
    keys = [f"labeled-data/v/img{i:04d}.png" for i in range(92)]
    for seed in (0, 1, 2):
        sets = [set(nested_subset(keys, b, seed).tolist()) for b in ("10%", "25%", "50%", "100%")]
        assert [len(s) for s in sets] == [9, 23, 46, 92]
        assert sets[0] < sets[1] < sets[2] < sets[3]
    assert set(nested_subset(keys, 23, 0).tolist()) != set(nested_subset(keys, 23, 1).tolist())
    # independent of the order of the files: the same frames when the table is reversed
    reversed_keys = keys[::-1]
    chosen = {reversed_keys[i] for i in nested_subset(reversed_keys, 23, 0)}
    assert chosen == {keys[i] for i in nested_subset(keys, 23, 0)}


def test_every_instance_of_a_chosen_frame_is_kept() -> None:
    image_ids = [1, 1, 2, 3, 3, 3, 4]  # instances per image (COCO)
    idx = nested_subset(image_ids, 2, seed=0)
    chosen = {image_ids[i] for i in idx}
    assert len(chosen) == 2
    assert idx.tolist() == [i for i, k in enumerate(image_ids) if k in chosen]


class _Numbers(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 10

    def __getitem__(self, i: int) -> dict:
        return {"keypoints": torch.full((2, 2), float(i)), "visibility": torch.ones(2)}


def test_budget_dataset_keeps_the_epoch_length() -> None:
    ds = BudgetDataset(_Numbers(), [2, 5, 7], length=10)
    assert len(ds) == 10
    assert [int(ds[i]["keypoints"][0, 0]) for i in range(10)] == [2, 5, 7, 2, 5, 7, 2, 5, 7, 2]
    keypoints, visibility = ds.keypoints_only()
    assert keypoints[:, 0, 0].tolist() == [2.0, 5.0, 7.0] and visibility.all()
    with pytest.raises(DataError, match="no training sample"):
        BudgetDataset(_Numbers(), [], length=10)
    assert np.array_equal(BudgetDataset(_Numbers(), range(10), length=4).indices, np.arange(10))
