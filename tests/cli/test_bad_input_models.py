"""Bad input around a trained model, run through the entry points as a user would: ``predict.py``, ``evaluate.py``,
``export.py`` (their ``main``), the Python API (``kpreg.load``) and the exported files themselves. A command ends in
one ``error:`` line naming the file, argument or index, exit code 2, no traceback, and nothing written or lost; the
API raises the same refusal as a ``ValueError``.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from testkit.cli import assert_one_line_error, run_in_process

import kpreg
from kpreg.cli.commands import evaluate_main
from kpreg.cli.export import main as export_main
from kpreg.cli.predict import main as predict_main
from kpreg.data.synthetic import render_figure

pytestmark = pytest.mark.slow  # a checkpoint trained by train.py (tiny_checkpoint), exports

HAS_ONNX = all(importlib.util.find_spec(p) is not None for p in ("onnx", "onnxscript", "onnxruntime"))


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KPREG_DEBUG", raising=False)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("imgs")
    for i in range(3):
        cv2.imwrite(str(folder / f"img{i}.png"), render_figure(21, i, 32, True).image[..., ::-1])
    return folder


@pytest.fixture(scope="module")
def pairless_checkpoint(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny checkpoint as a model of keypoints without left/right pairs, trained without flipping images."""
    checkpoint = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)
    checkpoint["kpreg"]["flip_pairs"] = []
    checkpoint["kpreg"]["flip_augmentation"] = False
    path = tmp_path_factory.mktemp("pairless") / "pairless.ckpt"
    torch.save(checkpoint, path)
    return path


def cut(checkpoint: Path, folder: Path, fraction: float) -> Path:
    """A copy of ``checkpoint`` cut to ``fraction`` of its bytes (0: an empty file)."""
    data = checkpoint.read_bytes()
    path = folder / f"cut{fraction:g}.ckpt"
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def predict(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    return run_in_process(predict_main, capsys, *args, "--device", "cpu")


def csv_rows(out: Path) -> list[str]:
    return (out / "predictions.csv").read_text().splitlines()[3:]  # three header lines (DeepLabCut's layout)


# ---- predict.py: outputs --------------------------------------------------------------------------------------
def test_predict_never_mixes_old_and_new_results(images: Path, tiny_checkpoint: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code, _, err = predict(capsys, "--ckpt", str(tiny_checkpoint), "--input", str(images), "--out", str(out), "--draw")
    assert code == 0, err
    before = (out / "predictions.csv").read_text()

    one = ["--ckpt", str(tiny_checkpoint), "--input", str(images / "img0.png"), "--out", str(out), "--draw"]
    code, _, err = predict(capsys, *one)
    assert_one_line_error(code, err, f"--out {out} holds earlier results", "predictions.csv", "--overwrite")
    assert (out / "predictions.csv").read_text() == before and len(list((out / "drawn").iterdir())) == 3

    code, _, err = predict(capsys, *one, "--overwrite")  # replaced as a whole: no drawn frame of the earlier run
    assert code == 0, err
    assert len(csv_rows(out)) == 1 and sorted(p.name for p in (out / "drawn").iterdir()) == ["img0.png"]


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]], ids=["plain", "overwrite"])
def test_predict_never_writes_into_a_run_directory(overwrite: list[str], images: Path, tiny_checkpoint: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    run = tiny_checkpoint.parent.parent
    listing = sorted(p.name for p in run.iterdir())
    code, _, err = predict(capsys, "--ckpt", str(tiny_checkpoint), "--input", str(images), "--out", str(run),
                           *overwrite)
    assert_one_line_error(code, err, f"--out {run} is a training run's folder")
    assert sorted(p.name for p in run.iterdir()) == listing


@pytest.mark.parametrize(("args", "needles"), [
    (["--min-confidence", "2", "--filter-output"], ["--min-confidence must be in [0, 1], got 2"]),
    (["--min-confidence", "-1", "--filter-output"], ["--min-confidence must be in [0, 1], got -1"]),
    (["--min-confidence", "nan"], ["--min-confidence must be a finite number, got nan"]),
    (["--score-thr", "nan"], ["--score-thr must be a finite number"]),
    (["--padding", "0"], ["--padding must be above 0, got 0"]),
    (["--padding", "nan"], ["--padding must be a finite number"]),
    (["--batch-size", "0"], ["--batch-size must be at least 1, got 0"]),
    (["--prefetch", "0"], ["--prefetch must be at least 1, got 0"]),
    (["--threads", "0"], ["--threads must be at least 1, got 0"]),
    (["--out", "{file}"], ["--out {file} is a file"]),
    (["--ckpt", "{zero}"], ["cannot read checkpoint {zero}: the file is empty (0 bytes"]),
    (["--ckpt", "{half}"], ["cannot read checkpoint {half} (truncated or not a checkpoint?)"]),
    (["--ckpt", "{run}"], ["checkpoint {run} is a folder"]),
    (["--ckpt", "{pairless}", "--flip"], ["the flip test", "without left/right flip pairs"]),
    (["--min-confidense", "0.5"], ["--min-confidense", "did you mean --min-confidence?"]),
], ids=["min-confidence-2", "min-confidence-negative", "min-confidence-nan", "score-thr-nan", "padding-0",
        "padding-nan", "batch-size-0", "prefetch-0", "threads-0", "out-a-file", "zero-byte-checkpoint",
        "cut-checkpoint", "checkpoint-a-folder", "flip-without-pairs", "misspelt-option"])
def test_predict_refuses_before_any_work(args: list[str], needles: list[str], images: Path, tiny_checkpoint: Path,
                                         pairless_checkpoint: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("x")
    names = {"file": tmp_path / "file", "zero": cut(tiny_checkpoint, tmp_path, 0.0),
             "half": cut(tiny_checkpoint, tmp_path, 0.5), "run": tiny_checkpoint.parent.parent,
             "pairless": pairless_checkpoint}

    def fill(text: str) -> str:
        for name, path in names.items():
            text = text.replace("{" + name + "}", str(path))
        return text

    given = {"--ckpt": str(tiny_checkpoint), "--input": str(images), "--out": str(tmp_path / "o")}
    flags = [fill(a) for a in args]
    for flag in list(given):
        if flag in flags:
            given[flag] = flags.pop(flags.index(flag) + 1)
            flags.remove(flag)
    code, _, err = predict(capsys, *[x for item in given.items() for x in item], *flags)
    assert_one_line_error(code, err, *[fill(n) for n in needles])
    assert not (tmp_path / "o").exists() and (tmp_path / "file").read_text() == "x"


def test_predict_drops_boxes_outside_their_frame_and_says_so(images: Path, tiny_checkpoint: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    dets = tmp_path / "dets.json"
    dets.write_text(json.dumps([{"file_name": "img0.png", "bbox": [500, 500, 20, 20], "score": 0.9},
                                {"file_name": "img1.png", "bbox": [2, 2, 20, 20], "score": 0.9}]))
    code, _, err = predict(capsys, "--ckpt", str(tiny_checkpoint), "--input", str(images), "--out",
                           str(tmp_path / "o"), "--detections", str(dets))
    assert code == 0, err
    assert f"{dets}: 1 of 2 detection(s) kept; 1 dropped: boxes that do not overlap their frame" in err
    entries = json.loads((tmp_path / "o" / "predictions.json").read_text())
    assert [e["file_name"] for e in entries] == ["img1.png"]

    dets.write_text(json.dumps([{"file_name": "img0.png", "bbox": [500, 500, 20, 20], "score": 0.9}]))
    code, _, err = predict(capsys, "--ckpt", str(tiny_checkpoint), "--input", str(images), "--out",
                           str(tmp_path / "o2"), "--detections", str(dets))
    assert_one_line_error(code, err, f"nothing was predicted from {images}", "do not overlap their frame")
    assert not list((tmp_path / "o2").iterdir())  # no empty results left to block the corrected run


def test_predict_refuses_images_too_small_to_crop(tiny_checkpoint: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    cv2.imwrite(str(tmp_path / "dot.png"), np.zeros((1, 1, 3), np.uint8))
    code, _, err = predict(capsys, "--ckpt", str(tiny_checkpoint), "--input", str(tmp_path / "dot.png"), "--out",
                           str(tmp_path / "o"))
    assert_one_line_error(code, err, "dot.png", "1x1 pixels: too small to crop")


def test_predict_box_message_keeps_its_brackets(tiny_checkpoint: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (48, 48))
    for i in range(3):
        writer.write(np.ascontiguousarray(render_figure(21, i, 48, True).image[..., ::-1]))
    writer.release()
    (tmp_path / "dets.csv").write_text("frame,x,y,w,h,score\n0,nan,2,20,20,0.9\n")
    code, _, err = predict(capsys, "--ckpt", str(tiny_checkpoint), "--input", str(video), "--out",
                           str(tmp_path / "o"), "--detections", str(tmp_path / "dets.csv"))
    assert_one_line_error(code, err, "dets.csv: line 2: bbox is not finite: ['nan', '2', '20', '20']")


# ---- evaluate.py ----------------------------------------------------------------------------------------------
def evaluate(capsys: pytest.CaptureFixture[str], checkpoint: Path, *args: str) -> tuple[int, str, str]:
    config = checkpoint.parent.parent / "config.yaml"
    return run_in_process(evaluate_main, capsys, "--config", str(config), "--ckpt_path", str(checkpoint), *args)


def test_evaluate_never_mixes_old_and_new_results(tiny_checkpoint: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    metrics = tmp_path / "e" / "m.json"
    code, _, err = evaluate(capsys, tiny_checkpoint, "--json", str(metrics))
    assert code == 0, err
    before = metrics.read_text()
    code, _, err = evaluate(capsys, tiny_checkpoint, "--json", str(metrics), "--flip", "false")
    assert_one_line_error(code, err, f"--json {metrics} exists", "--overwrite")
    assert metrics.read_text() == before
    code, _, err = evaluate(capsys, tiny_checkpoint, "--json", str(tmp_path / "e" / "other.json"))
    assert_one_line_error(code, err, f"the output folder {tmp_path / 'e'} holds earlier results", "predictions.json")
    code, _, err = evaluate(capsys, tiny_checkpoint, "--json", str(metrics), "--flip", "false", "--overwrite")
    assert code == 0, err


@pytest.mark.parametrize(("args", "needles"), [
    (["--json", "{tmp}"], ["--json {tmp} is a folder"]),
    (["--json", "{tmp}/m.json", "--predictions_dir", "{file}"], ["--predictions_dir {file} is a file"]),
    (["--ckpt_path", "{zero}", "--json", "{tmp}/m.json"], ["cannot read checkpoint {zero}: the file is empty"]),
    (["--ckpt_path", "{half}", "--json", "{tmp}/m.json"], ["cannot read checkpoint {half} (truncated"]),
], ids=["json-a-folder", "predictions-dir-a-file", "zero-byte-checkpoint", "cut-checkpoint"])
def test_evaluate_refuses_before_any_work(args: list[str], needles: list[str], tiny_checkpoint: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("x")
    names = {"tmp": tmp_path, "file": tmp_path / "file", "zero": cut(tiny_checkpoint, tmp_path, 0.0),
             "half": cut(tiny_checkpoint, tmp_path, 0.5)}

    def fill(text: str) -> str:
        for name, path in names.items():
            text = text.replace("{" + name + "}", str(path))
        return text

    code, _, err = evaluate(capsys, tiny_checkpoint, *[fill(a) for a in args])
    assert_one_line_error(code, err, *[fill(n) for n in needles])
    assert not (tmp_path / "m.json").exists()


# ---- export.py and the exported files -------------------------------------------------------------------------
FORMATS = [
    pytest.param("onnx", "m.onnx", marks=pytest.mark.skipif(not HAS_ONNX, reason="optional ONNX packages missing")),
    pytest.param("torchscript", "m.pt"),
]


def export(capsys: pytest.CaptureFixture[str], checkpoint: Path, fmt: str, out: Path,
           *args: str) -> tuple[int, str, str]:
    return run_in_process(export_main, capsys, "--ckpt", str(checkpoint), "--format", fmt, "--out", str(out),
                          "--no-check", *args)


@pytest.mark.parametrize(("fmt", "out", "args", "needles"), [
    ("torchscript", "{tmp}", [], ["--out {tmp} is a folder"]),
    ("torchscript", "{tmp}/m.onnx", [], ["--format torchscript writes TorchScript", "name it .pt"]),
    ("onnx", "{tmp}/m.pt", [], ["name an ONNX file .onnx"]),
    pytest.param("onnx", "{tmp}/m.onnx", ["--opset", "7"], ["--opset 7 is not supported"],
                 marks=pytest.mark.skipif(not HAS_ONNX, reason="optional ONNX packages missing")),
    pytest.param("onnx", "{tmp}/m.onnx", ["--opset", "99"], ["--opset 99 is not supported"],
                 marks=pytest.mark.skipif(not HAS_ONNX, reason="optional ONNX packages missing")),
    ("torchscript", "{tmp}/m.pt", ["--ckpt", "{zero}"], ["cannot read checkpoint {zero}: the file is empty"]),
], ids=["out-a-folder", "torchscript-named-onnx", "onnx-named-pt", "opset-7", "opset-99", "zero-byte-checkpoint"])
def test_export_refuses_before_any_work(fmt: str, out: str, args: list[str], needles: list[str],
                                        tiny_checkpoint: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    zero = cut(tiny_checkpoint, tmp_path, 0.0)

    def fill(text: str) -> str:
        return text.replace("{tmp}", str(tmp_path)).replace("{zero}", str(zero))

    code, _, err = export(capsys, tiny_checkpoint, fmt, Path(fill(out)), *[fill(a) for a in args])
    assert_one_line_error(code, err, *[fill(n) for n in needles])
    assert sorted(p.name for p in tmp_path.iterdir()) == [zero.name]


@pytest.mark.parametrize(("fmt", "name"), FORMATS)
def test_exported_models_refuse_a_wrong_input_size_and_an_existing_file(
    fmt: str, name: str, tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / name
    code, _, err = export(capsys, tiny_checkpoint, fmt, out)
    assert code == 0, err
    written = out.read_bytes()
    code, _, err = export(capsys, tiny_checkpoint, fmt, out, "--no-flip")
    assert_one_line_error(code, err, f"--out {out} exists", "--overwrite")
    assert out.read_bytes() == written

    wrong = torch.zeros(1, 3, 64, 64)  # the model takes 32×32 crops
    with pytest.raises(ValueError, match=r"run: crops must be \(N, 3, 32, 32\) normalised, got \(1, 3, 64, 64\)"):
        kpreg.load(out, device="cpu").run(wrong)
    if fmt == "torchscript":  # the file alone, without kpreg's predictor, refuses it too
        with pytest.raises(Exception, match=r"images must be \(batch, 3, 32, 32\)"):
            torch.jit.load(str(out))(wrong)
    else:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(out))
        with pytest.raises(Exception, match="Got invalid dimensions"):
            session.run(None, {session.get_inputs()[0].name: wrong.numpy()})


# ---- the Python API -------------------------------------------------------------------------------------------
def test_api_refuses_what_predict_refuses(tiny_checkpoint: Path, pairless_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="the file is empty"):
        kpreg.load(cut(tiny_checkpoint, tmp_path, 0.0))
    with pytest.raises(ValueError, match="truncated or not a checkpoint"):
        kpreg.load(cut(tiny_checkpoint, tmp_path, 0.5))
    with pytest.raises(ValueError, match="is a folder"):
        kpreg.load(tiny_checkpoint.parent.parent)
    with pytest.raises(ValueError, match="without left/right flip pairs"):
        kpreg.load(pairless_checkpoint, device="cpu", flip=True)
    with pytest.raises(ValueError, match="padding must be a finite number"):
        kpreg.load(tiny_checkpoint, device="cpu", padding=float("nan"))
    predictor = kpreg.load(tiny_checkpoint, device="cpu")
    with pytest.raises(ValueError, match=r"the image: 1x1 pixels: too small to crop \(at least 4x4\)"):
        predictor.predict(np.zeros((1, 1, 3), np.uint8))
    with pytest.raises(ValueError, match=r"box 0: box \[100, 100, 10, 10\] \(x, y, w, h\) does not overlap the 32x32"):
        predictor.predict(np.zeros((32, 32, 3), np.uint8), boxes=[[100, 100, 10, 10]])
    with pytest.raises(ValueError, match=r"crops must be \(N, 3, 32, 32\)"):
        predictor.run(torch.zeros(1, 3, 64, 64))
