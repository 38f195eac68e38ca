"""predict.py on video as a lab runs it: no boxes (the model finds the animal as it was trained to), smoothing.

The model is the session's tiny synthetic checkpoint; its recorded data part is edited to say how it was trained
(``box_source``), which is all ``predict.py`` reads to choose how to find the animal.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from testkit.cli import run_in_process

from kpreg.cli.predict import main as predict_main
from kpreg.data.synthetic import render_figure

pytestmark = pytest.mark.slow  # trains the tiny checkpoint and runs predict.py's entry point

N_FRAMES = 12


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    return run_in_process(predict_main, capsys, *args)


def with_box_source(ckpt: Path, box_source: str, out: Path) -> Path:
    """A copy of ``ckpt`` whose recorded data part was trained with ``box_source``."""
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=False)
    data = checkpoint["kpreg"]["config"].setdefault("data", {})
    data.setdefault("init_args", {})["box_source"] = box_source
    torch.save(checkpoint, out)
    return out


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 12-frame clip: the synthetic figure on a larger frame (64 × 96) than the model's 32 × 32 input."""
    path = tmp_path_factory.mktemp("video") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (96, 64))
    for i in range(N_FRAMES):
        frame = np.zeros((64, 96, 3), np.uint8)
        frame[16:48, 20 + 2 * i:52 + 2 * i] = render_figure(21, i, 32, True).image
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def test_a_crop_only_model_is_refused_without_boxes(video: Path, tiny_checkpoint: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = with_box_source(tiny_checkpoint, "keypoints", tmp_path / "crop.ckpt")
    code, _, err = run_main(capsys, "--ckpt", str(ckpt), "--input", str(video), "--out", str(tmp_path / "o"),
                            "--device", "cpu")
    assert code == 2 and "trained on crops around the animal" in err and "box_source both" in err
    assert not (tmp_path / "o" / "predictions.csv").exists()  # never run on whole frames


@pytest.mark.parametrize(("box_source", "passes_word"), [("both", "2 crop(s)"), ("image", "whole frame")])
def test_without_boxes_the_model_finds_the_animal(box_source: str, passes_word: str, video: Path,
                                                  tiny_checkpoint: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = with_box_source(tiny_checkpoint, box_source, tmp_path / f"{box_source}.ckpt")
    out = tmp_path / "o"
    code, stdout, err = run_main(capsys, "--ckpt", str(ckpt), "--input", str(video), "--out", str(out),
                                 "--device", "cpu", "--refine", "2")
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert passes_word in summary["boxes"] and passes_word in stdout and summary["frames"] == N_FRAMES
    entries = json.loads((out / "predictions.json").read_text())
    assert len(entries) == N_FRAMES and all(len(e["keypoints"]) == 16 * 3 for e in entries)


@pytest.fixture(scope="module")
def smoothed_run(video: Path, tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """predict.py --smooth kalman --draw on the clip, once for the module (the whole-frame tiny model; its
    confidences are all low, so the gate is 0: every keypoint observed)."""
    out = tmp_path_factory.mktemp("smoothed")
    code = 0
    try:
        predict_main(["--ckpt", str(tiny_checkpoint), "--input", str(video), "--out", str(out), "--device", "cpu",
                      "--smooth", "kalman", "--smooth-gate", "0", "--draw", "--trail", "3", "--colormap", "jet"])
    except SystemExit as stop:
        code = int(stop.code or 0)
    assert code == 0
    return out


def test_smoothed_track_is_written_beside_the_raw_one_and_drawn(smoothed_run: Path) -> None:
    from kpreg.inference.tracks import read_track

    raw = read_track(smoothed_run / "predictions.csv", N_FRAMES)
    smooth = read_track(smoothed_run / "predictions_smoothed.csv", N_FRAMES)
    assert smooth.bodyparts == raw.bodyparts and smooth.scorer == raw.scorer
    np.testing.assert_array_equal(smooth.confidence, raw.confidence)  # the likelihood column is the confidence
    assert np.isfinite(smooth.keypoints).all() and not np.array_equal(smooth.keypoints, raw.keypoints)
    # smoother than the raw track: less frame-to-frame acceleration
    assert np.abs(np.diff(smooth.keypoints, 2, axis=0)).mean() < np.abs(np.diff(raw.keypoints, 2, axis=0)).mean()
    drawn = cv2.VideoCapture(str(smoothed_run / "clip_smoothed.mp4"))
    assert int(drawn.get(cv2.CAP_PROP_FRAME_COUNT)) == N_FRAMES
    drawn.release()
    assert cv2.imread(str(smoothed_run / "legend.png")) is not None
    summary = json.loads((smoothed_run / "summary.json").read_text())
    assert "predictions_smoothed.csv" in summary["outputs"]
    if importlib.util.find_spec("tables") is not None:
        h5 = read_track(smoothed_run / "predictions_smoothed.h5", N_FRAMES)
        np.testing.assert_allclose(h5.keypoints, smooth.keypoints, atol=1e-3)


def test_an_existing_predictions_file_is_smoothed_the_same_way(smoothed_run: Path, video: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "again"
    code, stdout, err = run_main(capsys, "--predictions", str(smoothed_run / "predictions.csv"), "--input",
                                 str(video), "--out", str(out), "--smooth", "kalman", "--smooth-gate", "0")
    assert code == 0, err
    assert "smoothed (kalman, gate 0) 12 frame(s)" in stdout
    assert (out / "predictions_smoothed.csv").read_text() == (smoothed_run / "predictions_smoothed.csv").read_text()


def test_smoothing_bad_input_is_exit_2(smoothed_run: Path, video: Path, tiny_checkpoint: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    longer = tmp_path / "longer.avi"  # another video: 13 frames
    writer = cv2.VideoWriter(str(longer), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (96, 64))
    for _ in range(N_FRAMES + 1):
        writer.write(np.zeros((64, 96, 3), np.uint8))
    writer.release()
    table = str(smoothed_run / "predictions.csv")
    folder = tmp_path / "images"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.zeros((32, 32, 3), np.uint8))
    cases = [
        (["--predictions", table, "--input", str(longer), "--smooth", "kalman"],
         "has 12 frame(s) but the video has 13: these are the predictions of another video"),
        (["--predictions", table, "--input", str(video)], "give --smooth kalman or --smooth median"),
        (["--ckpt", str(tiny_checkpoint), "--input", str(video), "--smooth", "median", "--smooth-window", "15"],
         "fewer than the median window of 15"),
        (["--ckpt", str(tiny_checkpoint), "--input", str(folder), "--smooth", "kalman"], "is not a video"),
    ]
    for args, message in cases:
        out = tmp_path / "o"
        code, _, err = run_main(capsys, *args, "--out", str(out), "--device", "cpu")
        assert code == 2 and message in err, (args, err)
        assert not (out / "predictions.csv").exists()  # refused before anything ran


def perturbed(ckpt: Path, out: Path, seed: int) -> Path:
    """A copy of ``ckpt`` with noise added to its weights: another member of the same keypoints."""
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=False)
    gen = torch.Generator().manual_seed(seed)
    for value in checkpoint["state_dict"].values():
        if value.is_floating_point() and value.ndim == 4:  # conv weights
            value.add_(0.05 * value.std() * torch.randn(value.shape, generator=gen))
    torch.save(checkpoint, out)
    return out


def test_an_ensemble_is_the_members_mean_with_their_disagreement(video: Path, tiny_checkpoint: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    import kpreg
    from kpreg.inference.ensemble import read_disagreement
    from kpreg.inference.tracks import read_track

    other = perturbed(tiny_checkpoint, tmp_path / "other.ckpt", 0)
    runs = {}
    for name, ckpts in (("a", [tiny_checkpoint]), ("b", [other]), ("ab", [tiny_checkpoint, other])):
        args = [a for c in ckpts for a in ("--ckpt", str(c))]
        code, stdout, err = run_main(capsys, *args, "--input", str(video), "--out", str(tmp_path / name),
                                     "--device", "cpu", "--smooth", "kalman", "--smooth-gate", "0")
        assert code == 0, err
        runs[name] = read_track(tmp_path / name / "predictions.csv", N_FRAMES)
    assert "ensemble of 2 models" in stdout and runs["ab"].scorer == "kpreg_ensemble2"
    a, b, ab = runs["a"], runs["b"], runs["ab"]
    np.testing.assert_allclose(ab.keypoints, (a.keypoints + b.keypoints) / 2, atol=2e-3)  # CSV rounding
    np.testing.assert_allclose(ab.confidence, (a.confidence + b.confidence) / 2, atol=2e-3)
    expected = ((a.keypoints - b.keypoints) ** 2 / 4).mean(-1)  # (T, K) variance per coordinate of two members
    assert expected.max() > 0.01  # the members differ
    spread = read_disagreement(tmp_path / "ab" / "disagreement.csv", ab.bodyparts, N_FRAMES)
    np.testing.assert_allclose(spread, expected, atol=0.02, rtol=0.01)
    assert (tmp_path / "ab" / "predictions_smoothed.csv").is_file()
    predictor = kpreg.load([tiny_checkpoint, other], device="cpu")  # the Python API
    first = predictor.predict(cv2.cvtColor(cv2.VideoCapture(str(video)).read()[1], cv2.COLOR_BGR2RGB))
    np.testing.assert_allclose(first.keypoints[0], ab.keypoints[0], atol=2e-3)


def test_an_ensemble_of_other_keypoints_is_exit_2(video: Path, tiny_checkpoint: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = torch.load(tiny_checkpoint, map_location="cpu", weights_only=False)
    names = list(checkpoint["kpreg"]["keypoint_names"])
    checkpoint["kpreg"]["keypoint_names"] = names[::-1]
    torch.save(checkpoint, tmp_path / "reversed.ckpt")
    code, _, err = run_main(capsys, "--ckpt", str(tiny_checkpoint), "--ckpt", str(tmp_path / "reversed.ckpt"),
                            "--input", str(video), "--out", str(tmp_path / "o"), "--device", "cpu")
    assert code == 2 and "predict different keypoints" in err and "reversed.ckpt" in err
