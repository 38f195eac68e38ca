"""COCO detection JSON, read once for predict.py's --detections and the COCO datamodule's bbox_file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kpreg.formats.detections import BoxError, Detection, read_coco_detections


class DataError(ValueError):
    pass


def test_a_detection_list_and_a_coco_file(tmp_path: Path) -> None:
    (tmp_path / "d.json").write_text(json.dumps([
        {"image_id": 7, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5},
        {"file_name": "a.png", "bbox": [0, 0, 0, 4], "score": "0.25"},  # a zero width is the caller's to drop
    ]))
    entries, images = read_coco_detections(tmp_path / "d.json")
    assert images is None
    assert entries == [Detection(0, 7, None, 1, (1.0, 2.0, 3.0, 4.0), 0.5),
                       Detection(1, None, "a.png", None, (0.0, 0.0, 0.0, 4.0), 0.25)]
    (tmp_path / "gt.json").write_text(json.dumps({"images": [{"id": 3, "file_name": "b.png"}],
                                                  "annotations": [{"image_id": 3, "category_id": 2, "bbox": [5, 5, 1, 1]}]}))
    entries, images = read_coco_detections(tmp_path / "gt.json")
    assert images == {3: "b.png"} and entries == [Detection(0, 3, None, 2, (5.0, 5.0, 1.0, 1.0), 1.0)]  # GT: score 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[{"bbox": [0, 0, 1, 1], "score": 1}]', "entry 0 has neither file_name nor image_id"),
        ('[{"image_id": "7", "bbox": [0, 0, 1, 1], "score": 1}]', "entry 0 has image_id '7'; COCO image ids are integers"),
        ('[{"image_id": 7, "bbox": [0, 0, 1, "x"], "score": 1}]', "entry 0 bbox is not a number: 'x'"),
        ('"boxes"', "expected a JSON list of detections, got str"),
    ],
)
def test_errors_name_the_file_and_entry_in_the_callers_class(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "bad.json").write_text(content)
    with pytest.raises(BoxError, match=f"bad.json: {message}"):
        read_coco_detections(tmp_path / "bad.json")
    with pytest.raises(DataError, match=f"bad.json: {message}"):
        read_coco_detections(tmp_path / "bad.json", "bbox_file", DataError)
    with pytest.raises(FileNotFoundError, match="bbox_file not found"):
        read_coco_detections(tmp_path / "nope.json", "bbox_file", DataError)
