"""The primary metric of a config: the key that selects the best checkpoint, and its direction.

Read from the config alone (``data.init_args.primary_metric``, else the primary key of the datamodule class's first
metric family), so that the checkpoint callback's mode and a wandb sweep's goal are set before anything is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kpreg.classpath import ClassPathError, import_class_path
from kpreg.metrics import declared_columns, declared_keypoint_columns, default_primary, higher_is_better
from kpreg.metrics.contract import reports


def primary_metric(data_class_path: str, init_args: Mapping[str, Any] | None) -> tuple[str, bool]:
    """(primary metric key, whether higher is better) for a datamodule class path and its init arguments."""
    try:
        cls = import_class_path(data_class_path)
    except ClassPathError as err:
        raise ValueError(f"data.class_path: {err}") from None
    families = getattr(cls, "metric_families", None)
    if not families:
        raise ValueError(f"data.class_path: {data_class_path!r} declares no metric_families (not a kpreg datamodule)")
    primary = (init_args or {}).get("primary_metric") or default_primary(families)
    columns = declared_columns(families, getattr(cls, "keypoint_names", ()))
    keypoint_columns = declared_keypoint_columns(families)
    direction = higher_is_better(primary, families) if reports(primary, columns, keypoint_columns) else None
    if direction is None:
        keys = [c.key for c in columns]
        per_keypoint = [f"{c.key}/<keypoint>" for c in keypoint_columns]
        raise ValueError(f"data.init_args.primary_metric: unknown metric key {primary!r} for {cls.__name__}, whose metrics "
                         f"report {', '.join(keys)} and per keypoint {', '.join(per_keypoint)}")
    return primary, direction
