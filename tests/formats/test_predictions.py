"""predictions.json, the one predictions file of evaluate.py and predict.py: writer, reader, round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kpreg.formats.coco import load_results_json
from kpreg.formats.files import FormatError
from kpreg.formats.predictions import FIELDS, PredictionsWriter, read_predictions, write_predictions

GT = {"images": [{"id": 7, "width": 10, "height": 10}, {"id": 8, "width": 10, "height": 10}],
      "annotations": [], "categories": [{"id": 1, "name": "p", "keypoints": ["a", "b"], "skeleton": []}]}


def test_entries_are_coco_results_with_where_each_instance_comes_from(tmp_path: Path) -> None:
    path = tmp_path / "predictions.json"
    with PredictionsWriter(path, category_id=1) as writer:
        writer.add(7, np.array([[1.23456789, 2.0], [3.0, 4.5]], np.float32), np.array([0.5, 0.25]), 0.375,
                   "a.png", 0)
        assert not path.exists() and writer.partial.exists()  # under the final name only when complete
        writer.add(8, np.zeros((2, 2)), np.ones(2), 1.0, "clip.mp4", 41, index=12, present=np.array([True, False]))
    entries = json.loads(path.read_text())
    assert entries[0] == {"image_id": 7, "category_id": 1, "keypoints": [1.2346, 2.0, 0.5, 3.0, 4.5, 0.25],
                          "score": 0.375, "file_name": "a.png", "frame_index": 0, "index": 0}
    assert entries[1]["keypoints"] == [0.0, 0.0, 1.0, 0.0, 0.0, 0.0]  # the absent keypoint is COCO's 0, 0, 0
    assert (entries[1]["frame_index"], entries[1]["index"]) == (41, 12) and not writer.partial.exists()
    assert set(entries[0]) == set(FIELDS)
    assert len(load_results_json(path, GT).getAnnIds()) == 2  # pycocotools takes it as a results file


def test_round_trip_to_the_written_precision(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    xy = rng.uniform(-0.5, 639.5, (5, 3, 2))  # (N, K, 2) original pixels
    conf = rng.uniform(0, 1, (5, 3))  # (N, K)
    scores = conf.mean(1)  # (N,)
    path = write_predictions(tmp_path / "out" / "predictions.json", xy, conf, scores, [3, 3, 4, 9, 9],
                             ["a.png", "a.png", "b.png", "c/d.png", "c/d.png"], [0, 0, 1, 2, 2], [0, 1, 2, 5, 6],
                             category_id=2)
    back = read_predictions(path)
    assert len(back) == 5 and back.num_keypoints == 3
    np.testing.assert_allclose(back.keypoints, xy, atol=0.5e-4)  # 1e-4 px steps
    np.testing.assert_allclose(back.confidence, conf, atol=0.5e-6)
    np.testing.assert_allclose(back.score, scores, atol=0.5e-6)
    assert back.image_id.tolist() == [3, 3, 4, 9, 9] and back.category_id.tolist() == [2] * 5
    assert back.file_name == ("a.png", "a.png", "b.png", "c/d.png", "c/d.png")
    assert back.frame_index.tolist() == [0, 0, 1, 2, 2] and back.index.tolist() == [0, 1, 2, 5, 6]
    rewritten = write_predictions(tmp_path / "again.json", back.keypoints, back.confidence, back.score, back.image_id,
                                  back.file_name, back.frame_index, back.index, category_id=2)
    assert rewritten.read_text() == path.read_text()  # a second trip changes nothing


def test_an_empty_file_reads_as_no_instances(tmp_path: Path) -> None:
    path = write_predictions(tmp_path / "p.json", np.zeros((0, 4, 2)), np.zeros((0, 4)), [], [], [], [], [])
    assert json.loads(path.read_text()) == [] and len(read_predictions(path)) == 0


def test_interrupted_run_leaves_a_valid_partial_file(tmp_path: Path) -> None:
    path = tmp_path / "predictions.json"
    with pytest.raises(KeyboardInterrupt), PredictionsWriter(path) as writer:
        writer.add(0, np.zeros((1, 2)), np.ones(1), 1.0, "a.png", 0)
        raise KeyboardInterrupt
    assert not path.exists()
    assert [e["image_id"] for e in json.loads(writer.partial.read_text())] == [0]


def test_bad_predictions_name_the_frame(tmp_path: Path) -> None:
    with PredictionsWriter(tmp_path / "p.json") as writer:
        with pytest.raises(FormatError, match="clip.mp4 frame 3: NaN"):
            writer.add(3, np.array([[np.nan, 0.0]]), np.ones(1), 1.0, "clip.mp4", 3)
        with pytest.raises(FormatError, match=r"\(K, 2\)"):
            writer.add(3, np.zeros((2, 3)), np.ones(2), 1.0, "clip.mp4", 3)
    assert json.loads((tmp_path / "p.json").read_text()) == []
    with pytest.raises(FormatError, match=r"p2.json: 2 instances, but the lengths of \{'scores': 1\}"):
        write_predictions(tmp_path / "p2.json", np.zeros((2, 1, 2)), np.ones((2, 1)), [1.0], [0, 1], ["a", "b"],
                          [0, 1], [0, 1])


ENTRY = {"image_id": 1, "category_id": 1, "keypoints": [1.0, 2.0, 0.5], "score": 0.5, "file_name": "a.png",
         "frame_index": 0, "index": 0}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[1, 2", "not valid JSON"),
        ('{"predictions": []}', "holds a JSON list of instances, got dict"),
        (json.dumps([ENTRY, 3]), "entry 1 is not an object"),
        (json.dumps([{k: v for k, v in ENTRY.items() if k != "index"}]), r"entry 0 lacks \['index'\]"),
        (json.dumps([{**ENTRY, "frame_index": 1.5}]), "entry 0: frame_index must be an integer, got 1.5"),
        (json.dumps([{**ENTRY, "file_name": None}]), "entry 0: file_name must be a string"),
        (json.dumps([{**ENTRY, "keypoints": [1.0, 2.0]}]), r"entry 0: keypoints must be .*\[x, y, confidence\]"),
        (json.dumps([ENTRY, {**ENTRY, "keypoints": [1.0] * 6}]), "entry 1 has 2 keypoints, entry 0 has 1"),
        (json.dumps([{**ENTRY, "score": "high"}]), "entry 0: score must be a number"),
        (json.dumps([{**ENTRY, "keypoints": [1.0, float("nan"), 0.5]}]), r"entry 0 \(index 0\) has NaN"),
    ],
)
def test_reader_names_the_file_and_the_entry(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "bad.json").write_text(content)
    with pytest.raises(FormatError, match=f"bad.json.*{message}"):
        read_predictions(tmp_path / "bad.json")


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="predictions file not found: .*nope.json"):
        read_predictions(tmp_path / "nope.json")
