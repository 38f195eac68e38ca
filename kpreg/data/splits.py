"""Train / validation splits of labelled frames: deterministic, by frame or by video folder, or from explicit lists.

A frame is named by its path relative to the project (``labeled-data/<video>/img0042.png``); its *folder* (the
video it was extracted from) is the path's parent. Three ways to split, exactly one per config:

* ``val_files`` / ``train_files``: explicit lists. An entry is a frame path or a folder (every frame under it); a
  string instead of a list names a text file with one entry per line (``#`` comments allowed). Given one list, the
  other split is every remaining frame; given both, frames in neither are left out (counted).
* ``val_every = n``: frame 0, n, 2n … of every folder (in table order) goes to validation. Neighbouring frames of a
  video look alike, so this keeps both splits spread over the whole video (DeepLabCut's openfield example:
  ``val_every: 5`` holds out 24 of 116 frames).
* ``val_fraction = f`` with ``split_seed``: a seeded random choice of ``round(f × N)`` frames (at least one in each
  split), independent of the order of the tables: frames are sorted by path before the draw. ``split_by: folder``
  draws whole folders instead (``round(f × folders)``, at least one each side), so that no video has frames on both
  sides: the honest estimate of the error on a *new* video, where neighbouring-frame leakage cannot flatter it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

import numpy as np

from kpreg.data.errors import DataError

SplitBy = Literal["image", "folder"]


@dataclass(frozen=True)
class Split:
    """Indices into the frame list (each in table order) and a one-line description of the rule."""

    train: tuple[int, ...]
    val: tuple[int, ...]
    rule: str
    unused: tuple[int, ...] = field(default=())  # frames in neither explicit list


def normalise_path(path: str) -> str:
    """``labeled-data\\m4s1\\img0000.png`` (Windows) and ``./labeled-data/m4s1/`` → ``labeled-data/m4s1/...``."""
    text = str(path).strip().replace("\\", "/")
    return str(PurePosixPath(text)) if text else text


def folder_of(path: str) -> str:
    """The video folder of a frame path (its parent; ``.`` for a frame at the project root)."""
    return str(PurePosixPath(normalise_path(path)).parent)


def read_list(entries: Sequence[str] | str, what: str) -> list[str]:
    """A list of entries, or the entries of a text file (one per line, blank lines and ``#`` comments ignored)."""
    if isinstance(entries, str):
        path = Path(entries)
        if not path.is_file():
            raise DataError(f"{what}: {path} is not a file (give a list of frame paths, or a text file with one "
                            "frame path or folder per line)")
        lines = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
        return [line for line in lines if line]
    return [str(e) for e in entries]


def _match(entries: list[str], frames: list[str], what: str) -> set[int]:
    """Indices of the frames an explicit list names; an entry that names no frame is an error."""
    chosen: set[int] = set()
    for entry in entries:
        key = normalise_path(entry)
        hits = [i for i, f in enumerate(frames) if f == key or f.startswith(key.rstrip("/") + "/")]
        if not hits:
            raise DataError(f"{what}: {entry!r} is neither a labelled frame nor a folder of labelled frames "
                            f"(frames are named as in the label tables, e.g. {frames[0]!r})")
        chosen.update(hits)
    return chosen


def split_frames(
    frames: Sequence[str],
    val_files: Sequence[str] | str | None = None,
    train_files: Sequence[str] | str | None = None,
    val_every: int | None = None,
    val_fraction: float | None = None,
    split_seed: int = 0,
    split_by: SplitBy = "image",
) -> Split:
    """Split ``frames`` (project-relative paths, table order) by the one rule given (see the module docstring).

    With no rule at all: ``val_fraction = 0.2``. Raises ``DataError`` for two rules at once, an entry that names no
    frame, a frame in both lists, or a split that would be empty."""
    paths = [normalise_path(f) for f in frames]
    n = len(paths)
    if n == 0:
        raise DataError("no labelled frames to split")
    rules = [name for name, given in (("val_files / train_files", val_files is not None or train_files is not None),
                                      ("val_every", val_every is not None),
                                      ("val_fraction", val_fraction is not None)) if given]
    if len(rules) > 1:
        raise DataError(f"give one split rule, not {' and '.join(rules)}: set the others to null (e.g. "
                        f"--data.init_args.{rules[0].split(' ')[0]} null)")
    if split_by not in ("image", "folder"):
        raise DataError(f"split_by must be 'image' or 'folder', got {split_by!r}")

    if val_files is not None or train_files is not None:
        val = _match(read_list(val_files, "val_files"), paths, "val_files") if val_files is not None else None
        train = _match(read_list(train_files, "train_files"), paths, "train_files") if train_files is not None else None
        if val is not None and train is not None:
            both = sorted(val & train)
            if both:
                raise DataError(f"frame {paths[both[0]]!r} is in both val_files and train_files "
                                f"({len(both)} frame(s) in both)")
        everything = set(range(n))
        val = val if val is not None else everything - train  # type: ignore[operator]
        train = train if train is not None else everything - val
        unused = everything - val - train
        rule = "explicit lists"
    elif val_every is not None:
        if int(val_every) < 2:
            raise DataError(f"val_every must be at least 2 (every n-th frame of each folder), got {val_every}")
        position: dict[str, int] = {}
        val = set()
        for i, p in enumerate(paths):
            k = position.get(folder_of(p), 0)
            position[folder_of(p)] = k + 1
            if k % int(val_every) == 0:
                val.add(i)
        train, unused = set(range(n)) - val, set()
        rule = f"frames 0, {int(val_every)}, {2 * int(val_every)} … of each folder to validation"
    else:
        fraction = 0.2 if val_fraction is None else float(val_fraction)
        if not 0.0 < fraction < 1.0:
            raise DataError(f"val_fraction must be between 0 and 1 (exclusive), got {fraction}")
        rng = np.random.default_rng(int(split_seed))
        if split_by == "folder":
            folders = sorted({folder_of(p) for p in paths})
            if len(folders) < 2:
                raise DataError(f"split_by: folder needs at least two folders of labelled frames, found {folders}; "
                                "split by image, or label frames of another video")
            count = min(max(1, round(fraction * len(folders))), len(folders) - 1)
            held = {folders[j] for j in rng.permutation(len(folders))[:count]}
            val = {i for i, p in enumerate(paths) if folder_of(p) in held}
            unit = f"{count} of {len(folders)} folders"
        else:
            if n < 2:
                raise DataError("one labelled frame cannot be split into training and validation")
            count = min(max(1, round(fraction * n)), n - 1)
            order = sorted(range(n), key=lambda i: paths[i])  # independent of the tables' order
            val = {order[j] for j in rng.permutation(n)[:count]}
            unit = f"{count} of {n} frames"
        train, unused = set(range(n)) - val, set()
        rule = f"val_fraction {fraction:g}, split_seed {int(split_seed)}: {unit} to validation"
    for name, chosen in (("training", train), ("validation", val)):
        if not chosen:
            raise DataError(f"the {name} split is empty ({rule}, {n} labelled frames)")
    return Split(tuple(sorted(train)), tuple(sorted(val)), rule, tuple(sorted(unused)))


__all__ = ["Split", "SplitBy", "split_frames", "folder_of", "normalise_path", "read_list"]
