"""The primary metric of a config: the key that selects the best checkpoint, and its direction.

Read from the config alone (the datamodule class's default or ``data.init_args.primary_metric``), so that the
checkpoint callback's mode and a wandb sweep's goal are set before anything is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kpreg.classpath import ClassPathError, import_class_path
from kpreg.metrics import higher_is_better


def primary_metric(data_class_path: str, init_args: Mapping[str, Any] | None) -> tuple[str, bool]:
    """(primary metric key, whether higher is better) for a datamodule class path and its init arguments."""
    try:
        cls = import_class_path(data_class_path)
    except ClassPathError as err:
        raise ValueError(f"data.class_path: {err}") from None
    primary = (init_args or {}).get("primary_metric") or getattr(cls, "default_primary_metric", "MeanError")
    direction = higher_is_better(primary)
    if direction is None:
        raise ValueError(f"data.init_args.primary_metric: unknown metric key {primary!r} (e.g. Mean, AP, MeanError, "
                         "MedianError, PCK@0.1, PCK@5px; evaluate.py prints every key its dataset reports)")
    return primary, direction
