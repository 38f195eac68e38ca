"""Class paths: the dotted import paths that configs name classes by (``kpreg.heads.HeatmapHead``).

With LightningCLI the import path is the registry (a head, a datamodule, a logger is named by its
``class_path``), so kpreg resolves such a path in one place, with one error for a path that names nothing.
"""

from __future__ import annotations

import importlib
from typing import Any


class ClassPathError(ValueError):
    """A dotted path that names nothing importable (a user error: the message names the path)."""


def import_class_path(class_path: str) -> Any:
    """``"package.module.Name"`` → the object ``Name`` of ``package.module`` (a class, usually).

    Raises ``ClassPathError`` naming the path when the module cannot be imported (with the import's own
    reason, e.g. a missing dependency inside it) or has no such name."""
    module_name, _, name = str(class_path).rpartition(".")
    if not module_name or not name:
        raise ClassPathError(f"{class_path!r} is not a class path (package.module.Name)")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ClassPathError(f"cannot import {class_path!r}: {err}") from None
    try:
        return getattr(module, name)
    except AttributeError:
        raise ClassPathError(f"cannot import {class_path!r}: module {module_name!r} has no {name!r}") from None


def short_name(class_path: Any) -> str:
    """The last component of a class path (``kpreg.heads.HeatmapHead`` → ``HeatmapHead``); "" for none."""
    return str(class_path or "").rsplit(".", 1)[-1]
