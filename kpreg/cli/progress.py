"""Progress of a prediction run, in frames per second: a rich bar on a terminal, plain lines otherwise.

When the output is not a terminal (``kpreg.progress``: how the display is chosen) a complete line is printed
every ``every_n_seconds``::

    predicted 120/1000 frames (12%)  85.3 frames/s  ETA 0:00:10

The rate counts from the first frame done, so model loading and the first batch's warm-up do not dilute it.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from kpreg.progress import format_duration, progress_mode

MIN_STEADY_SECONDS = 1.0  # a steady-state rate needs at least this long after the first frame


class FrameProgress:
    """Args:
    total: frames expected (None or 0 when unknown, e.g. a video whose header does not say).
    mode: ``rich``, ``lines`` or ``none``; default from ``KPREG_PROGRESS``, else by whether stdout is a terminal.
    every_n_seconds: how often a plain line is printed.
    stream: where lines go (default standard output).
    """

    def __init__(self, total: int | None, mode: str | None = None, every_n_seconds: float = 5.0,
                 stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.mode = progress_mode(self.stream, mode)
        self.total = total or None
        self.every_n_seconds = every_n_seconds
        self.done = 0
        self._start = time.monotonic()
        self._first: float | None = None  # when the first frame was done
        self._first_count = 0
        self._last_print = 0.0
        self._bar: Progress | None = None
        self._task: Any = None
        if self.mode == "rich":
            self._bar = Progress(
                TextColumn("predicting"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[fps]:.1f} frames/s"), TimeRemainingColumn(),
                console=Console(file=self.stream), transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task("predict", total=self.total, fps=0.0)

    @property
    def frames_per_second(self) -> float:
        """Frames per second after the first frame (loading and warm-up left out), once that span is long enough
        to mean something; before that (e.g. a short clip whose frames all come out of one batch) over the whole
        run since the bar was created."""
        now = time.monotonic()
        if self._first is None:
            return 0.0
        if now - self._first >= MIN_STEADY_SECONDS and self.done > self._first_count:
            return (self.done - self._first_count) / (now - self._first)
        return self.done / max(now - self._start, 1e-9)

    def update(self, frames: int = 1) -> None:
        now = time.monotonic()
        if self._first is None:
            self._first, self._first_count, self._last_print = now, frames, now
        self.done += frames
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, fps=self.frames_per_second)
        elif self.mode == "lines" and now - self._last_print >= self.every_n_seconds:
            self._last_print = now
            self._line()

    def _line(self, final: bool = False) -> None:
        rate = self.frames_per_second
        # The total is what the source announced (a folder's files, a video header's count): the final line says
        # what was done, since skipped files or a truncated video end the stream short of it.
        parts = [f"predicted {self.done}" + (f"/{self.total}" if self.total and not final else "") + " frames"]
        if self.total and not final:
            parts[0] += f" ({100 * self.done // self.total}%)"
        parts.append(f"{rate:.1f} frames/s")
        if self.total and rate > 0 and not final:
            parts.append(f"ETA {format_duration((self.total - self.done) / rate)}")
        print("  ".join(parts), file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        elif self.mode == "lines":
            self._line(final=True)

    def __enter__(self) -> FrameProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
