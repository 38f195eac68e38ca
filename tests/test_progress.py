"""What the progress displays share: the choice of display and the duration format."""

from __future__ import annotations

import io

import pytest

from kpreg.progress import format_duration, progress_mode


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_lines_off_a_terminal_rich_on_one_unless_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KPREG_PROGRESS", raising=False)
    assert progress_mode(io.StringIO()) == "lines"
    assert progress_mode(Terminal()) == "rich"
    monkeypatch.setenv("KPREG_PROGRESS", "lines")
    assert progress_mode(Terminal()) == "lines"
    monkeypatch.setenv("KPREG_PROGRESS", "none")
    assert progress_mode(io.StringIO()) == "none"
    assert progress_mode(io.StringIO(), "rich") == "rich"  # an explicit choice beats the environment
    monkeypatch.setenv("KPREG_PROGRESS", "bars")
    with pytest.raises(ValueError, match="KPREG_PROGRESS must be lines, rich or none, got 'bars'"):
        progress_mode(io.StringIO())


def test_durations_read_as_hours_minutes_seconds() -> None:
    assert format_duration(0.4) == "0:00:00"
    assert format_duration(61.9) == "0:01:01"
    assert format_duration(3 * 3600 + 5) == "3:00:05"
    assert format_duration(-3.0) == "0:00:00"
