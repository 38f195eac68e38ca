"""The error every datamodule raises for bad input data (a ``ValueError``: the CLI prints one line, exit code 2)."""

from __future__ import annotations


class DataError(ValueError):
    """Bad input data: names the file and the index or id of the offending entry."""
