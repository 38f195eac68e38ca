"""The one JSON / YAML reader of kpreg.formats: a missing or unparsable file is one message naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from kpreg.formats.files import FormatError, read_json, read_yaml


class OwnError(ValueError):
    pass


def test_read_json_and_yaml(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('{"x": [1, 2]}')
    (tmp_path / "a.yaml").write_text("x:\n- 1\n- 2\n")
    assert read_json(tmp_path / "a.json") == read_yaml(tmp_path / "a.yaml") == {"x": [1, 2]}


@pytest.mark.parametrize("reader", [read_json, read_yaml])
def test_a_missing_file_names_its_role_and_path(tmp_path: Path, reader) -> None:
    with pytest.raises(FileNotFoundError, match=r"bbox_file not found: .*nope"):
        reader(tmp_path / "nope", "bbox_file")


@pytest.mark.parametrize(("reader", "content", "message"), [
    (read_json, '{"x": [1, 2}', r"bad: not valid JSON \(.*line 1 column 12"),
    (read_yaml, "x: [1, 2\n", "bad: not valid YAML"),
    (read_json, b"\xff\xfe\x00", "bad: not a text file"),
])
def test_an_unparsable_file_names_the_file(tmp_path: Path, reader, content: str | bytes, message: str) -> None:
    path = tmp_path / "bad"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(FormatError, match=message):
        reader(path)
    with pytest.raises(OwnError, match=message):  # a format with its own error class gets it
        reader(path, error=OwnError)
