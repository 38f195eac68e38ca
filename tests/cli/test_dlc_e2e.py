"""End to end on a generated DeepLabCut project, driven by the shipped parts configs/data/deeplabcut.yaml,
configs/protocols/from_scratch_cpu.yaml and a head part: train.py → evaluate.py writes the metrics JSON (pixel errors,
PCK, OKS AP), predictions.json and a DeepLabCut predictions table; evaluation equals the last validation with the
flip test off and on; bad input is one line naming the file and the line, exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from testkit.dlc import DLCProject, make_dlc_project
from testkit.faults import final_val_metrics, one_line

from kpreg.cli import evaluate_main, train_main
from kpreg.formats.deeplabcut import read_collected_data
from kpreg.formats.predictions import read_predictions

pytestmark = pytest.mark.slow  # runs the entry points as a user would (subprocesses, training)

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
PARTS = ["--config", str(CONFIGS / "data" / "deeplabcut.yaml"),
         "--config", str(CONFIGS / "protocols" / "from_scratch_cpu.yaml")]


def _train_args(project: DLCProject, run: Path, head: str = "heatmap", *extra: str) -> list[str]:
    return [
        *PARTS, "--config", str(CONFIGS / "heads" / f"{head}.yaml"),
        "--data.init_args.project", str(project.root),
        "--data.init_args.val_every", "3",
        "--data.init_args.input_size", "[64, 64]",
        "--data.init_args.batch_size", "2",
        "--data.init_args.num_workers", "0",
        "--model.backbone", "test_resnet",
        "--trainer.max_epochs", "1",
        "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(run),
        "--trainer.logger.class_path", "pytorch_lightning.loggers.CSVLogger",
        "--trainer.logger.init_args.save_dir", str(run),
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> DLCProject:
    return make_dlc_project(tmp_path_factory.mktemp("dlc") / "my_project", frames=6, empty_rows=1)


@pytest.mark.parametrize("flip", ["false", "true"])
def test_train_evaluate_writes_pixel_metrics_and_a_deeplabcut_table(
        project: DLCProject, flip: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    train_main(_train_args(project, run, "heatmap", "--model.flip_test", flip))
    out = capsys.readouterr().out
    assert "DeepLabCut project: 12 labelled frames in 2 table(s)" in out and "2 frame(s) with every keypoint empty" in out
    val = final_val_metrics(run)
    metrics_path = tmp_path / "eval" / "metrics.json"
    evaluate_main(["--config", str(run / "config.yaml"), "--ckpt_path", str(run / "checkpoints" / "last.ckpt"),
                   "--json", str(metrics_path)])
    metrics = json.loads(metrics_path.read_text())
    for key in ("MeanError", "MedianError", "RMSE", "PCK@0.1", "PCK@5px", "PCK-AUC", "AP", "MeanError/snout"):
        assert key in metrics, key
    for key in ("MeanError", "MedianError", "PCK@0.1", "PCK@5px", "AP"):  # evaluation = the last validation
        assert metrics[key] == pytest.approx(val[f"val/{key}"], rel=1e-5, abs=1e-5), key
    info = json.loads((metrics_path.parent / "metric_info.json").read_text())
    assert info["primary"] == "MeanError" and info["higher_is_better"] is False and info["flip_test"] is (flip == "true")
    # predictions: predictions.json (predict.py's schema; the study report draws it) and a DeepLabCut table of the 4
    # validation frames, written from the same predictions
    predictions = read_predictions(metrics_path.parent / "predictions.json")
    table = read_collected_data(metrics_path.parent / "predictions.csv")
    assert len(predictions) == table.num_images == 4
    assert predictions.file_name == table.image_paths and predictions.frame_index.tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(table.keypoints, predictions.keypoints, atol=1e-4)
    assert table.likelihood is not None and table.labelled.all()
    np.testing.assert_allclose(table.likelihood, predictions.confidence, atol=1e-6)


def test_bad_project_is_one_line_naming_file_and_line(project: DLCProject, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    broken = make_dlc_project(tmp_path / "broken", frames=3)
    (broken.root / "labeled-data" / "mouseA" / "img0001.png").unlink()
    with pytest.raises(SystemExit) as exit_info:
        train_main(_train_args(broken, tmp_path / "run"))
    assert exit_info.value.code == 2
    err = one_line(capsys.readouterr().err)
    assert "error:" in err and "Traceback" not in err
    assert "mouseA/CollectedData_tester.csv, line 5 (labeled-data/mouseA/img0001.png): image file" in err
    assert "does not exist" in err


def test_evaluate_ci_gives_every_summary_metric_an_interval(project: DLCProject, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    """``--ci``: the intervals of the pixel metrics and of OKS AP (one animal per frame: resampled); at unit weights
    the per-sample table gives back exactly the metrics JSON."""
    from kpreg.compare.per_sample import load_run

    run = tmp_path / "run"
    train_main(_train_args(project, run))
    metrics_path = tmp_path / "eval" / "metrics.json"
    capsys.readouterr()
    evaluate_main(["--config", str(run / "config.yaml"), "--ckpt_path", str(run / "checkpoints" / "last.ckpt"),
                   "--json", str(metrics_path), "--ci", "--ci_resamples", "200"])
    out = capsys.readouterr().out
    assert "95 % intervals: a bootstrap over the 4 evaluated images" in out and "not training noise" in out
    metrics = json.loads(metrics_path.read_text())
    ci = json.loads((metrics_path.parent / "metrics_ci.json").read_text())
    assert ci["images"] == 4 and ci["method"] == "images (BCa)"
    for key in ("MeanError", "MedianError", "RMSE", "PCK@0.1", "PCK@5px", "PCK-AUC", "AP", "AP50", "AP75"):
        interval = ci["intervals"][key]
        assert interval["estimate"] == pytest.approx(metrics[key], rel=1e-9, abs=1e-9), key
        assert interval["low"] <= interval["estimate"] <= interval["high"], key
    statistics = load_run("run", metrics_path.parent / "per_sample.npz").statistics
    assert statistics["AP"](np.ones((1, 4)))[0] == pytest.approx(metrics["AP"], abs=1e-12)
