"""The command line: ``train.py``, ``evaluate.py`` (and ``evaluate.py score``) and ``study.py`` are thin wrappers
around ``train_main``, ``evaluate_main`` and ``study_main``."""

from kpreg.cli.commands import evaluate_main, train_main
from kpreg.cli.study import main as study_main

__all__ = ["train_main", "evaluate_main", "study_main"]
