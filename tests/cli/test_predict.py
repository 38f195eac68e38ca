"""predict.py end to end: a generated folder and video in, predictions.json (scored by ``evaluate.py score``),
DeepLabCut's predictions.csv (read by pandas), drawn outputs; the ONNX Runtime backend; every bad input.

The two end-to-end runs are subprocesses, as a user runs them; the other cases call the same entry point
(``kpreg.cli.predict.main``) in this process, which spares a Python start-up each.
"""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from testkit.cli import run_in_process, run_script
from testkit.media import truncate

import kpreg
from kpreg.cli import evaluate_main
from kpreg.cli.predict import main as predict_main
from kpreg.data.synthetic import render_figure
from kpreg.formats.mpii import MPII_JOINT_NAMES, MPII_SKELETON
from kpreg.formats.predictions import read_predictions
from kpreg.metrics.coco_score import score_coco_files
from kpreg.metrics.oks import OKS_COLUMNS

pytestmark = pytest.mark.slow  # runs the entry points as a user would (subprocesses, training)

N_IMAGES = 5
N_FRAMES = 12
needs_onnx = pytest.mark.skipif(
    any(importlib.util.find_spec(p) is None for p in ("onnx", "onnxscript", "onnxruntime")),
    reason="optional ONNX packages not installed (pip install onnx onnxscript onnxruntime)",
)


def figure(i: int, size: int = 32) -> np.ndarray:
    return render_figure(21, i, size, True).image  # (S, S, 3) uint8 RGB


def write_rgb(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image)
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("images")
    for i in range(N_IMAGES):
        write_rgb(root / f"img{i}.png", figure(i))
    return root


def write_video(path: Path, n: int, fourcc: str = "MJPG", size: int = 48) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10.0, (size, size))
    assert writer.isOpened()
    for i in range(n):
        writer.write(cv2.cvtColor(figure(i, size), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "clip.avi", N_FRAMES)


def coco_gt(path: Path, names: list[str], keypoints: np.ndarray, first_id: int = 100) -> Path:
    """A COCO keypoints file for 32 × 32 images: one person per image, keypoints (N, K, 2) image pixels."""
    images, annotations = [], []
    for n, (name, kp) in enumerate(zip(names, keypoints)):
        images.append({"id": first_id + n, "file_name": name, "width": 32, "height": 32})
        triplets = np.concatenate([kp, np.full((len(kp), 1), 2.0)], axis=1).reshape(-1).tolist()
        annotations.append({"id": n + 1, "image_id": first_id + n, "category_id": 1, "iscrowd": 0, "area": 400.0,
                            "bbox": [4.0, 2.0, 24.0, 28.0], "num_keypoints": len(kp), "keypoints": triplets})
    category = {"id": 1, "name": "figure", "keypoints": list(MPII_JOINT_NAMES),
                "skeleton": [[a + 1, b + 1] for a, b in MPII_SKELETON]}
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": [category]}))
    return path


def read_table(path: Path) -> pd.DataFrame:
    table = pd.read_csv(path, header=[0, 1, 2], index_col=0)
    assert list(table.columns.names) == ["scorer", "bodyparts", "coords"]  # DeepLabCut's three header rows
    return table


def table_xy(table: pd.DataFrame, row: object) -> tuple[np.ndarray, np.ndarray]:
    """(K, 2) x, y and (K,) likelihood of one row, in keypoint order."""
    values = table.loc[row].to_numpy(dtype=np.float64).reshape(-1, 3)  # (K, 3) x, y, likelihood
    return values[:, :2], values[:, 2]


def test_folder_end_to_end_json_scored_and_csv_read_by_pandas(
    folder: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    names = [f"img{i}.png" for i in range(N_IMAGES)]
    truth = np.stack([render_figure(21, i, 32, True).keypoints for i in range(N_IMAGES)])  # (N, K, 2)
    gt = coco_gt(tmp_path / "gt.json", names, truth)
    out = tmp_path / "out"
    result = run_script("predict.py", "--ckpt", str(tiny_checkpoint), "--input", str(folder), "--out", str(out),
                        "--images-file", str(gt), "--device", "cpu", "--draw")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "frames/s" in result.stdout and "flip test on" in result.stdout

    entries = json.loads((out / "predictions.json").read_text())
    assert [(e["file_name"], e["image_id"], e["frame_index"]) for e in entries] == \
        [(n, 100 + i, i) for i, n in enumerate(names)]
    assert read_predictions(out / "predictions.json").index.tolist() == list(range(N_IMAGES))  # evaluate.py's schema
    api = kpreg.load(tiny_checkpoint, device="cpu").predict([figure(i) for i in range(N_IMAGES)])
    for entry, prediction in zip(entries, api):
        triplets = np.array(entry["keypoints"]).reshape(-1, 3)  # (K, 3) x, y, confidence
        np.testing.assert_allclose(triplets[:, :2], prediction.keypoints[0], atol=1e-4)
        np.testing.assert_allclose(triplets[:, 2], prediction.confidence[0], atol=1e-6)
        assert entry["score"] == pytest.approx(float(prediction.scores[0]), abs=1e-6)

    table = read_table(out / "predictions.csv")
    assert list(table.index) == names
    assert list(dict.fromkeys(table.columns.get_level_values(1))) == list(MPII_JOINT_NAMES)
    assert list(table.columns.get_level_values(2)[:3]) == ["x", "y", "likelihood"] and table.shape[1] == 48
    xy, likelihood = table_xy(table, "img3.png")
    np.testing.assert_allclose(xy, api[3].keypoints[0], atol=1e-9)
    np.testing.assert_allclose(likelihood, api[3].confidence[0], atol=1e-7)
    assert sorted(p.name for p in (out / "drawn").iterdir()) == names

    # evaluate.py score (its entry point, in this process) reads the file against the GT (ids from --images-file) ...
    metrics_path = tmp_path / "metrics.json"
    evaluate_main(["score", "--dataset", "coco", "--gt", str(gt), "--pred", str(out / "predictions.json"),
                   "--sigmas", *["0.05"] * 16, "--json", str(metrics_path)])  # a failure exits (SystemExit)
    metrics = json.loads(metrics_path.read_text())
    assert set(metrics) == {c.key for c in OKS_COLUMNS} and 0.0 <= metrics["AP"] <= 1.0
    # ... and a GT at exactly the predicted keypoints scores AP 1: ids, order and pixel convention line up.
    exact = coco_gt(tmp_path / "exact.json", names, np.stack([p.keypoints[0] for p in api]))
    assert score_coco_files(exact, out / "predictions.json", sigmas=[0.05] * 16)["AP"] == pytest.approx(1.0)


def test_filter_output_blanks_keypoints_below_min_confidence(folder: Path, tiny_checkpoint: Path,
                                                             tmp_path: Path) -> None:
    """--filter-output: below --min-confidence a keypoint is COCO's absent (0, 0, 0) in the JSON and empty cells in
    the CSV; the rest are written as without the filter."""
    api = kpreg.load(tiny_checkpoint, device="cpu").predict([figure(i) for i in range(N_IMAGES)])
    confidence = np.concatenate([p.confidence[0] for p in api])  # (N·K,)
    cut = float(np.median(confidence))  # about half of the keypoints fall below it
    out = tmp_path / "out"
    result = run_script("predict.py", "--ckpt", str(tiny_checkpoint), "--input", str(folder), "--out", str(out),
                        "--device", "cpu", "--min-confidence", str(cut), "--filter-output")
    assert result.returncode == 0, result.stderr[-3000:]
    entries = json.loads((out / "predictions.json").read_text())
    table = read_table(out / "predictions.csv")
    blanked = 0
    for i, (entry, prediction) in enumerate(zip(entries, api)):
        triplets = np.array(entry["keypoints"]).reshape(-1, 3)  # (K, 3)
        low = prediction.confidence[0] < cut  # (K,)
        blanked += int(low.sum())
        assert (triplets[low] == 0).all()
        np.testing.assert_allclose(triplets[~low, :2], prediction.keypoints[0][~low], atol=1e-4)
        xy, _ = table_xy(table, f"img{i}.png")
        assert np.isnan(xy[low]).all() and np.isfinite(xy[~low]).all()
    assert 0 < blanked < confidence.size


def test_video_end_to_end_with_drawn_mp4(video: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_script("predict.py", "--ckpt", str(tiny_checkpoint), "--input", str(video), "--out", str(out),
                        "--draw", "--batch-size", "5", "--device", "cpu")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"predicted {N_FRAMES} frames" in result.stdout and "frames/s" in result.stdout  # plain lines
    entries = json.loads((out / "predictions.json").read_text())
    assert [(e["frame_index"], e["file_name"], e["image_id"]) for e in entries] == \
        [(i, "clip.avi", i) for i in range(N_FRAMES)]
    table = read_table(out / "predictions.csv")
    assert list(table.index) == list(range(N_FRAMES))
    xy, likelihood = table_xy(table, 7)
    np.testing.assert_allclose(xy, np.array(entries[7]["keypoints"]).reshape(-1, 3)[:, :2], atol=1e-4)
    drawn = cv2.VideoCapture(str(out / "clip_drawn.mp4"))
    assert int(drawn.get(cv2.CAP_PROP_FRAME_COUNT)) == N_FRAMES
    drawn.release()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == N_FRAMES and summary["fault"] is None and summary["frames_per_second"] > 0
    assert summary["flip_test"] is True and summary["calibrated"] is True  # training fitted its map at validation
    # residuals per frame: how far each keypoint moved (no pose PCA: the model was trained without one)
    with open(out / "residuals.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == N_FRAMES and not any(k.startswith("pca") for k in rows[0])
    xy6, _ = table_xy(table, 6)
    moved = np.linalg.norm(xy - xy6, axis=-1)  # (K,) px from frame 6 to frame 7
    np.testing.assert_allclose(float(rows[7]["temporal"]), moved.max(), atol=2e-3)


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    return run_in_process(predict_main, capsys, *args)


def test_several_boxes_per_frame_from_a_csv(
    video: Path, tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dets = tmp_path / "dets.csv"
    dets.write_text("frame,x,y,w,h,score\n0,4,4,30,40,0.9\n0,10,2,20,20,0.4\n2,0,0,48,48,1\n5,1,1,8,8,0.1\n"
                    "40,0,0,10,10,1\n")
    code, out, err = run_main(capsys, "--ckpt", str(tiny_checkpoint), "--input", str(video), "--out",
                              str(tmp_path / "o"), "--detections", str(dets), "--score-thr", "0.3", "--device", "cpu")
    assert code == 0, err
    entries = json.loads((tmp_path / "o" / "predictions.json").read_text())
    assert [e["frame_index"] for e in entries] == [0, 0, 2]
    assert "1 dropped: scoring below score_thr=0.3" in err and "1 name frames that are not in the input: 40" in err
    assert f"{N_FRAMES - 2} frame(s) had no box" in out
    table = read_table(tmp_path / "o" / "predictions.csv")
    assert len(table) == N_FRAMES and table.loc[1].isna().all()  # a frame without a box: empty cells
    best = max(entries[:2], key=lambda e: e["score"])  # the CSV holds the frame's best instance
    np.testing.assert_allclose(table_xy(table, 0)[0], np.array(best["keypoints"]).reshape(-1, 3)[:, :2], atol=1e-4)


@needs_onnx
def test_onnx_runtime_backend_matches_pytorch(
    video: Path, tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kpreg.cli.export import export_checkpoint

    model, _ = export_checkpoint(tiny_checkpoint, "onnx", tmp_path / "m.onnx")
    runs = {}
    for backend, args in (("torch", ["--ckpt", str(tiny_checkpoint)]),
                          ("onnxruntime", ["--backend", "onnxruntime", "--model", str(model)])):
        code, out, err = run_main(capsys, *args, "--input", str(video), "--out", str(tmp_path / backend),
                                  "--device", "cpu")
        assert code == 0, err
        assert f"{backend} on cpu" in out
        runs[backend] = json.loads((tmp_path / backend / "predictions.json").read_text())
    for a, b in zip(runs["torch"], runs["onnxruntime"]):
        diff = np.abs(np.array(a["keypoints"]) - np.array(b["keypoints"])).reshape(-1, 3)
        assert diff[:, :2].max() <= 1e-3 and diff[:, 2].max() <= 1e-4
    code, _, err = run_main(capsys, "--backend", "onnxruntime", "--model", str(model), "--input", str(video),
                            "--out", str(tmp_path / "x"), "--no-flip")
    assert code == 2 and "has the flip test in its graph" in err and "--no-flip" in err


# ---- bad input: one clear message each; exit code 2 only where nothing could be predicted -------------------
def test_truncated_video_keeps_the_frames_before_the_fault(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cut = truncate(write_video(tmp_path / "full.avi", 20), tmp_path / "cut.avi", 0.6)
    code, _, err = run_main(capsys, "--ckpt", str(tiny_checkpoint), "--input", str(cut), "--out", str(tmp_path / "o"))
    assert code == 0, err
    table = read_table(tmp_path / "o" / "predictions.csv")
    read = len(table)
    assert 0 < read < 20
    assert f"cut.avi: decoding stopped at frame {read} of the 20 frames" in err
    assert f"the {read} frame(s) before it are predicted" in err
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["fault"].startswith(str(cut))


def test_video_that_does_not_open_is_exit_2(tiny_checkpoint: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    cut = truncate(write_video(tmp_path / "clip.mp4", 10, "mp4v"), tmp_path / "cut.mp4", 0.5)
    code, _, err = run_main(capsys, "--ckpt", str(tiny_checkpoint), "--input", str(cut), "--out", str(tmp_path / "o"))
    assert code == 2 and "cut.mp4: neither an image nor a video OpenCV can open" in err


def test_folder_with_other_files_and_a_corrupt_image_predicts_the_rest(
    folder: Path, tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mixed = tmp_path / "mixed"
    for i in range(3):
        write_rgb(mixed / f"img{i}.png", figure(i))
    (mixed / "notes.txt").write_text("not an image")
    (mixed / "broken.png").write_bytes((mixed / "img0.png").read_bytes()[:40])  # a PNG header and no data
    code, out, err = run_main(capsys, "--ckpt", str(tiny_checkpoint), "--input", str(mixed), "--out",
                              str(tmp_path / "o"))
    assert code == 0, err
    assert "skipped 2 file(s) that cannot be predicted on: broken.png (corrupt image: it does not decode), " \
           "notes.txt (not an image OpenCV can read)" in err
    assert list(read_table(tmp_path / "o" / "predictions.csv").index) == ["img0.png", "img1.png", "img2.png"]
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert set(summary["skipped"]) == {"broken.png", "notes.txt"} and summary["frames"] == 3


def test_grayscale_and_16_bit_images_are_converted_and_predicted(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = tmp_path / "images"
    gray = cv2.cvtColor(figure(0), cv2.COLOR_RGB2GRAY)
    write_rgb(images / "gray.png", gray)
    write_rgb(images / "deep.png", cv2.cvtColor(figure(1), cv2.COLOR_RGB2BGR).astype(np.uint16) * 257)
    code, out, err = run_main(capsys, "--ckpt", str(tiny_checkpoint), "--input", str(images), "--out",
                              str(tmp_path / "o"))
    assert code == 0, err
    assert "converted 2 image(s) to 8-bit RGB: deep.png (16-bit → 8-bit (v >> 8)), gray.png (grayscale → RGB)" in out
    entries = json.loads((tmp_path / "o" / "predictions.json").read_text())
    want = kpreg.load(tiny_checkpoint, device="cpu").predict(np.repeat(gray[..., None], 3, axis=-1))
    np.testing.assert_allclose(np.array(entries[1]["keypoints"]).reshape(-1, 3)[:, :2], want.keypoints[0], atol=1e-4)


def test_detections_naming_missing_images(folder: Path, tiny_checkpoint: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    some = tmp_path / "some.json"
    some.write_text(json.dumps([{"file_name": "img1.png", "bbox": [2, 2, 20, 28], "score": 0.9, "image_id": 7},
                                {"file_name": "gone.png", "bbox": [0, 0, 9, 9], "score": 0.9}]))
    code, _, err = run_main(capsys, "--ckpt", str(tiny_checkpoint), "--input", str(folder), "--out",
                            str(tmp_path / "o"), "--detections", str(some))
    assert code == 0, err
    assert "1 name frames that are not in the input: gone.png" in err
    assert [(e["file_name"], e["image_id"]) for e in json.loads((tmp_path / "o" / "predictions.json").read_text())] \
        == [("img1.png", 7)]
    none = tmp_path / "none.json"
    none.write_text(json.dumps([{"file_name": "gone.png", "bbox": [0, 0, 9, 9], "score": 0.9}]))
    code, _, err = run_main(capsys, "--ckpt", str(tiny_checkpoint), "--input", str(folder), "--out",
                            str(tmp_path / "o2"), "--detections", str(none))
    assert code == 2 and "none of its detections names a frame of the input" in err


@pytest.mark.parametrize(("make", "message"), [
    ("empty", "the folder has no files"),
    ("no_images", "none of its 2 file(s) is a readable image"),
    ("glob", "the pattern matches no file"),
    ("missing", "no such file or folder"),
])
def test_nothing_to_predict_is_exit_2(make: str, message: str, tiny_checkpoint: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "in"
    if make in ("empty", "no_images"):
        path.mkdir()
    if make == "no_images":
        (path / "a.txt").write_text("x")
        (path / "b.csv").write_text("y")
    arg = str(path / "*.png") if make == "glob" else str(path)
    code, _, err = run_main(capsys, "--ckpt", str(tiny_checkpoint), "--input", arg, "--out", str(tmp_path / "o"))
    assert code == 2 and message in err and err.count("error:") == 1


def test_wrong_model_arguments_are_exit_2(folder: Path, tiny_checkpoint: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    cases = [
        (["--backend", "onnxruntime"], "--backend onnxruntime runs an exported model: give --model FILE"),
        ([], "give --ckpt CKPT"),
        (["--ckpt", str(tmp_path / "nope.ckpt")], "checkpoint not found"),
        (["--ckpt", str(tiny_checkpoint), "--device", "cuda:7"] if not __import__("torch").cuda.is_available()
         else ["--ckpt", str(tiny_checkpoint), "--device", "nonsense"], "device"),
    ]
    for args, message in cases:
        code, _, err = run_main(capsys, *args, "--input", str(folder), "--out", str(tmp_path / "o"))
        assert code == 2 and message in err, (args, err)
