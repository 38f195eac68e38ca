"""predict.py on video as a lab runs it: no boxes (the model finds the animal as it was trained to), smoothing.

The model is the session's tiny synthetic checkpoint; its recorded data part is edited to say how it was trained
(``box_source``), which is all ``predict.py`` reads to choose how to find the animal.
"""

from __future__ import annotations

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
