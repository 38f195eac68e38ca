"""A test-only callback that counts the collective calls an evaluation makes (named in a config as
``testkit.collectives.CollectiveCounter``: tests/ is on the subprocesses' path, tests/testkit/faults.py)."""

from __future__ import annotations

import functools
import json
from collections import Counter
from pathlib import Path
from typing import Any

import torch.distributed as dist
from pytorch_lightning import Callback

COUNTED = ("all_gather", "all_gather_object", "all_gather_into_tensor", "all_reduce", "broadcast",
           "broadcast_object_list", "gather", "gather_object", "reduce", "barrier")


class CollectiveCounter(Callback):
    """Counts calls of ``torch.distributed``'s collectives from the start of the test epoch to the end of the test,
    and writes them to ``<out>/collectives-rank<r>.json``."""

    def __init__(self, out: str) -> None:
        self.out = out
        self.counts: Counter[str] = Counter()
        self._saved: dict[str, Any] = {}

    def on_test_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        for name in COUNTED:
            original = getattr(dist, name)
            self._saved[name] = original

            @functools.wraps(original)
            def counted(*args: Any, _name: str = name, _original: Any = original, **kwargs: Any) -> Any:
                self.counts[_name] += 1
                return _original(*args, **kwargs)

            setattr(dist, name, counted)

    def on_test_end(self, trainer: Any, pl_module: Any) -> None:
        for name, original in self._saved.items():
            setattr(dist, name, original)
        path = Path(self.out) / f"collectives-rank{trainer.global_rank}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(dict(self.counts)))
