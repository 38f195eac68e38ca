"""Bad input that needs no trained model, run through the entry points as a user would: ``train.py`` (its
``train_main``), ``evaluate.py score``, ``study.py``. Each case must end in one ``error:`` line naming the file, key
or index, exit code 2, no traceback, no usage page, and nothing written or lost.

The cases that need a trained checkpoint (predict, evaluate, export, the Python API) are in
``test_bad_input_models.py``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from testkit.cli import REPO, TINY_SYNTHETIC, assert_one_line_error, run_in_process
from testkit.dlc import make_dlc_project

from kpreg.cli.commands import train_main
from kpreg.cli.errors import parser_message
from kpreg.cli.score import score_main
from kpreg.cli.study import build_parser, check_runs
from kpreg.cli.study import main as study_main
from kpreg.compare.study import run_child


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KPREG_DEBUG", raising=False)


# ---- train.py -------------------------------------------------------------------------------------------------
def tiny_train(run_dir: Path, *extra: str) -> list[str]:
    return [*TINY_SYNTHETIC, "--trainer.logger", "false", "--trainer.default_root_dir", str(run_dir), *extra]


def fake_run(run_dir: Path) -> Path:
    """A run folder as train.py leaves it (config.yaml, checkpoints/): only the names matter to the checks."""
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "config.yaml").write_text("model: {}\n")
    (run_dir / "checkpoints" / "best.ckpt").write_bytes(b"earlier")
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"earlier")
    return run_dir


@pytest.mark.parametrize(("extra", "needles"), [
    (["--data.init_args.primary_metric", "PCK@0.7"], ["data.init_args.primary_metric", "'PCK@0.7'"]),
    (["--data.init_args.primary_metric", "AP"], ["data.init_args.primary_metric", "'AP'"]),
    (["--trainer.max_epochs", "0"], ["--trainer.max_epochs", "at least 1, got 0"]),
    (["--trainer.max_epochs", "-5"], ["max_epochs", "-5"]),
    (["--trainer.max_steps", "0"], ["--trainer.max_steps", "got 0"]),
    (["--ckpt_path", "last"], ["--ckpt_path last", "last.ckpt"]),
    (["--model.head.class_path", "kpreg.heads.NopeHead"], ["NopeHead", "kpreg.heads.HeatmapHead"]),
    (["--trainer.max_epoch", "3"], ["--trainer.max_epoch", "did you mean --trainer.max_epochs?"]),
    (["--model.head.init_args.sigma", "-1"], ["model.head.init_args.sigma must be above 0, got -1"]),
], ids=["primary-metric-threshold", "primary-metric-other-dataset", "max-epochs-0", "max-epochs-negative",
        "max-steps-0", "resume-last-without-last", "unknown-head", "unknown-argument", "heatmap-sigma-negative"])
def test_train_refuses_before_any_work(extra: list[str], needles: list[str], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_in_process(train_main, capsys, *tiny_train(tmp_path / "run", *extra))
    assert_one_line_error(code, err, *needles)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_train_refuses_an_empty_or_cut_resume_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "zero.ckpt").write_bytes(b"")
    code, _, err = run_in_process(train_main, capsys, *tiny_train(tmp_path / "run", "--ckpt_path",
                                                                  str(tmp_path / "zero.ckpt")))
    assert_one_line_error(code, err, str(tmp_path / "zero.ckpt"), "empty (0 bytes")


def test_train_split_smaller_than_one_batch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_in_process(train_main, capsys, *tiny_train(tmp_path / "run", "--data.init_args.num_train", "4"))
    assert_one_line_error(code, err, "train split has 4 sample(s)", "data.init_args.batch_size 8")
    assert not list((tmp_path / "run").glob("**/*.ckpt"))


def test_train_never_overwrites_another_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Another head into a run folder that holds checkpoints: refused, and its files are as they were."""
    run = fake_run(tmp_path / "run")
    code, _, err = run_in_process(train_main, capsys, *tiny_train(run, "--config", "configs/heads/dsnt.yaml"))
    assert_one_line_error(code, err, str(run), "holds a trained run", "best.ckpt", "--overwrite")
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert (run / "checkpoints" / "best.ckpt").read_bytes() == b"earlier"
    assert (run / "config.yaml").read_text() == "model: {}\n"


def test_train_into_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "taken").write_text("x")
    code, _, err = run_in_process(train_main, capsys, *tiny_train(tmp_path / "taken"))
    assert_one_line_error(code, err, f"--trainer.default_root_dir {tmp_path / 'taken'} is a file")
    assert (tmp_path / "taken").read_text() == "x"


@pytest.mark.parametrize("problem", ["missing", "yaml-syntax"])
def test_train_config_file_problems(problem: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.yaml"
    if problem == "yaml-syntax":
        config.write_text("trainer:\n  max_epochs: [1\n")
    code, _, err = run_in_process(train_main, capsys, "--config", str(config),
                                  *tiny_train(tmp_path / "run")[4:])
    assert_one_line_error(code, err, *([f"{config}: not valid YAML", "line 2, column 15"] if problem == "yaml-syntax"
                                       else [str(config), "does not exist"]))


def test_parser_message_drops_the_union_dump() -> None:
    message = ("Parser key \"data\":\n  Does not validate against any of the Union subtypes\n  Subtypes: [<class 'A'>]\n"
               "  Errors:\n    - Problem with given class_path 'kpreg.data.DeepLabCutDataModule':\n"
               "        p.csv: expected [x, y] or [x, y, likelihood]\n  Given value type: <class 'Namespace'>\n"
               "  Given value: Namespace(a=1)")
    line = parser_message(message)
    assert "\n" not in line and "Given value" not in line and "Subtypes" not in line
    assert "expected [x, y] or [x, y, likelihood]" in line


# ---- DeepLabCut projects: train.py reads them before any work ----------------------------------------------------
def _never_labelled(root: Path) -> str:
    project = make_dlc_project(root, frames=4, unlabelled=False)
    for table in project.csv_files:  # the last bodypart's two cells empty in every row
        rows = table.read_text().splitlines()
        table.write_text("\n".join(rows[:3] + [",".join(r.split(",")[:-2] + ["", ""]) for r in rows[3:]]) + "\n")
    return "['tailbase'] are never labelled"


def _config_bodyparts(root: Path) -> str:
    make_dlc_project(root, frames=4)
    (root / "config.yaml").write_text("Task: mouse\nbodyparts:\n- nose\n- leftear\n- rightear\n- tail\nskeleton: []\n")
    return "['nose', 'tail'] only in config.yaml, ['snout', 'tailbase'] only in the tables"


def _bad_coords(root: Path) -> str:
    project = make_dlc_project(root, frames=4)
    rows = project.csv_files[0].read_text().splitlines()
    rows[2] = rows[2].replace(",y,", ",z,", 1)
    project.csv_files[0].write_text("\n".join(rows) + "\n")
    return "[x, y] or [x, y, likelihood]"  # brackets as written: the message is printed without markup


def _h5_twin(root: Path) -> str:
    pytest.importorskip("tables")
    project = make_dlc_project(root, frames=4, write_h5=True)
    rows = project.csv_files[0].read_text().splitlines()
    cells = rows[3].split(",")
    cells[3] = str(float(cells[3]) + 5.0)  # the first frame's snout x, in the CSV only
    rows[3] = ",".join(cells)
    project.csv_files[0].write_text("\n".join(rows) + "\n")
    return "and its twin CollectedData_tester.h5 disagree (frame labeled-data/mouseA/img0000.png, bodypart 'snout'"


@pytest.mark.parametrize("make", [_never_labelled, _config_bodyparts, _bad_coords, _h5_twin],
                         ids=["never-labelled", "config-bodyparts", "coords-z", "h5-twin"])
def test_deeplabcut_project_problems_are_one_line(make: Callable[[Path], str], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    needle = make(tmp_path / "project")
    code, _, err = run_in_process(train_main, capsys, *dlc_train(tmp_path / "project", tmp_path / "run"))
    line = assert_one_line_error(code, err, needle)
    assert "Union" not in line and "Namespace(" not in line


def dlc_train(project: Path, run: Path) -> list[str]:
    return ["--config", "configs/data/deeplabcut.yaml", "--config", "configs/heads/heatmap.yaml",
            "--data.init_args.project", str(project), "--data.init_args.input_size", "[32, 32]",
            "--data.init_args.batch_size", "2", "--data.init_args.num_workers", "0", "--model.backbone", "test_resnet",
            "--trainer.max_epochs", "1", "--trainer.logger", "false", "--trainer.default_root_dir", str(run)]


def test_deeplabcut_frames_of_mixed_sizes_are_said_and_taken(tmp_path: Path) -> None:
    """A frame of another size in one video folder trains (each frame is cropped in its own pixels), with a warning
    naming the folder, the sizes and the odd frame."""
    from kpreg.data.deeplabcut import DeepLabCutDataModule

    make_dlc_project(tmp_path, frames=4, image_size=(48, 64))
    odd = tmp_path / "labeled-data" / "mouseA" / "img0001.png"
    cv2.imwrite(str(odd), cv2.copyMakeBorder(cv2.imread(str(odd)), 0, 16, 0, 16, cv2.BORDER_CONSTANT))
    data = DeepLabCutDataModule(project=str(tmp_path), input_size=(32, 32), batch_size=2, num_workers=0)
    with pytest.warns(UserWarning, match=r"mouseA: its frames differ in size \(64x48 \(3\), 80x64 \(1\) frame\(s\)\)"
                                         r".*labeled-data/mouseA/img0001.png"):
        data.setup("fit")
    assert len(data.datasets["train"]) + len(data.datasets["val"]) == 8


# ---- evaluate.py score ----------------------------------------------------------------------------------------
def coco_files(root: Path) -> tuple[Path, list[dict]]:
    rng = np.random.default_rng(0)
    images = [{"id": 100 + i, "file_name": f"img{i}.png", "width": 32, "height": 32} for i in range(3)]
    anns = []
    for i in range(3):
        xy = rng.uniform(4, 28, (4, 2))
        kp = np.concatenate([xy, np.full((4, 1), 2.0)], 1).reshape(-1).tolist()
        anns.append({"id": i + 1, "image_id": 100 + i, "category_id": 1, "iscrowd": 0, "area": 400.0,
                     "bbox": [4.0, 2.0, 24.0, 28.0], "num_keypoints": 4, "keypoints": kp})
    category = {"id": 1, "name": "figure", "keypoints": ["a", "b", "c", "d"], "skeleton": []}
    gt = root / "gt.json"
    gt.write_text(json.dumps({"images": images, "annotations": anns, "categories": [category]}))
    good = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0,
             "file_name": f"img{i}.png"} for i, a in enumerate(anns)]
    return gt, good


def _null_keypoint(r: list) -> str:
    r[1]["keypoints"][3] = None
    return "entry 1 (image_id 101): keypoints[3] is null, not a number"


def _null_score(r: list) -> str:
    r[2]["score"] = None
    return "entry 2 (image_id 102): score is null, not a number"


def _no_score(r: list) -> str:
    del r[0]["score"]
    return "entry 0 (image_id 100) lacks ['score']"


def _empty(r: list) -> str:
    r.clear()
    return "holds no predictions (an empty list)"


def _frame_ids(r: list) -> str:
    for n, e in enumerate(r):
        e["image_id"] = n
    return "entry 0 has image_id 0, which is not in the ground truth; its file_name 'img0.png' is the ground truth's " \
           "image 100: predict with --images-file"


def _swapped_names(r: list) -> str:
    r[0]["file_name"], r[2]["file_name"] = "img2.png", "img0.png"
    return "entry 0 has image_id 100 and file_name 'img2.png', but the ground truth's image 100 is 'img0.png'"


@pytest.mark.parametrize("spoil", [_null_keypoint, _null_score, _no_score, _empty, _frame_ids, _swapped_names],
                         ids=["null-keypoint", "null-score", "no-score", "empty", "frame-ids", "swapped-names"])
def test_score_refuses_results_that_do_not_fit(spoil: Callable[[list], str], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    gt, results = coco_files(tmp_path)
    needle = spoil(results)
    pred = tmp_path / "results.json"
    pred.write_text(json.dumps(results))
    code, _, err = run_in_process(score_main, capsys, "--dataset", "coco", "--gt", str(gt), "--pred", str(pred))
    assert_one_line_error(code, err, str(pred), needle)


@pytest.mark.parametrize(("changed", "needles"), [
    ({"--sigmas": ["0.1", "0.1"]}, ["2 sigmas for 4 keypoints"]),
    ({"--json": ["{tmp}"]}, ["--json {tmp} is a folder"]),
    ({"--json": ["{tmp}/taken.json"]}, ["--json {tmp}/taken.json exists", "--overwrite"]),
    ({"--pred": ["{tmp}/object.json"]}, ["{tmp}/object.json: a results file must hold a JSON list, got dict"]),
    ({"--dataset": ["mpii"]}, ["gt.json: not a MATLAB .mat file"]),
], ids=["sigmas-count", "json-folder", "json-exists", "results-object", "mpii-with-coco-files"])
def test_score_argument_problems(changed: dict[str, list[str]], needles: list[str], tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    gt, results = coco_files(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps(results))
    (tmp_path / "object.json").write_text(json.dumps({"annotations": results}))
    (tmp_path / "taken.json").write_text("{}")
    args = {"--dataset": ["coco"], "--gt": [str(gt)], "--pred": [str(tmp_path / "results.json")]}
    args.update({flag: [v.replace("{tmp}", str(tmp_path)) for v in values] for flag, values in changed.items()})
    code, _, err = run_in_process(score_main, capsys, *[x for flag, values in args.items() for x in (flag, *values)])
    assert_one_line_error(code, err, *[n.replace("{tmp}", str(tmp_path)) for n in needles])
    assert (tmp_path / "taken.json").read_text() == "{}"


def test_score_writes_json_with_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt, results = coco_files(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps(results))
    (tmp_path / "m.json").write_text("{}")
    code, _, err = run_in_process(score_main, capsys, "--dataset", "coco", "--gt", str(gt), "--pred",
                                  str(tmp_path / "results.json"), "--json", str(tmp_path / "m.json"), "--overwrite")
    assert code == 0, err
    assert json.loads((tmp_path / "m.json").read_text())["AP"] == pytest.approx(1.0)


# ---- study.py -------------------------------------------------------------------------------------------------
def study_args(out: Path | str, *extra: str) -> list[str]:
    return ["--config", str(REPO / "configs/data/synthetic.yaml"), "--heads", "heatmap",
            "--set", "model.backbone=test_resnet", "--set", "data.init_args.image_size=32",
            "--set", "trainer.max_epochs=1", "--set", "trainer.logger=false", "--no-report", "--out", str(out), *extra]


@pytest.mark.parametrize(("extra", "needles"), [
    (["--seeds", "0,x"], ["--seeds: 'x' is not a whole number"]),
    (["--strides", "0"], ["--strides must be at least 1, got 0"]),
    (["--max-runs", "-1"], ["--max-runs must be at least 1, got -1"]),
    (["--max-run", "1"], ["--max-run", "python study.py --help lists the options"]),
], ids=["seeds-not-a-number", "stride-0", "max-runs-negative", "unknown-option"])
def test_study_argument_problems(extra: list[str], needles: list[str], tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_in_process(study_main, capsys, *study_args(tmp_path / "s", *extra))
    assert_one_line_error(code, err, *needles)
    assert not (tmp_path / "s").exists()


def test_study_out_naming_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "s").write_text("x")
    code, _, err = run_in_process(study_main, capsys, *study_args(tmp_path / "s"))
    assert_one_line_error(code, err, f"--out {tmp_path / 's'} is a file")


def test_study_with_another_config_into_the_same_out_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A run folder that an earlier study wrote with another config is neither skipped nor resumed as this one's."""
    from kpreg.cli.lightning import train_parser
    from kpreg.compare.study import Study

    out = tmp_path / "s"
    study = Study(build_parser().parse_args(study_args(out)), train_parser())
    runs = study.runs()
    for spec, config in runs:  # what an earlier run of this study leaves in each run folder
        (out / spec.name).mkdir(parents=True)
        (out / spec.name / "study_config.yaml").write_text(
            yaml.safe_dump(study.finalise_config(spec, config, out / spec.name), sort_keys=False))
        (out / spec.name / "result.json").write_text("{}")
    assert check_runs(study, runs, overwrite=False) == []  # the same study again: resumed, nothing refused
    monkeypatch.chdir(tmp_path)  # the same study, its --out spelled relative to the working folder
    assert check_runs(Study(build_parser().parse_args(study_args("s")), train_parser()), runs, overwrite=False) == []

    code, _, err = run_in_process(study_main, capsys, *study_args(out, "--set", "model.head.init_args.sigma=3.0"))
    assert_one_line_error(code, err, f"--out {out} holds run heatmap-s4-seed0 made with another config",
                          "model.head.init_args.sigma", "--overwrite")
    assert (out / "heatmap-s4-seed0" / "result.json").read_text() == "{}"


def test_study_runs_start_in_the_working_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A study's runs see the command line's relative paths (--out, data roots) as the user meant them: they start in
    the folder study.py was started in, not in the repository."""
    monkeypatch.chdir(tmp_path)
    log = tmp_path / "child.log"
    run_child([sys.executable, "-c", "import os; print(os.getcwd())"], log)
    assert log.read_text().strip() == str(tmp_path)


def test_kpreg_debug_shows_the_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """KPREG_DEBUG=1: the same refusal is raised with its traceback instead of the one line."""
    gt, results = coco_files(tmp_path)
    (tmp_path / "results.json").write_text("[]")
    monkeypatch.setenv("KPREG_DEBUG", "1")
    with pytest.raises(ValueError, match="holds no predictions"):
        score_main(["--dataset", "coco", "--gt", str(gt), "--pred", str(tmp_path / "results.json")])
    with pytest.raises(ValueError, match="--trainer.max_epochs must be at least 1"):
        train_main(tiny_train(tmp_path / "run", "--trainer.max_epochs", "0"))
