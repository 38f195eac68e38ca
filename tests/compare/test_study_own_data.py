"""A study on a user's own DeepLabCut project: the report follows its metric contract, whose primary (mean pixel error)
is lower-is-better — bold first column, the direction said in words and on the plots, pixel error per keypoint, AP
beside it, and the prediction grid drawn from the project's frames."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from testkit.cli import run_script
from testkit.dlc import make_dlc_project

pytestmark = pytest.mark.slow  # runs the entry points as a user would (subprocesses, training)

TINY = [
    "--set", "model.backbone=test_resnet",
    "--set", "data.init_args.input_size=[64, 64]",
    "--set", "data.init_args.val_every=3",
    "--set", "data.init_args.batch_size=4",
    "--set", "data.init_args.num_workers=0",
    "--set", "trainer.max_epochs=1",
    "--set", "trainer.logger=false",
]


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("own")
    project = make_dlc_project(root / "my_project", frames=6)
    out = root / "study"
    result = run_script("study.py", "--config", "configs/data/deeplabcut.yaml",
                        "--config", "configs/protocols/from_scratch_cpu.yaml", "--heads", "heatmap,fc",
                        "--strides", "4", "--seeds", "0", "--set", f"data.init_args.project={project.root}",
                        *TINY, "--out", str(out), timeout=400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


def test_results_carry_the_lower_is_better_contract(study: Path) -> None:
    result = json.loads((study / "heatmap-s4-seed0" / "result.json").read_text())
    assert result["metric_info"]["primary"] == "MeanError" and result["metric_info"]["higher_is_better"] is False
    assert {"MeanError", "MedianError", "PCK@0.1", "PCK@5px", "AP"} <= set(result["metrics"])
    assert result["train_wall_s"] > 0 and result["params"] > 0
    assert (study / "fc-seed0" / "predictions.csv").is_file()  # the DeepLabCut table beside each run


def test_report_of_a_lower_is_better_primary(study: Path) -> None:
    report = (study / "report.md").read_text()
    assert "| Head | Stride | **mean error (px)** | median error (px) |" in report  # the primary first, bold
    assert "PCK@0.1 (%)" in report and "PCK@5px (%)" in report and "| AP |" in report
    assert "lower is better" in report
    assert "## mean error (px) per keypoint" in report and "| snout | leftear | rightear | tailbase |" in report
    for row in ("| heatmap | 4 |", "| fc | – |"):
        assert row in report
    for name in ("accuracy_vs_stride.png", "pck_vs_threshold.png", "accuracy_vs_cost.png", "predictions_grid.png"):
        assert f"]({name})" in report, name
        with Image.open(study / name) as image:
            image.verify()
    assert "prediction grid skipped" not in report
