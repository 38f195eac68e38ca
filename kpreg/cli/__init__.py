"""The command line: ``train.py``, ``evaluate.py`` (and ``evaluate.py score``), ``study.py``, ``predict.py``,
``export.py`` and ``suggest.py`` are thin wrappers around ``train_main``, ``evaluate_main``, ``study_main``,
``predict_main``, ``export_main`` and ``suggest_main``.

They are imported on first use (PEP 562): ``predict.py`` on an exported model then never imports Lightning,
wandb or the training stack (a third of its memory).
"""

from __future__ import annotations

from typing import Any

_ENTRY_POINTS = {
    "train_main": ("kpreg.cli.commands", "train_main"),
    "evaluate_main": ("kpreg.cli.commands", "evaluate_main"),
    "study_main": ("kpreg.cli.study", "main"),
    "predict_main": ("kpreg.cli.predict", "main"),
    "export_main": ("kpreg.cli.export", "main"),
    "suggest_main": ("kpreg.cli.suggest", "main"),
}

__all__ = list(_ENTRY_POINTS)


def __getattr__(name: str) -> Any:
    if name not in _ENTRY_POINTS:
        raise AttributeError(f"module 'kpreg.cli' has no attribute {name!r}")
    import importlib

    module, attribute = _ENTRY_POINTS[name]
    return getattr(importlib.import_module(module), attribute)
