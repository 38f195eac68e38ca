"""How every command reports a mistake in its input: one line on standard error, exit code 2.

The line is the error's own message (the path, key or index it names included), with nothing around it: no
usage page, no config parser's dump of every type it tried, and printed without rich markup, so text in brackets
(``[x, y]``) reaches the user as written. ``KPREG_DEBUG=1`` raises the error instead, with its traceback.

``fail`` prints it; ``CommandParser`` is the argparse parser of the commands that are not LightningCLI
(``predict.py``, ``export.py``, ``evaluate.py score``, ``study.py``), whose mistakes (an unknown option, a value
of the wrong type) go the same way; ``parser_message`` makes a LightningCLI (jsonargparse) parser error one line.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
from collections.abc import Iterable
from typing import NoReturn

from rich.console import Console
from rich.text import Text

# The user's input, not a bug: printed as one line, exit code 2. Every kpreg input error is a ValueError
# (DataError, FormatError, CheckpointMismatchError, BackboneError, SourceError, BoxError, InputError, …); an OSError
# is a path the user gave (missing, a folder where a file is wanted, not writable); an ArgumentError is a command
# line the parser cannot read.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, argparse.ArgumentError)


def fail(err: BaseException | str, code: int = 2) -> NoReturn:
    """Print ``error: <message>`` as one line on standard error and exit with ``code`` (``KPREG_DEBUG=1``: raise)."""
    if os.environ.get("KPREG_DEBUG") and isinstance(err, BaseException):
        raise err
    message = err if isinstance(err, str) else user_message(err)
    line = Text("error: ", style="bold red")
    line.append(message)  # a Text, not markup: brackets in the message are printed as they are
    Console(stderr=True, soft_wrap=True, highlight=False).print(line)
    sys.exit(code)


def user_message(err: BaseException) -> str:
    """The message a user needs: the innermost user error that ``err`` wraps (jsonargparse wraps an error raised
    while it instantiates a class in its own report), a parser's report made one line."""
    while isinstance(err.__cause__, USER_ERRORS):
        err = err.__cause__
    if isinstance(err, argparse.ArgumentError):
        return parser_message(err.message if err.argument_name is None else str(err))
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        return f"{err.filename}: {err.strerror}"
    message = str(err)
    if "Does not validate against any of the Union subtypes" in message:
        return parser_message(message)
    return message


_DROPPED = ("Does not validate against any of the Union subtypes", "Subtypes:", "Errors:", "Given value",
            "- Expected a <class 'NoneType'>")


def parser_message(message: str) -> str:
    """A jsonargparse / argparse error as one line: its nested lines joined, without the list of types it tried
    and the dump of the value it was given."""
    lines = [line.strip() for line in message.splitlines()]
    kept = [line.removeprefix("- ") for line in lines if line and not line.startswith(_DROPPED)]
    return ": ".join(part.rstrip(":") for part in kept) if kept else message.strip()


def suggest(message: str, options: Iterable[str]) -> str:
    """``message`` with the nearest known option for each unrecognised one (``--trainer.max_epox`` →
    ``--trainer.max_epochs``)."""
    unknown = re.findall(r"(--[\w.\-]+)", message.partition("arguments:")[2]) if "arguments:" in message else []
    known = list(options)
    hints = []
    for option in unknown:
        close = difflib.get_close_matches(option.split("=")[0], known, n=1, cutoff=0.75)
        if close:
            hints.append(f"{option}: did you mean {close[0]}?")
    return message + (f" ({'; '.join(hints)})" if hints else "")


class CommandParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line and exit code 2 (see the module docstring);
    abbreviated options are not accepted (an option is spelled out, so a typo is never taken for another)."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        options = [o for action in self._actions for o in action.option_strings]
        fail(f"{suggest(message, options)} (python {self.prog} --help lists the options)")
