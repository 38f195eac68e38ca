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


# ---- the datamodules ----------------------------------------------------------------------------------------
def _frames(dm) -> set[str]:
    ds = dm.datasets["train"]
    return {ds.dataset.records[int(i)].image_path for i in ds.indices}


def test_deeplabcut_budgets_are_nested_frames_with_the_epoch_kept(tmp_path) -> None:
    from testkit.dlc import make_dlc_project

    from kpreg.data.deeplabcut import DeepLabCutDataModule

    project = make_dlc_project(tmp_path / "proj", frames=6)  # 12 frames, every 3rd held out: 8 training frames

    def dm(budget, seed=0):
        m = DeepLabCutDataModule(project=str(project.root), input_size=(32, 32), batch_size=2, num_workers=0,
                                 val_every=3, train_budget=budget, budget_seed=seed)
        m.setup("fit")
        return m

    full = dm(None)
    assert full.train_frames == 8 and len(full.datasets["train"]) == 8
    quarter, half = dm("25%"), dm(4)
    assert quarter.train_frames == 2 and half.train_frames == 4
    assert _frames(quarter) < _frames(half)
    assert len(quarter.datasets["train"]) == 8  # the epoch keeps the full set's length
    assert quarter.training_keypoints()[0].shape[0] == 2  # a head fits on the budget's frames only
    assert _frames(dm(4, seed=1)) != _frames(half)
    with pytest.raises(DataError, match=r"train_budget 9 frames is larger than the training split .*8 labelled"):
        dm(9)
    both = DeepLabCutDataModule(project=str(project.root), input_size=(32, 32), batch_size=2, num_workers=0,
                                val_every=3, box_source="both", train_budget=4, budget_seed=0)
    both.setup("fit")
    assert both.train_frames == 4 and len(both.datasets["train"].indices) == 8  # a frame's two views go together
    assert _frames(both) == _frames(half)


def test_coco_budgets_keep_every_instance_of_a_frame(tmp_path) -> None:
    from testkit.coco import make_coco_fixture

    from kpreg.data.coco import COCODataModule

    fx = make_coco_fixture(tmp_path / "coco")
    dm = COCODataModule(train_ann=str(fx.train_ann), val_ann=str(fx.val_ann), train_images=str(fx.images),
                        batch_size=2, num_workers=0, train_budget=1, budget_seed=0)
    dm.setup("fit")
    ds = dm.datasets["train"]
    chosen = _frames(dm)
    assert dm.train_frames == 1 and len(chosen) == 1
    every = [i for i, r in enumerate(ds.dataset.records) if r.image_path in chosen]
    assert ds.indices.tolist() == every  # both instances of image 1 when it is chosen


def test_synthetic_budget_and_a_malformed_one() -> None:
    from kpreg.data.synthetic_datamodule import SyntheticPoseDataModule

    dm = SyntheticPoseDataModule(image_size=32, num_train=40, num_val=4, train_budget="10%", num_workers=0)
    dm.setup("fit")
    assert dm.train_frames == 4 and len(dm.datasets["train"]) == 40
    with pytest.raises(DataError, match="train_budget 'ten'"):
        SyntheticPoseDataModule(train_budget="ten")
