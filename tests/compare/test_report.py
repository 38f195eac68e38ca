"""The study report's tables follow the metric contract each run's evaluate.py wrote (metric_info): the primary's
breakdown, else its per-keypoint column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kpreg.cli.study import report_main
from kpreg.compare.report import Config, Contract, group_table
from kpreg.metrics.contract import KeypointMetrics
from kpreg.metrics.pckh import PCKh
from kpreg.metrics.pixel import PixelMetrics

NAMES = ("snout", "tail")


def _configs(metric: KeypointMetrics, values: list[dict[str, float]]) -> list[Config]:
    runs = [{"name": f"r{i}", "metrics": v, "metric_info": metric.describe()} for i, v in enumerate(values)]
    return [Config("dsnt", 4, {}, runs)]


def test_a_pixel_primary_is_shown_per_keypoint_by_its_declared_column() -> None:
    metric = KeypointMetrics([PixelMetrics(NAMES)])
    values = [{"MeanError": 2.0, "MeanError/snout": 1.0, "MeanError/tail": 3.0, "PCK@0.1/snout": 90.0},
              {"MeanError": 4.0, "MeanError/snout": 3.0, "MeanError/tail": 5.0, "PCK@0.1/snout": 70.0}]
    configs = _configs(metric, values)
    contract = Contract.of(configs)
    assert contract.per_keypoint is not None and contract.per_keypoint.key == metric.primary
    title, table = group_table(configs, contract)
    assert title == "mean error (px) per keypoint"
    assert "| Model | Stride | snout | tail |" in table and "| dsnt | 4 | 2.0 | 4.0 |" in table  # mean over seeds


def test_a_primary_with_a_breakdown_is_shown_per_group() -> None:
    metric = KeypointMetrics([PCKh(), PixelMetrics(PCKh().joint_names)])
    configs = _configs(metric, [{c.key: 50.0 for c in metric.columns}])
    title, table = group_table(configs)
    groups = [c.label for c in Contract.of(configs).groups]
    assert title.endswith("per group") and groups and "| " + " | ".join(groups) + " |" in table


def test_runs_without_a_contract_are_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "r0").mkdir()
    (tmp_path / "r0" / "result.json").write_text('{"name": "r0", "head": "dsnt", "stride": 4, "metrics": {"x": 1}}')
    with pytest.raises(SystemExit) as exit_:
        report_main(["--out", str(tmp_path)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "no run's result.json carries its metric contract" in err and err.count("\n") == 1
    assert np.isnan(Config("dsnt", 4, {}, [{"metrics": {}}]).mean_std("x")[0])
