"""The MP4 writer and the incremental predictions.json writer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kpreg.formats.coco import load_results_json
from kpreg.inference.sources import open_source
from kpreg.inference.writers import PredictionsWriter, VideoWriter, WriterError
from tests.inference.media import frame_number, video_frame


def test_mp4_written_frame_by_frame_reads_back(tmp_path: Path) -> None:
    with VideoWriter(tmp_path / "out" / "drawn.mp4", fps=12.0) as writer:
        for i in range(6):
            writer.write(video_frame(i)[..., ::-1].copy())  # RGB in
    source = open_source(tmp_path / "out" / "drawn.mp4")
    assert source.video is not None and (source.video.fps, source.video.frame_count) == (12.0, 6)
    assert [frame_number(f.image) for f in source] == list(range(6))


def test_video_writer_rejects_bad_frames_and_settings(tmp_path: Path) -> None:
    with pytest.raises(WriterError, match="fps"):
        VideoWriter(tmp_path / "a.mp4", fps=0)
    writer = VideoWriter(tmp_path / "a.mp4", fps=5)
    writer.write(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(WriterError, match="frame 1 is 16x8, but the video is 8x8"):
        writer.write(np.zeros((8, 16, 3), np.uint8))
    writer.close()
    with pytest.raises(WriterError, match="cannot write a 'zzzz' video"):
        VideoWriter(tmp_path / "b.mp4", fps=5, fourcc="zzzz").write(np.zeros((8, 8, 3), np.uint8))


def test_predictions_file_is_coco_results_with_provenance(tmp_path: Path) -> None:
    path = tmp_path / "predictions.json"
    with PredictionsWriter(path, category_id=1) as writer:
        writer.add(7, np.array([[1.23456789, 2.0], [3.0, 4.5]], np.float32), np.array([0.5, 0.25]), 0.375,
                   "a.png", 0)
        assert not path.exists() and writer.partial.exists()  # under the final name only when complete
        writer.add(8, np.zeros((2, 2)), np.ones(2), 1.0, "clip.mp4", 41)
    entries = json.loads(path.read_text())
    assert entries[0] == {"image_id": 7, "category_id": 1, "keypoints": [1.2346, 2.0, 0.5, 3.0, 4.5, 0.25],
                          "score": 0.375, "file_name": "a.png", "frame_index": 0}
    assert entries[1]["frame_index"] == 41 and not writer.partial.exists()
    gt = {"images": [{"id": 7, "width": 10, "height": 10}, {"id": 8, "width": 10, "height": 10}],
          "annotations": [], "categories": [{"id": 1, "name": "p", "keypoints": ["a", "b"], "skeleton": []}]}
    assert len(load_results_json(path, gt).getAnnIds()) == 2  # pycocotools takes it as a results file


def test_interrupted_run_leaves_a_valid_partial_file(tmp_path: Path) -> None:
    path = tmp_path / "predictions.json"
    with pytest.raises(KeyboardInterrupt), PredictionsWriter(path) as writer:
        writer.add(0, np.zeros((1, 2)), np.ones(1), 1.0, "a.png", 0)
        raise KeyboardInterrupt
    assert not path.exists()
    assert [e["image_id"] for e in json.loads(writer.partial.read_text())] == [0]


def test_bad_predictions_name_the_frame(tmp_path: Path) -> None:
    with PredictionsWriter(tmp_path / "p.json") as writer:
        with pytest.raises(WriterError, match="clip.mp4 frame 3: NaN"):
            writer.add(3, np.array([[np.nan, 0.0]]), np.ones(1), 1.0, "clip.mp4", 3)
        with pytest.raises(WriterError, match=r"\(K, 2\)"):
            writer.add(3, np.zeros((2, 3)), np.ones(2), 1.0, "clip.mp4", 3)
    assert json.loads((tmp_path / "p.json").read_text()) == []
