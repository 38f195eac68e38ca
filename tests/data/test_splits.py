"""Train / validation splits of labelled frames (kpreg.data.splits): each rule by hand on named frames."""

from __future__ import annotations

from pathlib import Path

import pytest

from kpreg.data.errors import DataError
from kpreg.data.splits import folder_of, normalise_path, split_frames

# Two videos: a has 7 frames, b has 3 (table order).
FRAMES = [f"labeled-data/a/img{i:04d}.png" for i in range(7)] + [f"labeled-data/b/img{i:04d}.png" for i in range(3)]


def test_paths_and_folders() -> None:
    assert normalise_path("labeled-data\\a\\img0001.png") == "labeled-data/a/img0001.png"
    assert normalise_path("./labeled-data/a/") == "labeled-data/a"
    assert folder_of("labeled-data\\a\\img0001.png") == "labeled-data/a"


def test_val_every_takes_frames_0_n_2n_of_each_folder() -> None:
    split = split_frames(FRAMES, val_every=3)
    # a: positions 0, 3, 6 → rows 0, 3, 6; b: position 0 → row 7
    assert split.val == (0, 3, 6, 7)
    assert split.train == (1, 2, 4, 5, 8, 9)
    assert "frames 0, 3, 6" in split.rule
    # openfield: 116 frames in one folder, every 5th → 24 validation, 92 training
    one = split_frames([f"labeled-data/m4s1/img{i:04d}.png" for i in range(116)], val_every=5)
    assert (len(one.train), len(one.val)) == (92, 24)
    with pytest.raises(DataError, match="val_every must be at least 2"):
        split_frames(FRAMES, val_every=1)


def test_val_fraction_is_seeded_and_independent_of_table_order() -> None:
    first = split_frames(FRAMES, val_fraction=0.3, split_seed=0)
    assert len(first.val) == 3 and len(first.train) == 7  # round(0.3 × 10)
    assert split_frames(FRAMES, val_fraction=0.3, split_seed=0) == first  # deterministic
    others = {split_frames(FRAMES, val_fraction=0.3, split_seed=s).val for s in range(1, 6)}
    assert any(v != first.val for v in others)  # the seed changes the draw
    reversed_frames = FRAMES[::-1]
    again = split_frames(reversed_frames, val_fraction=0.3, split_seed=0)
    assert {reversed_frames[i] for i in again.val} == {FRAMES[i] for i in first.val}  # the same frames
    assert split_frames(FRAMES).rule.startswith("val_fraction 0.2")  # the default rule
    tiny = split_frames(FRAMES[:2], val_fraction=0.01)
    assert len(tiny.val) == 1 and len(tiny.train) == 1  # at least one frame on each side


def test_split_by_folder_keeps_each_video_on_one_side() -> None:
    for seed in range(4):
        split = split_frames(FRAMES, val_fraction=0.5, split_seed=seed, split_by="folder")
        val_folders = {folder_of(FRAMES[i]) for i in split.val}
        train_folders = {folder_of(FRAMES[i]) for i in split.train}
        assert len(val_folders) == 1 and not val_folders & train_folders
    with pytest.raises(DataError, match="at least two folders"):
        split_frames(FRAMES[:7], val_fraction=0.5, split_by="folder")


def test_explicit_lists_frames_folders_and_text_files(tmp_path: Path) -> None:
    split = split_frames(FRAMES, val_files=["labeled-data/b", "labeled-data\\a\\img0000.png"])
    assert split.val == (0, 7, 8, 9) and split.train == (1, 2, 3, 4, 5, 6) and split.unused == ()
    listing = tmp_path / "val.txt"
    listing.write_text("# held-out video\nlabeled-data/b\n\nlabeled-data/a/img0000.png  # and one frame\n")
    assert split_frames(FRAMES, val_files=str(listing)) == split
    both = split_frames(FRAMES, val_files=["labeled-data/b"], train_files=["labeled-data/a/img0001.png"])
    assert both.train == (1,) and both.val == (7, 8, 9) and both.unused == (0, 2, 3, 4, 5, 6)


@pytest.mark.parametrize(("kwargs", "pattern"), [
    ({"val_every": 5, "val_fraction": 0.2}, "give one split rule, not val_every and val_fraction"),
    ({"val_files": ["labeled-data/c"]}, "'labeled-data/c' is neither a labelled frame nor a folder"),
    ({"val_files": ["labeled-data/b"], "train_files": ["labeled-data/b/img0000.png"]},
     "'labeled-data/b/img0000.png' is in both val_files and train_files"),
    ({"val_files": "missing.txt"}, "missing.txt is not a file"),
    ({"val_files": []}, "the validation split is empty"),
    ({"train_files": FRAMES}, "the validation split is empty"),
    ({"val_fraction": 1.0}, "val_fraction must be between 0 and 1"),
    ({"split_by": "video"}, "split_by must be 'image' or 'folder'"),
])
def test_bad_split_settings(kwargs: dict, pattern: str) -> None:
    with pytest.raises(DataError, match=pattern):
        split_frames(FRAMES, **kwargs)
