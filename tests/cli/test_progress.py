"""predict.py's progress: plain lines off a terminal (with frames/s and an ETA), a rich bar on one, or nothing."""

from __future__ import annotations

import io

import pytest

from kpreg.cli import progress as progress_module
from kpreg.cli.progress import FrameProgress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_count_frames_per_second_from_the_first_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr(progress_module.time, "monotonic", clock)
    out = io.StringIO()  # not a terminal: lines
    with FrameProgress(100, every_n_seconds=5.0, stream=out) as bar:
        bar.update(10)  # the first batch: the clock starts here (loading and warm-up are not counted)
        clock.now += 2.0
        bar.update(20)  # 2 s later: no line yet
        clock.now += 3.0
        bar.update(20)  # 5 s after the first frame: a line, (50 - 10) frames / 5 s = 8 frames/s
        assert out.getvalue() == "predicted 50/100 frames (50%)  8.0 frames/s  ETA 0:00:06\n"
    assert out.getvalue().splitlines()[-1] == "predicted 50 frames  8.0 frames/s"  # what was done, no total


def test_a_short_run_is_timed_from_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """20 frames out of one batch 2 s after the start: 10 frames/s, not the microseconds between them."""
    clock = Clock()
    monkeypatch.setattr(progress_module.time, "monotonic", clock)
    out = io.StringIO()
    with FrameProgress(20, every_n_seconds=5.0, stream=out) as bar:
        clock.now += 2.0
        for _ in range(20):
            bar.update()
            clock.now += 1e-5
    assert out.getvalue().splitlines()[-1] == "predicted 20 frames  10.0 frames/s"


def test_unknown_total_and_other_modes(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    with FrameProgress(None, mode="lines", every_n_seconds=0.0, stream=out) as bar:
        bar.update()
        bar.update()
    assert out.getvalue().splitlines()[-1].startswith("predicted 2 frames  ")
    quiet = io.StringIO()
    monkeypatch.setenv("KPREG_PROGRESS", "none")
    with FrameProgress(10, stream=quiet) as bar:
        bar.update(10)
    assert quiet.getvalue() == ""
    rich = io.StringIO()
    with FrameProgress(4, mode="rich", stream=rich) as bar:
        for _ in range(4):
            bar.update()
    assert "4/4" in rich.getvalue() and "frames/s" in rich.getvalue()
    with pytest.raises(ValueError, match="KPREG_PROGRESS must be lines, rich or none"):
        FrameProgress(1, mode="bars")
