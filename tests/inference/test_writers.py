"""The MP4 writer (the predictions file: tests/formats/test_predictions.py, min_confidence: test_filtering.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from testkit.media import frame_number, video_frame

from kpreg.inference.sources import open_source
from kpreg.inference.writers import VideoWriter, WriterError


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
