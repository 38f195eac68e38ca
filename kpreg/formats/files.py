"""Reading the text files every format is built on (JSON, YAML), with one clear message per failure.

A missing file is a ``FileNotFoundError`` naming it and what it was for; a file that does not parse is a
``FormatError`` (a ``ValueError``: the command line prints it as one line, exit code 2) naming the file and the
parser's position. Callers with their own error class for a format pass it as ``error``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml


class FormatError(ValueError):
    """A file kpreg cannot read: the message names the file and the entry, line or key."""


def _existing(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def read_json(path: str | Path, what: str = "file", error: type[ValueError] = FormatError) -> Any:
    """The parsed JSON of ``path``; ``what`` names the file's role in the missing-file message."""
    path = _existing(path, what)
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise error(f"{path}: not valid JSON ({err})") from None
    except UnicodeDecodeError as err:
        raise error(f"{path}: not a text file ({err})") from None


def read_yaml(path: str | Path, what: str = "file", error: type[ValueError] = FormatError) -> Any:
    """The parsed YAML of ``path`` (``yaml.safe_load``: plain data only, never code)."""
    path = _existing(path, what)
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise error(f"{path}: not valid YAML ({err})") from None
    except UnicodeDecodeError as err:
        raise error(f"{path}: not a text file ({err})") from None
