"""Class paths: one resolver, one error that names the path."""

from __future__ import annotations

import pytest

from kpreg.classpath import ClassPathError, import_class_path, short_name
from kpreg.heads import HeatmapHead


def test_a_class_path_names_its_class() -> None:
    assert import_class_path("kpreg.heads.HeatmapHead") is HeatmapHead
    assert import_class_path("kpreg.heads.heatmap.HeatmapHead") is HeatmapHead


@pytest.mark.parametrize(("path", "message"), [
    ("kpreg.heads.NoSuchHead", "cannot import 'kpreg.heads.NoSuchHead': module 'kpreg.heads' has no 'NoSuchHead'"),
    ("kpreg.no_such_module.Head", "cannot import 'kpreg.no_such_module.Head': No module named 'kpreg.no_such_module'"),
    ("HeatmapHead", "'HeatmapHead' is not a class path"),
    ("", "'' is not a class path"),
])
def test_an_unknown_path_is_one_user_error_naming_it(path: str, message: str) -> None:
    with pytest.raises(ClassPathError, match=message.replace(".", r"\.").replace("(", r"\(")) as info:
        import_class_path(path)
    assert isinstance(info.value, ValueError)  # a user error for the command line (exit code 2)


def test_short_name() -> None:
    assert short_name("kpreg.heads.HeatmapHead") == "HeatmapHead"
    assert short_name("HeatmapHead") == "HeatmapHead"
    assert short_name(None) == ""
