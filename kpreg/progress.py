"""What the progress displays share: which display to use, and how a duration reads.

A bar redrawn in place is unreadable in a log file (``nohup``, SLURM, CI, ``> log.txt``), so when the output
is not a terminal kpreg prints complete lines instead: training's (``kpreg.training.progress``) and
prediction's (``kpreg.cli.progress``). ``KPREG_PROGRESS=lines|rich|none`` forces a choice.
"""

from __future__ import annotations

import datetime
import os
from typing import Literal, TextIO

ProgressMode = Literal["rich", "lines", "none"]
MODES: tuple[str, ...] = ("rich", "lines", "none")


def progress_mode(stream: TextIO, choice: str | None = None) -> ProgressMode:
    """The display for output to ``stream``: ``choice``, else ``KPREG_PROGRESS``, else ``rich`` on a terminal
    and ``lines`` otherwise."""
    choice = choice or os.environ.get("KPREG_PROGRESS") or "auto"
    if choice == "auto":
        return "rich" if stream.isatty() else "lines"
    if choice not in MODES:
        raise ValueError(f"KPREG_PROGRESS must be lines, rich or none, got {choice!r}")
    return choice  # type: ignore[return-value]


def format_duration(seconds: float) -> str:
    """Whole seconds as ``H:MM:SS`` (``0:00:30``); negative durations read as zero."""
    return str(datetime.timedelta(seconds=int(max(0.0, seconds))))
