"""The metric contract: every key a table, a report or a config names comes from the metrics' declarations —
the per-keypoint columns, the default primary key of a dataset's metric families, the keys a config may choose."""

from __future__ import annotations

import io

import numpy as np
import pytest
from rich.console import Console

from kpreg.formats.layout import EvaluationSpec, KeypointLayout
from kpreg.metrics import (
    build_metrics,
    declared_columns,
    declared_keypoint_columns,
    default_primary,
    family_classes,
    higher_is_better,
)
from kpreg.metrics.contract import KeypointMetrics, per_keypoint_table
from kpreg.metrics.pckh import PCKh
from kpreg.metrics.pixel import PixelMetrics
from kpreg.training.primary import primary_metric

NAMES = ("a", "b")


def _render(table: object) -> str:
    out = io.StringIO()
    Console(file=out, width=200).print(table)
    return out.getvalue()


def test_per_keypoint_columns_are_declared_by_each_metric() -> None:
    metrics = KeypointMetrics([PCKh(NAMES), PixelMetrics(NAMES, box_thresholds=(0.1, 0.3, 0.5))])
    prefixes = [c.key for c in metrics.keypoint_columns]
    assert prefixes == ["joint", "MeanError", "MedianError", "RMSE", "PCK@0.3"]  # PCK at the middle threshold
    values = {k: float(v) for k, v in metrics.compute().items()}  # nothing seen yet: NaN, but every key is there
    for name in NAMES:
        assert {f"{p}/{name}" for p in prefixes} <= set(values)
    assert metrics.describe()["keypoint_columns"][0]["label"] == "PCKh@0.5"
    assert [c.key for c in declared_keypoint_columns(["pckh", "pixel"])] == ["joint", "MeanError", "MedianError",
                                                                             "RMSE", "PCK@0.1"]


def test_per_keypoint_table_shows_the_declared_columns_with_values() -> None:
    columns = KeypointMetrics([PixelMetrics(NAMES)]).keypoint_columns
    values = {"MeanError/a": 1.234, "MeanError/b": 2.0, "PCK@0.1/a": 50.0}  # no median, no RMSE: not shown
    text = _render(per_keypoint_table(values, NAMES, columns))
    assert "mean (px)" in text and "PCK@0.1 (%)" in text and "median" not in text and "RMSE" not in text
    assert "1.23" in text and "50.00" in text and "-" in text.splitlines()[-1]  # b has no PCK: shown as '-'


def test_the_first_family_owns_the_default_primary_key() -> None:
    assert [cls.family for cls in family_classes()] == ["pckh", "oks", "pixel"]
    assert [default_primary(f) for f in (["pckh", "pixel"], ["oks", "pixel"], ["pixel", "oks"])] == \
        ["Mean", "AP", "MeanError"]
    spec = EvaluationSpec(layout=KeypointLayout(NAMES), scale="box", families=("pixel",))
    assert build_metrics(spec).primary == "MeanError"
    assert build_metrics(EvaluationSpec(layout=KeypointLayout(NAMES), scale="head")).primary == "Mean"  # derived
    assert higher_is_better("AP", ["pckh", "pixel"]) is None and higher_is_better("AP") is True


@pytest.mark.parametrize(
    ("scale", "families", "coco_gt", "message"),
    [
        ("box", ("pckh", "pixel"), None, "PCKh needs the head size"),
        ("box", ("oks",), None, "OKS AP needs a COCO ground truth"),
        ("box", ("pixel", "pixel"), None, "distinct"),
        ("box", ("pck",), None, "distinct names"),
    ],
)
def test_an_impossible_declaration_is_refused(scale: str, families: tuple, coco_gt: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EvaluationSpec(layout=KeypointLayout(NAMES), scale=scale, families=families, coco_gt=coco_gt)  # type: ignore[arg-type]


def test_a_config_primary_key_is_checked_against_what_its_dataset_reports() -> None:
    assert primary_metric("kpreg.data.mpii.MPIIDataModule", {}) == ("Mean", True)
    assert primary_metric("kpreg.data.deeplabcut.DeepLabCutDataModule", None) == ("MeanError", False)
    assert primary_metric("kpreg.data.coco.COCODataModule", {"primary_metric": "PCK@5px"}) == ("PCK@5px", True)
    with pytest.raises(ValueError, match="unknown metric key 'AP' for MPIIDataModule") as err:
        primary_metric("kpreg.data.mpii.MPIIDataModule", {"primary_metric": "AP"})  # MPII has no OKS AP
    listed = str(err.value)
    expected = [c.key for c in declared_columns(["pckh", "pixel"], PCKh().joint_names)]
    assert all(key in listed for key in expected) and "Wrist" in listed  # MPII's joint groups, from its names
    assert "joint/<keypoint>" in listed and "MeanError/<keypoint>" in listed
    with pytest.raises(ValueError, match="declares no metric_families"):
        primary_metric("kpreg.metrics.contract.Column", {})


def test_keypoint_metrics_need_a_metric_and_a_reported_primary() -> None:
    with pytest.raises(ValueError, match="at least one metric"):
        KeypointMetrics([])
    with pytest.raises(ValueError, match="primary metric 'AP' is not reported"):
        KeypointMetrics([PixelMetrics(NAMES)], primary="AP")
    assert np.isnan(KeypointMetrics([PixelMetrics(NAMES)]).compute()["MeanError"])
