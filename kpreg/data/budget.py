"""Label budgets: train on a nested, seeded subset of the labelled training frames.

A budget is a number of frames (``25``) or a share of them (``"25%"``). The frames are ordered once by a seeded
permutation of their sorted keys and a budget takes the first ``n``: so for one seed a smaller budget's frames are a
subset of a larger one's (a learning curve then measures more labels, not other labels), and the choice does not
depend on the order of the annotation files. All samples (instances) of a chosen frame are kept.

The subset keeps the training length: an epoch still has as many samples as the whole training set (the budget's
samples repeated, each pass in a new random order, with new augmentation), so every budget gets the same number of
optimiser steps and the same learning-rate schedule. Otherwise a 10 % budget would also train 10× fewer steps, and
the learning curve would measure the schedule as much as the labels.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from kpreg.data.errors import DataError

Budget = int | str  # frames, or "<percent>%"


def parse_budget(budget: Budget | float) -> tuple[float, bool]:
    """(value, is_share): ``25`` → (25, False) frames; ``"25%"`` → (0.25, True)."""
    text = str(budget).strip()
    share = text.endswith("%")
    try:
        value = float(text[:-1] if share else text)
    except ValueError:
        raise DataError(f"train_budget {budget!r} is neither a number of frames (e.g. 25) nor a share (e.g. '25%')"
                        ) from None
    if share:
        if not 0 < value <= 100:
            raise DataError(f"train_budget {budget!r}: a share must be in (0 %, 100 %]")
        return value / 100, True
    if value < 1 or value != int(value):
        raise DataError(f"train_budget {budget!r}: a number of frames must be a positive whole number")
    return value, False


def budget_frames(budget: Budget | float, available: int, what: str = "the training split") -> int:
    """How many frames ``budget`` means out of ``available``: a share rounds to the nearest frame (at least one);
    a count larger than ``available`` is an error naming both."""
    value, share = parse_budget(budget)
    if share:
        return max(1, int(math.floor(value * available + 0.5)))
    if value > available:
        raise DataError(f"train_budget {int(value)} frames is larger than {what} ({available} labelled frames): "
                        "give at most that many, or a share such as '50%'")
    return int(value)


def nested_subset(frame_keys: Sequence[Hashable], budget: Budget | float, seed: int,
                  what: str = "the training split") -> np.ndarray:
    """Indices (ascending) of the samples whose frame is among the first ``budget`` frames of the seeded order
    (see the module docstring). ``frame_keys`` (S,): the frame of each sample (a path, an image id, an index)."""
    keys = list(frame_keys)
    frames = sorted(set(keys), key=str)  # sorted: independent of the order of the files
    count = budget_frames(budget, len(frames), what)
    order = np.random.default_rng(seed).permutation(len(frames))
    chosen = {frames[i] for i in order[:count]}
    return np.array([i for i, k in enumerate(keys) if k in chosen], dtype=np.int64)


class BudgetDataset(Dataset):
    """The samples ``indices`` of ``dataset``, repeated to ``length`` items per epoch (see the module docstring)."""

    def __init__(self, dataset: Dataset, indices: Sequence[int], length: int) -> None:
        if len(indices) == 0:
            raise DataError("the label budget selected no training sample")
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)
        self.length = max(int(length), len(self.indices))

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Any:
        return self.dataset[int(self.indices[index % len(self.indices)])]

    def keypoints_only(self) -> tuple[np.ndarray, np.ndarray]:
        """The budget's keypoints, each sample once (what a head fits before training)."""
        fast = getattr(self.dataset, "keypoints_only", None)
        if fast is not None:
            keypoints, visibility = fast()
            return keypoints[self.indices], visibility[self.indices]
        samples = [self.dataset[int(i)] for i in self.indices]
        keypoints = np.stack([s["keypoints"].numpy() for s in samples]).astype(np.float64)
        visibility = np.stack([s["visibility"].numpy() for s in samples]) > 0
        return keypoints, visibility
