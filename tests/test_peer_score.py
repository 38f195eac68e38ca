"""benchmarks/peers/deeplabcut/score.py: another tool's predictions on a project's held-out frames, scored by kpreg's
pixel metric code. Its own fixture project; DeepLabCut itself is never needed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from testkit.dlc import make_dlc_project

from kpreg.formats.deeplabcut import write_collected_data

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "peers" / "deeplabcut" / "score.py"


def load_score():
    spec = importlib.util.spec_from_file_location("peer_score", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def project(tmp_path: Path):
    # Two folders of 6 frames, every keypoint labelled: val_every 5 holds out frames 0 and 5 of each folder.
    return make_dlc_project(tmp_path / "project", folders=("mouseA", "mouseB"), frames=6, unlabelled=False,
                            image_size=(60, 80))


HELDOUT = ["labeled-data/mouseA/img0000.png", "labeled-data/mouseA/img0005.png",
           "labeled-data/mouseB/img0000.png", "labeled-data/mouseB/img0005.png"]


def write_predictions(path: Path, project, frames: list[str], offset: np.ndarray) -> Path:
    """Ground truth + offset (K, 2) px for ``frames``, with a likelihood column as DeepLabCut writes."""
    rows = [project.image_paths.index(f) for f in frames]
    xy = project.keypoints[rows] + offset  # (N, K, 2)
    return write_collected_data(path, "DLC_test", project.bodyparts, frames, xy,
                                likelihood=np.full(xy.shape[:2], 0.9))


def test_scores_offsets_on_kpregs_heldout_frames(project, tmp_path: Path) -> None:
    score = load_score()
    offset = np.array([[3.0, 4.0], [3.0, 4.0], [0.0, 0.0], [0.0, 1.0]])  # errors 5, 5, 0, 1 px per frame
    # Training frames in the table too: only the held-out ones are scored.
    preds = write_predictions(tmp_path / "preds.csv", project, list(project.image_paths), offset)
    listed = tmp_path / "heldout.txt"
    listed.write_text("\n".join(HELDOUT) + "\n")
    out = tmp_path / "score.json"
    rc = score.main([str(preds), "--project", str(project.root), "--heldout-list", str(listed),
                     "--label", "peer", "--json", str(out)])
    assert rc == 0
    result = json.loads(out.read_text())
    assert result["heldout_frames"] == HELDOUT
    row = result["rows"]["peer"]
    assert row["MeanError"] == pytest.approx(11 / 4)
    assert row["MedianError"] == pytest.approx(3.0)
    assert row["RMSE"] == pytest.approx(np.sqrt(51 / 4))
    assert row["PCK@2px"] == pytest.approx(50.0)
    assert row["PCK@5px"] == pytest.approx(100.0)
    assert row["MeanError/snout"] == pytest.approx(5.0)


def test_empty_cell_counts_as_a_miss(project, tmp_path: Path) -> None:
    score = load_score()
    preds = write_predictions(tmp_path / "preds.csv", project, HELDOUT, np.zeros((4, 2)))
    text = preds.read_text().splitlines()
    cells = text[3].split(",")  # first held-out frame: empty snout
    cells[1:4] = ["", "", ""]
    preds.write_text("\n".join([*text[:3], ",".join(cells), *text[4:]]) + "\n")
    out = tmp_path / "score.json"
    assert score.main([str(preds), "--project", str(project.root), "--json", str(out)]) == 0
    row = json.loads(out.read_text())["rows"][str(preds)]
    assert row["MeanError"] == pytest.approx(0.0)
    assert row["PCK@2px"] == pytest.approx(100.0 * 15 / 16)


def test_heldout_list_that_differs_from_kpregs_split_is_an_error(project, tmp_path: Path, capsys) -> None:
    score = load_score()
    preds = write_predictions(tmp_path / "preds.csv", project, HELDOUT, np.zeros((4, 2)))
    listed = tmp_path / "heldout.txt"
    listed.write_text("\n".join([*HELDOUT[:3], "labeled-data/mouseB/img0004.png"]) + "\n")
    assert score.main([str(preds), "--project", str(project.root), "--heldout-list", str(listed)]) == 2
    err = capsys.readouterr().err
    assert "heldout.txt" in err and "img0004.png" in err and "img0005.png" in err


def test_missing_prediction_is_an_error(project, tmp_path: Path, capsys) -> None:
    score = load_score()
    preds = write_predictions(tmp_path / "preds.csv", project, HELDOUT[:3], np.zeros((4, 2)))
    assert score.main([str(preds), "--project", str(project.root)]) == 2
    err = capsys.readouterr().err
    assert "preds.csv" in err and "labeled-data/mouseB/img0005.png" in err
