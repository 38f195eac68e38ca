"""min_confidence (DeepLabCut's pcutoff): the mask, the filtered coordinates, drawing and the predictions file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from kpreg.formats.deeplabcut import read_collected_data, write_collected_data
from kpreg.inference.filtering import confident, filter_keypoints
from kpreg.inference.render import draw_predictions
from kpreg.inference.writers import PredictionsWriter

KEYPOINTS = np.array([[[10.0, 10.0], [40.0, 10.0], [np.nan, 30.0]]])  # (1, 3, 2) original px
CONFIDENCE = np.array([[0.7, 0.5, 0.9]])  # (1, 3)


def test_confident_is_finite_and_at_least_the_cut_off() -> None:
    assert confident(CONFIDENCE, 0.5).tolist() == [[True, True, True]]  # "at least": 0.5 counts
    assert confident(CONFIDENCE, 0.6).tolist() == [[True, False, True]]
    assert confident(CONFIDENCE, 0.6, KEYPOINTS).tolist() == [[True, False, False]]  # NaN position: not found
    assert confident(np.array([[np.nan]]), 0.0).tolist() == [[False]]
    xy = filter_keypoints(KEYPOINTS, CONFIDENCE, 0.6)
    assert xy[0, 0].tolist() == [10.0, 10.0] and np.isnan(xy[0, 1:]).all()
    assert KEYPOINTS[0, 1, 0] == 40.0  # the input is not changed


def test_drawing_hides_keypoints_below_min_confidence() -> None:
    image = np.zeros((40, 60, 3), np.uint8)
    kp = KEYPOINTS[:, :2]  # (1, 2, 2)
    shown = draw_predictions(image, kp, CONFIDENCE[:, :2], [(0, 1)], min_confidence=0.5, radius=2)
    hidden = draw_predictions(image, kp, CONFIDENCE[:, :2], [(0, 1)], min_confidence=0.6, radius=2)
    assert shown[10, 40].any() and shown[10, 25].any()  # both keypoints and the limb
    assert hidden[10, 10].any() and not hidden[10, 40].any() and not hidden[10, 25].any()  # keypoint 1, its limb gone


def test_predictions_file_writes_absent_triplets_below_min_confidence(tmp_path: Path) -> None:
    xy = np.array([[10.0, 10.0], [40.0, 10.0], [5.0, 30.0]])
    with PredictionsWriter(tmp_path / "all.json") as writer:
        writer.add(1, xy, CONFIDENCE[0], 0.8, "a.png", 0)
    with PredictionsWriter(tmp_path / "cut.json", min_confidence=0.6) as writer:
        writer.add(1, xy, CONFIDENCE[0], 0.8, "a.png", 0)
    full = json.loads((tmp_path / "all.json").read_text())[0]
    cut = json.loads((tmp_path / "cut.json").read_text())[0]
    assert full["keypoints"] == [10.0, 10.0, 0.7, 40.0, 10.0, 0.5, 5.0, 30.0, 0.9]
    assert cut["keypoints"] == [10.0, 10.0, 0.7, 0.0, 0.0, 0.0, 5.0, 30.0, 0.9]  # COCO's "absent" keypoint
    assert cut["score"] == full["score"] == 0.8


def test_deeplabcut_table_with_min_confidence_leaves_cells_empty(tmp_path: Path) -> None:
    xy = np.array([[[10.0, 10.0], [40.0, 10.0], [5.0, 30.0]]])
    path = write_collected_data(tmp_path / "pred.csv", "kpreg", ["a", "b", "c"], [0], xy, CONFIDENCE,
                                labelled=confident(CONFIDENCE, 0.6))
    table = read_collected_data(path)
    assert table.labelled.tolist() == [[True, False, True]]  # keypoint 1's x, y cells are empty
    assert table.likelihood[0].tolist() == [0.7, 0.5, 0.9]  # the likelihood column keeps every value
