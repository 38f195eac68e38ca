"""Samplers and a loader for exact distributed evaluation and exact mid-epoch resume.

Both samplers subclass ``DistributedSampler`` so that Lightning keeps them as they are (it only swaps in its
own sampler when the loader has no ``DistributedSampler``), whatever ``trainer.use_distributed_sampler`` says.
They are built by ``KeypointDataModule`` with the trainer's world size and rank; with one process they are
a plain shuffled / sequential sampler.

Evaluation (``PaddedEvalSampler`` + ``PaddingFlagDataset``)::

    dataset of N = 13, 2 processes, padded to 14:
    rank 0: 0 2 4 6 8 10 12        every rank gets the same number of samples, hence the same number
    rank 1: 1 3 5 7 9 11 [13→0]    of batches (no rank waits in a collective the others never reach);
                                   the pad is sample 0 again with ``meta["padding"] = True``, and
                                   ``KeypointModule`` drops it before the loss, the metric and the predictions.

Training (``ResumableTrainSampler`` + ``ResumableDataLoader``): the permutation of epoch ``e`` is a function
of ``(seed, e)`` only, and the loader counts the batches it has handed out. Lightning saves
``loader.state_dict()`` in every checkpoint and calls ``load_state_dict`` before it iterates again on resume,
so a run resumed from a mid-epoch checkpoint continues with exactly the batches that were still to come.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler


class ResumableTrainSampler(DistributedSampler):
    """Epoch-seeded shuffled shard for rank ``rank`` of ``num_replicas``, which can start mid-epoch.

    Like ``DistributedSampler(shuffle=True, drop_last=True)``: the permutation of epoch ``e`` is
    ``randperm(N, seed + e)``, cut to a multiple of ``num_replicas`` and dealt out round-robin.
    ``start_at(k)`` makes the next iteration skip its first ``k`` indices (one-shot): the samples the
    interrupted run had already trained on in this epoch.
    """

    def __init__(self, dataset: Dataset, num_replicas: int = 1, rank: int = 0, seed: int = 0,
                 shuffle: bool = True) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=True)
        self._skip = 0

    def start_at(self, skip: int) -> None:
        self._skip = int(skip)

    def __iter__(self) -> Iterator[int]:
        n = len(self.dataset)  # type: ignore[arg-type]
        if self.shuffle:
            generator = torch.Generator()
            generator.manual_seed(self.seed + self.epoch)
            order = torch.randperm(n, generator=generator).tolist()
        else:
            order = list(range(n))
        shard = order[: self.total_size][self.rank : self.total_size : self.num_replicas]
        skip, self._skip = self._skip, 0
        return iter(shard[skip:])

    # __len__ stays the full shard length on purpose: Lightning counts the batches already done in the epoch
    # (restored from the checkpoint) plus the ones this iterator still yields.


class PaddingFlagDataset(Dataset):
    """Wraps an evaluation dataset: index ``i >= N`` is sample ``i - N`` flagged ``meta["padding"] = True``."""

    def __init__(self, dataset: Dataset, padded_length: int) -> None:
        self.dataset = dataset
        self.length = len(dataset)  # type: ignore[arg-type]
        self.padded_length = padded_length

    def __len__(self) -> int:
        return self.padded_length

    def __getitem__(self, index: int) -> dict[str, Any]:
        padding = index >= self.length
        sample = self.dataset[index - self.length if padding else index]
        sample["meta"] = {**sample["meta"], "padding": torch.tensor(padding)}
        return sample

    def __getattr__(self, name: str) -> Any:
        # Datamodule code that reaches for the underlying dataset's attributes (e.g. its annotations) still works.
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)


class PaddedEvalSampler(DistributedSampler):
    """In-order, round-robin evaluation shard over a ``PaddingFlagDataset`` (see the module docstring)."""

    def __init__(self, dataset: PaddingFlagDataset, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.total_size, self.num_replicas))


def padded_eval_length(length: int, num_replicas: int) -> int:
    """The smallest multiple of ``num_replicas`` that holds ``length`` samples."""
    return math.ceil(length / num_replicas) * num_replicas


class ResumableDataLoader(DataLoader):
    """A ``DataLoader`` over a ``ResumableTrainSampler`` whose position in the epoch is checkpointed.

    Lightning treats a loader with ``state_dict`` / ``load_state_dict`` as stateful: the state goes into
    every checkpoint (``loops.fit_loop.state_dict.combined_loader``) and is loaded back before the resumed
    epoch is iterated. The count is of batches handed to the training loop, not of indices drawn by worker
    processes, which prefetch ahead.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(self.sampler, ResumableTrainSampler) or self.batch_size is None or not self.drop_last:
            raise ValueError("ResumableDataLoader needs a ResumableTrainSampler, a batch_size and drop_last=True")
        self._batches_done = 0

    def __iter__(self) -> Iterator[Any]:
        self._batches_done = self.sampler._skip // self.batch_size  # type: ignore[attr-defined,operator]
        for batch in super().__iter__():
            self._batches_done += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": int(self.sampler.epoch), "batches_done": int(self._batches_done)}  # type: ignore[attr-defined]

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.sampler.set_epoch(state["epoch"])  # type: ignore[attr-defined]
        self.sampler.start_at(state["batches_done"] * self.batch_size)  # type: ignore[attr-defined,operator]
        self._batches_done = state["batches_done"]
