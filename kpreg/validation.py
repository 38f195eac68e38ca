"""Numbers a user gives (a threshold, a count, a padding): checked once, where they enter, with one message.

Every entry point (the command line, the Python API, a config) checks a value with ``check_number``, naming it as
the user wrote it (``--min-confidence``, ``min_confidence``, ``data.init_args.batch_size``), so the message says
which argument is wrong, its value and what would be right. The error is an ``InputError`` (a ``ValueError``):
the command line prints it as one line with exit code 2.
"""

from __future__ import annotations

import math
from typing import Any


class InputError(ValueError):
    """A value outside what its argument accepts: the message names the argument, its value and the range."""


def check_number(
    value: Any,
    name: str,
    minimum: float | None = None,
    maximum: float | None = None,
    integer: bool = False,
    above: bool = False,
) -> float:
    """``value`` as a number, or ``InputError`` naming ``name`` if it is not one, is not finite, or lies outside
    [``minimum``, ``maximum``] (``above``: strictly above ``minimum``); ``integer``: a whole number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise InputError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(value):
        raise InputError(f"{name} must be a finite number, got {value}")
    if integer and value != int(value):
        raise InputError(f"{name} must be a whole number, got {value}")
    low = minimum is not None and (value <= minimum if above else value < minimum)
    high = maximum is not None and value > maximum
    if low or high:
        raise InputError(f"{name} must be {_range(minimum, maximum, above)}, got {value:g}")
    return value


def _range(minimum: float | None, maximum: float | None, above: bool) -> str:
    if minimum is not None and maximum is not None:
        return f"in [{minimum:g}, {maximum:g}]"
    if minimum is not None:
        return f"{'above' if above else 'at least'} {minimum:g}"
    return f"at most {maximum:g}"
