"""Boxes per frame: whole frames, COCO detection JSON (by file name, by image id), per-frame CSV."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from testkit.media import colour_image, write_video

from kpreg.inference.boxes import Box, BoxError, BoxSelector, load_detections, whole_frame
from kpreg.inference.sources import open_source


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "imgs"
    d.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        cv2.imwrite(str(d / name), colour_image(24, 32))
    return d


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_whole_frame_box_spans_the_image_edges() -> None:
    assert whole_frame(np.zeros((24, 32, 3), np.uint8)) == Box(0.0, 0.0, 32.0, 24.0, 1.0)


def test_default_is_one_whole_frame_box_per_frame(folder: Path) -> None:
    source = open_source(folder)
    select = BoxSelector(source)
    assert [select(f) for f in source] == [[Box(0.0, 0.0, 32.0, 24.0)]] * 3
    assert select.finish() is None


def test_coco_json_by_image_id_with_an_images_file(folder: Path, tmp_path: Path) -> None:
    images = write_json(tmp_path / "gt.json", {"images": [{"id": 7, "file_name": "a.png"},
                                                          {"id": 8, "file_name": "b.png"},
                                                          {"id": 9, "file_name": "zzz.png"}]})
    dets = write_json(tmp_path / "dets.json", [
        {"image_id": 7, "category_id": 1, "bbox": [1, 2, 10, 20], "score": 0.9},
        {"image_id": 7, "category_id": 1, "bbox": [3, 4, 5, 6], "score": 0.8},  # a second instance
        {"image_id": 8, "category_id": 1, "bbox": [0, 0, 4, 4], "score": 0.1},  # below the threshold
        {"image_id": 8, "category_id": 2, "bbox": [0, 0, 4, 4], "score": 0.9},  # another category
        {"image_id": 8, "category_id": 1, "bbox": [0, 0, 0, 4], "score": 0.9},  # no width
        {"image_id": 9, "category_id": 1, "bbox": [0, 0, 4, 4], "score": 0.9},  # not in the input
    ])
    detections = load_detections(dets, score_thr=0.5, category_id=1, images_file=images)
    source = open_source(folder)
    select = BoxSelector(source, detections)
    boxes = {f.name: select(f) for f in source}
    assert boxes == {"a.png": [Box(1, 2, 10, 20, 0.9, 7), Box(3, 4, 5, 6, 0.8, 7)], "b.png": [], "c.png": []}
    report = select.finish()
    assert report is not None and (report.entries, report.kept) == (6, 3)
    assert report.dropped == {"scoring below score_thr=0.5": 1, "of another category than 1": 1,
                              "with a zero or negative size box": 1}
    assert report.not_in_input == {"zzz.png": 1}
    assert "name frames that are not in the input: zzz.png" in report.summary()


def test_coco_json_by_file_name_and_a_coco_file_with_its_own_images(folder: Path, tmp_path: Path) -> None:
    by_name = write_json(tmp_path / "d.json", [{"file_name": "c.png", "bbox": [1, 1, 8, 8], "score": 0.7}])
    assert load_detections(by_name).by_key == {"c.png": [Box(1, 1, 8, 8, 0.7)]}
    gt = write_json(tmp_path / "gt.json", {"images": [{"id": 1, "file_name": "b.png"}],
                                           "annotations": [{"image_id": 1, "category_id": 1, "bbox": [2, 2, 5, 5]}]})
    assert load_detections(gt).by_key == {"b.png": [Box(2, 2, 5, 5, 1.0, 1)]}  # no score: a GT box scores 1


def test_csv_per_video_frame(tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.avi", 5, "MJPG")
    (tmp_path / "d.csv").write_text("frame,x,y,w,h,score\n0,1,2,10,20,0.9\n0,5,5,5,5,0.4\n3,0,0,8,8,1\n9,0,0,8,8,1\n")
    detections = load_detections(tmp_path / "d.csv", score_thr=0.5)
    assert detections.key_kind == "frame"
    source = open_source(video)
    select = BoxSelector(source, detections)
    boxes = [select(f) for f in source]
    assert boxes == [[Box(1, 2, 10, 20, 0.9)], [], [], [Box(0, 0, 8, 8, 1.0)], []]
    report = select.finish()  # a video is matched once its frames are known
    assert report is not None and report.not_in_input == {9: 1} and report.dropped == {"scoring below score_thr=0.5": 1}


def test_no_detection_matching_the_input_is_one_clear_error(folder: Path, tmp_path: Path) -> None:
    dets = write_json(tmp_path / "d.json", [{"file_name": "other.png", "bbox": [1, 1, 8, 8], "score": 0.7}])
    with pytest.raises(BoxError, match=r"d\.json: none of its detections.*'other\.png'"):
        BoxSelector(open_source(folder), load_detections(dets))


def test_detections_of_the_wrong_kind_for_the_source(folder: Path, tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("frame,x,y,w,h,score\n0,1,2,10,20,0.9\n")
    with pytest.raises(BoxError, match="name frame indices.*not a video"):
        BoxSelector(open_source(folder), load_detections(tmp_path / "d.csv"))
    by_name = write_json(tmp_path / "d.json", [{"file_name": "c.png", "bbox": [1, 1, 8, 8], "score": 0.7}])
    with pytest.raises(BoxError, match="name image files.*is a video"):
        BoxSelector(open_source(write_video(tmp_path / "v.avi", 2, "MJPG")), load_detections(by_name))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[{"image_id": 1, "bbox": [0, 0, 1, 1], "score": 1}]', "entry 0 names image_id 1 but no file"),
        ('[{"file_name": "a.png", "bbox": [0, 0, 1], "score": 1}]', r"entry 0: bbox must be four numbers"),
        ('[{"file_name": "a.png", "bbox": [0, 0, 1, NaN], "score": 1}]', "entry 0: bbox is not finite"),
        ('[{"file_name": "a.png", "bbox": [0, 0, 1, 1]}]', "entry 0 score is not a number"),
        ('{"images": []}', "needs 'images' and 'annotations'"),
        ("[1, 2", "not valid JSON"),
    ],
)
def test_bad_json_names_the_file_and_entry(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "bad.json").write_text(content)
    with pytest.raises(BoxError, match=f"bad.json.*{message}"):
        load_detections(tmp_path / "bad.json")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("frame,x,y,w,score\n0,1,2,3,1\n", r"the header lacks \['h'\]"),
        ("frame,x,y,w,h,score\n0,1,2,3,4,1\n1,1,two,3,4,1\n", "line 3 bbox is not a number: 'two'"),
        ("frame,x,y,w,h,score\n-1,1,2,3,4,1\n", "line 2: negative frame index -1"),
    ],
)
def test_bad_csv_names_the_file_and_line(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "bad.csv").write_text(content)
    with pytest.raises(BoxError, match=f"bad.csv.*{message}"):
        load_detections(tmp_path / "bad.csv")


def test_csv_with_file_names_for_a_folder(folder: Path, tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("frame,x,y,w,h,score,label\nb.png,1,2,10,20,0.9,person\n")
    detections = load_detections(tmp_path / "d.csv")
    assert detections.key_kind == "file_name"
    source = open_source(folder)
    select = BoxSelector(source, detections)
    assert [select(f) for f in source] == [[], [Box(1, 2, 10, 20, 0.9)], []]
