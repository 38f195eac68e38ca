"""The study runner end to end: a tiny 2-head × 2-stride study (heatmap and DSNT at strides 4 and 8, plus FC),
interrupted after its first run and resumed, then its report (the verdict table, intervals) and its offline wandb
runs; the same grid through the local launcher. Plus the grid logic, the budget axis, one command per study directory,
--launcher slurm without sbatch and the PCKh curve, without training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from testkit.cli import REPO, run_script
from testkit.wandb_records import run_contents

from kpreg.cli import train_main
from kpreg.cli.lightning import train_parser
from kpreg.cli.study import build_parser
from kpreg.compare.study import Study, StudyLock, parse_budgets
from kpreg.formats.mpii import MPII_JOINT_NAMES
from kpreg.metrics.pckh import PCKh

pytestmark = pytest.mark.slow  # runs the entry points as a user would (subprocesses, training)

TINY = [
    "--set", "model.backbone=test_resnet",
    "--set", "data.init_args.image_size=32",
    "--set", "data.init_args.num_train=16",
    "--set", "data.init_args.num_val=8",
    "--set", "data.init_args.batch_size=8",
    "--set", "data.init_args.num_workers=0",
    "--set", "trainer.max_epochs=1",
]
# FC has no output stride: 5 runs, heatmap-s4, heatmap-s8, dsnt-s4, dsnt-s8 and fc.
STUDY = ["--config", "configs/data/synthetic.yaml", "--heads", "heatmap,dsnt,fc", "--strides", "4,8", "--seeds", "0",
         "--name", "tiny-study", *TINY]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("study") / "tiny"
    first = run_script("study.py", *STUDY, "--out", str(out), "--max-runs", "1", "--no-report", timeout=300)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    done = sorted(out.glob("*/result.json"))
    mtime = done[0].stat().st_mtime_ns if done else None
    second = run_script("study.py", *STUDY, "--out", str(out), "--sweep-yaml", str(out / "sweep.yaml"), timeout=400)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    return {"out": out, "first": first, "done_after_first": done, "mtime": mtime, "second": second}


def test_interrupted_study_resumes_without_rerunning(study: dict) -> None:
    out = study["out"]
    assert [p.parent.name for p in study["done_after_first"]] == ["heatmap-s4-seed0"]
    assert "stop: --max-runs 1 reached" in study["first"].stdout
    assert "skip heatmap-s4-seed0: result.json exists" in study["second"].stdout
    assert (out / "heatmap-s4-seed0" / "result.json").stat().st_mtime_ns == study["mtime"]  # not run again
    assert sorted(p.parent.name for p in out.glob("*/result.json")) == ["dsnt-s4-seed0", "dsnt-s8-seed0", "fc-seed0",
                                                                        "heatmap-s4-seed0", "heatmap-s8-seed0"]
    result = json.loads((out / "heatmap-s8-seed0" / "result.json").read_text())
    assert result["stride"] == 8 and result["head_class"] == "HeatmapHead"
    assert 0.0 <= result["metrics"]["Mean@0.1"] <= result["metrics"]["Mean"] <= 100.0
    assert result["params"] > 0 and result["flops"] > 0 and result["latency_ms"] > 0
    assert result["peak_rss_mb"] > 50 and result["train_wall_s"] > 0
    curve = json.loads((out / "heatmap-s8-seed0" / "pck_curve.json").read_text())
    assert len(curve["thresholds"]) == len(curve["pck"]) == 51


def test_report_table_and_plots(study: dict) -> None:
    out = study["out"]
    report = (out / "report.md").read_text()
    # the columns come from the metric contract: the primary (bold) first, then the headline numbers
    assert "| Head | Stride | **PCKh@0.5 (%)** | PCKh@0.1 (%) | AUC (%) | mean error (px) | median error (px)" in report
    assert "## PCKh@0.5 (%) per group" in report and "| Model | Stride | Head | Shoulder" in report
    # the verdict table opens the report: every configuration against the best, paired on the same frames
    assert report.startswith("# Study: tiny-study\n\n## Which configuration is best\n")
    assert ("| Configuration | Seeds | PCKh@0.5 (%) [95 % CI] | Δ vs " in report
            and "| p | p (Holm) | P(best) | Verdict |" in report)
    verdict_section = report.split("## Summary", 1)[0]
    verdicts = [line for line in verdict_section.splitlines() if line.startswith(("| heatmap s", "| dsnt s", "| fc |"))]
    assert len(verdicts) == 5 and sum("**best**" in line for line in verdicts) == 1
    assert all(line.rstrip(" |").endswith(("**best**", "indistinguishable", "worse")) for line in verdicts)
    assert "With one seed (" in report and "covers only the test sample" in report
    # one seed: every headline figure of the summary is its interval over the images, [low, high]
    summary = report.split("## Summary", 1)[1]
    row = next(line for line in summary.splitlines() if line.startswith("| heatmap | 4 |"))
    assert row.count("[") >= 3 and "±" not in row.split("|")[3]
    for row in ("| heatmap | 4 |", "| heatmap | 8 |", "| dsnt | 4 |", "| dsnt | 8 |", "| fc | – |"):
        assert row in report
    # the confidence table: columns from ConfidenceScores' contract (evaluate.py's confidence.json), per configuration
    assert "## Confidence: how well each head knows its own errors" in report
    assert "| Head | Stride | Calibration | correct (%) |" not in report  # only the headline columns
    assert "| Head | Stride | Calibration | ECE before calibration | ECE after calibration |" in report
    result = json.loads((out / "dsnt-s4-seed0" / "result.json").read_text())
    assert result["confidence"]["mode"] == "cross-fitted" and result["confidence"]["method"]
    assert f"| dsnt | 4 | {result['confidence']['method']} |" in report
    pngs = ["accuracy_vs_stride.png", "pck_vs_threshold.png", "accuracy_vs_cost.png", "predictions_grid.png",
            "reliability_calibrated.png", "reliability_raw.png"]
    for name in pngs:
        assert f"]({name})" in report
        path = out / name
        assert path.read_bytes()[:8] == PNG_SIGNATURE, name
        with Image.open(path) as image:
            image.verify()  # the whole file decodes, not only its header
        with Image.open(path) as image:
            assert image.size[0] > 300 and image.size[1] > 200
    sweep = (out / "sweep.yaml").read_text()
    assert "method: grid" in sweep and "fc-seed0.yaml" in sweep and "train.py" in sweep


def test_offline_wandb_run_compares_well(study: dict) -> None:
    run_dir = study["out"] / "heatmap-s4-seed0"
    (offline,) = list((run_dir / "wandb").glob("offline-run-*"))
    contents = run_contents(next(offline.glob("run-*.wandb")))
    config = contents["config"]
    for key in ("backbone", "head", "output_stride", "dataset", "seed", "input_size", "head.sigma"):
        assert key in config, key
    assert json.loads(config["head"]) == "HeatmapHead" and json.loads(config["output_stride"]) == 4
    assert json.loads(config["backbone"]) == "test_resnet" and json.loads(config["input_size"]) == "32x32"
    history = contents["history_keys"]
    for name in MPII_JOINT_NAMES:
        assert f"val/joint/{name}" in history
    for key in ("val/Head", "val/Ankle", "val/Mean", "val/MeanError", "val/pck_curve_table/path", "val/examples/count"):
        assert key in history, key
    for key in ("model/params", "model/flops", "model/latency_ms"):
        assert float(contents["summary"][key]) > 0
    assert contents["run"]["group"] == "tiny-study"
    assert {"heatmap", "synthetic", "stride4"} <= set(contents["run"]["tags"])
    images = list((offline / "files" / "media" / "images").rglob("*.png"))
    assert images, "the example panel was logged"
    with Image.open(images[0]) as panel:
        assert panel.size[0] > 8 * 100  # eight validation images side by side
    # the report's summary run: the verdict and interval tables as wandb.Tables, in the study's group
    (summary_run,) = list((study["out"] / "wandb").glob("offline-run-*"))
    summary = run_contents(next(summary_run.glob("run-*.wandb")))
    assert summary["run"]["group"] == "tiny-study" and summary["run"]["name"] == "tiny-study/summary"
    for table in ("study/verdicts", "study/intervals"):
        assert json.loads(summary["summary"][f"{table}/_type"]) == "table-file", table
    assert json.loads(summary["summary"]["study/verdicts/nrows"]) == 5  # one row per configuration
    verdicts = json.loads((summary_run / "files" / json.loads(summary["summary"]["study/verdicts/path"])).read_text())
    assert verdicts["columns"][1] == "configuration" and verdicts["columns"][-1] == "verdict"
    assert sorted(row[1] for row in verdicts["data"]) == ["dsnt s4", "dsnt s8", "fc", "heatmap s4", "heatmap s8"]
    assert [row[-1] for row in verdicts["data"]].count("best") == 1


@pytest.fixture(scope="module")
def parser():
    return train_parser()


def _study(parser, *argv: str) -> Study:
    return Study(build_parser().parse_args([*argv, "--out", "unused"]), parser)


def test_grid_fc_once_per_seed_and_labels(parser) -> None:
    study = _study(parser, "--config", str(REPO / "configs/data/synthetic.yaml"), "--heads", "dsnt,fc",
                   "--strides", "4,16", "--seeds", "0,1", "--grid", "model.head.init_args.neck_channels=16,32",
                   "--name", "g", "--set", "trainer.max_epochs=1")
    runs = study.runs()
    names = [spec.name for spec, _ in runs]
    # DSNT: strides × neck widths × seeds; FC: seeds only (it takes neither an output stride nor a neck width)
    assert len(names) == 2 * 2 * 2 + 2
    assert "dsnt-s16-neck_channels32-seed1" in names and "fc-seed1" in names
    spec, config = runs[names.index("dsnt-s16-neck_channels32-seed1")]
    head = config["model"]["head"]
    assert head["class_path"].endswith("DSNTHead") and head["init_args"]["output_stride"] == 16
    assert config["seed_everything"] == 1 and config["trainer"]["max_epochs"] == 1
    final = study.finalise_config(spec, config, Path("/x/run"))
    logger = final["trainer"]["logger"]["init_args"]
    assert logger["group"] == "g" and {"dsnt", "synthetic", "stride16"} <= set(logger["tags"])
    assert final["trainer"]["default_root_dir"] == logger["save_dir"] == "/x/run"
    with pytest.raises(ValueError, match="key=value"):
        _study(parser, "--config", str(REPO / "configs/data/synthetic.yaml"), "--heads", "fc", "--set", "novalue")
    with pytest.raises(ValueError, match="no model.head"):
        _study(parser, "--config", str(REPO / "configs/data/synthetic.yaml"))  # a data part alone names no head
    with pytest.raises(FileNotFoundError, match="known heads: .*heatmap"):
        _study(parser, "--config", str(REPO / "configs/data/synthetic.yaml"), "--heads", "heatmapp")


def test_a_run_config_is_what_train_py_resolves(parser, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A run's config is train.py's own resolution of the same command line (its --print_config): the parts merged
    in order (a head part of another class keeps the earlier head's arguments that it takes, drops the others), then
    the run's seed, grid and --set values."""
    protocol = tmp_path / "protocol.yaml"  # a protocol part that brings a head of its own
    protocol.write_text(yaml.safe_dump({"trainer": {"max_epochs": 7}, "model": {"head": {
        "class_path": "kpreg.heads.HeatmapHead", "init_args": {"output_stride": 8, "sigma": 3.0}}}}))
    head_part = tmp_path / "my_dsnt.yaml"
    head_part.write_text(yaml.safe_dump({"model": {"head": {"class_path": "kpreg.heads.DSNTHead",
                                                            "init_args": {"reg_weight": 0.5}}}}))
    study = _study(parser, "--config", str(REPO / "configs/data/synthetic.yaml"), "--config", str(protocol),
                   "--heads", str(head_part), "--seeds", "3", "--grid", "model.head.init_args.reg_sigma=2.0",
                   "--set", "trainer.max_epochs=2")
    ((spec, config),) = study.runs()
    assert spec.name == "my_dsnt-s8-reg_sigma2.0-seed3"
    try:
        train_main(["--config", "configs/data/synthetic.yaml", "--config", str(protocol), "--config", str(head_part),
                    "--seed_everything", "3", "--model.head.init_args.reg_sigma", "2.0", "--trainer.max_epochs", "2",
                    "--print_config"])
    except SystemExit as stop:
        assert not stop.code
    assert config == yaml.safe_load(capsys.readouterr().out)
    head = config["model"]["head"]
    assert head["class_path"] == "kpreg.heads.DSNTHead" and "sigma" not in head["init_args"]
    assert head["init_args"]["output_stride"] == 8 and head["init_args"]["reg_weight"] == 0.5
    assert config["seed_everything"] == 3 and config["trainer"]["max_epochs"] == 2
    with pytest.raises(ValueError, match="dsnt with .*--trainer.max_epochz"):
        _study(parser, "--config", str(REPO / "configs/data/synthetic.yaml"), "--heads", "dsnt",
               "--set", "trainer.max_epochz=2").runs()  # a key train.py does not know: named, no exit


def test_a_second_study_command_on_one_directory_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One command at a time holds a study directory (parallel runs are the launcher's --workers): a second one is
    one message, and nothing of the first is touched; once the first ends, the directory is free."""
    study = Study(build_parser().parse_args(["--config", str(REPO / "configs/data/synthetic.yaml"),
                                             "--heads", "heatmap", "--strides", "4,8", "--out", str(tmp_path)]),
                  train_parser())
    executed: list[str] = []

    def fake_execute(job, rank: int = 0) -> None:
        executed.append(job.spec["name"])
        (Path(job.run_dir) / "result.json").write_text("{}")

    monkeypatch.setattr("kpreg.compare.study.execute_run", fake_execute)
    with StudyLock(tmp_path):  # "the other command"
        with pytest.raises(ValueError, match=r"another study.py command is running on .* \(pid"):
            study.run()
    assert executed == [] and not (tmp_path / "heatmap-s4-seed0").exists()
    assert study.run() == 0
    assert executed == ["heatmap-s4-seed0", "heatmap-s8-seed0"]


def test_budget_axis_names_nests_and_seeds(parser) -> None:
    assert parse_budgets("10,25,50,100%") == ["10%", "25%", "50%", None]
    assert parse_budgets("10%,100%") == ["10%", None]
    assert parse_budgets("10,40") == ["10", "40"] and parse_budgets(None) == [None]
    for bad, message in (("10,abc", "neither a number"), ("0,50%", "share must be"), ("10,10", "repeats")):
        with pytest.raises(ValueError, match=message):
            parse_budgets(bad)
    study = _study(parser, "--config", str(REPO / "configs/data/synthetic.yaml"), "--heads", "dsnt",
                   "--strides", "4", "--seeds", "0,1", "--budgets", "25,50,100%")
    runs = {spec.name: (spec, config) for spec, config in study.runs()}
    assert list(runs) == ["dsnt-s4-b25pct-seed0", "dsnt-s4-b25pct-seed1", "dsnt-s4-b50pct-seed0",
                          "dsnt-s4-b50pct-seed1", "dsnt-s4-seed0", "dsnt-s4-seed1"]
    spec, config = runs["dsnt-s4-b25pct-seed1"]
    assert spec.budget == "25%" and config["data"]["init_args"]["train_budget"] == "25%"
    assert config["data"]["init_args"]["budget_seed"] == 1  # the run's seed orders the frames
    assert config["data"]["init_args"]["train_budget"] is None or "b" not in runs["dsnt-s4-seed0"][0].name.split("-")
    assert runs["dsnt-s4-seed0"][1]["data"]["init_args"]["train_budget"] is None
    logger = study.finalise_config(spec, config, Path("/x"))["trainer"]["logger"]["init_args"]
    assert "budget25%" in logger["tags"]


def test_slurm_without_sbatch_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    out = tmp_path / "study"
    result = run_script("study.py", "--config", "configs/data/synthetic.yaml", "--heads", "fc", "--out", str(out),
                        "--launcher", "slurm")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: --launcher slurm needs SLURM's sbatch, and there is no sbatch on PATH here: run study.py on the "
        "cluster's login node, or use --launcher local (nothing was submitted)"]
    assert not out.exists()


def test_pckh_curve_matches_the_summary() -> None:
    metric = PCKh()
    gen = torch.Generator().manual_seed(0)
    gt = torch.rand(20, 16, 2, generator=gen, dtype=torch.float64) * 100
    pred = gt + torch.randn(20, 16, 2, generator=gen, dtype=torch.float64) * 4
    metric.update_arrays(pred, gt, torch.ones(20, 16, dtype=torch.bool), torch.full((20,), 20.0, dtype=torch.float64))
    summary, curve = metric.compute(), metric.curve()
    t, pck = np.array(curve["thresholds"]), np.array(curve["pck"])
    assert pck[np.isclose(t, 0.5)][0] == pytest.approx(summary["Mean"])
    assert pck[np.isclose(t, 0.1)][0] == pytest.approx(summary["Mean@0.1"])
    assert float(np.sum((pck[1:] + pck[:-1]) / 2 * np.diff(t)) / 0.5) == pytest.approx(summary["AUC"])
    assert np.all(np.diff(pck) >= 0)


def test_local_launcher_runs_jobs_as_processes_resumes_and_matches_the_sequential_study(study: dict,
                                                                                        tmp_path: Path) -> None:
    """``--launcher local`` on the 4-run grid (heatmap, DSNT × strides 4, 8): every run a submitit job in its own
    process; a run whose job died after its last checkpoint is submitted again and resumes from it when the command
    is repeated; every run's metrics equal the sequential study's (the same configs, seeds and frames)."""
    out = tmp_path / "local"
    grid = [a if a != "heatmap,dsnt,fc" else "heatmap,dsnt" for a in STUDY]
    args = [*grid, "--out", str(out), "--launcher", "local", "--workers", "2", "--poll-s", "0.5", "--no-report"]
    first = run_script("study.py", *args, timeout=600)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    names = ["dsnt-s4-seed0", "dsnt-s8-seed0", "heatmap-s4-seed0", "heatmap-s8-seed0"]
    assert sorted(p.parent.name for p in out.glob("*/result.json")) == names
    jobs = {name: json.loads((out / name / "job.json").read_text()) for name in names}
    assert all(job["launcher"] == "local" for job in jobs.values())
    assert len({job["job_id"] for job in jobs.values()}) == 4  # four processes, none of them the study's
    assert all(Path(job["stdout"]).is_file() and Path(job["stdout"]).parent == out / "jobs" for job in jobs.values())
    for name in names:
        local = json.loads((out / name / "metrics.json").read_text())
        sequential = json.loads((study["out"] / name / "metrics.json").read_text())
        assert local.keys() == sequential.keys()
        for key, value in sequential.items():
            assert local[key] == pytest.approx(value, rel=1e-6, abs=1e-9), (name, key)
    # the job of dsnt-s8 "was killed" after its last checkpoint: no train record, no result
    killed = out / "dsnt-s8-seed0"
    assert (killed / "checkpoints" / "last.ckpt").is_file()
    (killed / "result.json").unlink()
    (killed / "train_done.json").unlink()
    second = run_script("study.py", *args, timeout=600)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    log = second.stdout
    assert "skip heatmap-s4-seed0: result.json exists" in log
    assert (f"dsnt-s8-seed0: job {jobs['dsnt-s8-seed0']['job_id']} ended without a result: submitting it again "
            "(training resumes from last.ckpt)") in log
    assert "dsnt-s8-seed0: resume training from last.ckpt" in (out / "study.log").read_text()
    assert json.loads((killed / "job.json").read_text())["job_id"] != jobs["dsnt-s8-seed0"]["job_id"]
    assert json.loads((killed / "result.json").read_text())["train_resumed"] is True
