"""Frames from images, folders, globs and videos: order, names, conversions, skips, faults, streaming."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from testkit.media import colour_image, frame_number, truncate, write_video

from kpreg.data.topdown import read_image
from kpreg.inference.prefetch import prefetch
from kpreg.inference.sources import SourceError, natural_key, open_source, to_rgb8


# ---- folders and globs ---------------------------------------------------------------------------------
@pytest.fixture()
def mixed_folder(tmp_path: Path) -> Path:
    """Good images in several layouts, a corrupt PNG, a non-image file and junk named like a JPEG."""
    d = tmp_path / "imgs"
    d.mkdir()
    cv2.imwrite(str(d / "img10.png"), colour_image(seed=10))
    cv2.imwrite(str(d / "img2.png"), colour_image(seed=2))
    cv2.imwrite(str(d / "gray.png"), colour_image(seed=3)[..., 0])
    cv2.imwrite(str(d / "deep.png"), (np.arange(24 * 32 * 3).reshape(24, 32, 3) * 85).astype(np.uint16))
    cv2.imwrite(str(d / "alpha.png"), np.dstack([colour_image(seed=4), np.full((24, 32), 9, np.uint8)]))
    png = (d / "img2.png").read_bytes()
    (d / "broken.png").write_bytes(png[: len(png) // 2])  # PNG signature intact, data cut
    (d / "notes.txt").write_text("not an image")
    (d / "fake.jpg").write_bytes(b"hello" * 20)
    return d


def test_folder_yields_good_images_in_natural_order_and_reports_the_rest(mixed_folder: Path) -> None:
    source = open_source(mixed_folder)
    assert source.kind == "folder" and source.video is None and len(source) == 8
    frames = list(source)
    assert [f.name for f in frames] == ["alpha.png", "deep.png", "gray.png", "img2.png", "img10.png"]
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    assert all(f.image.dtype == np.uint8 and f.image.ndim == 3 and f.image.shape[2] == 3 for f in frames)
    report = source.report
    assert report.frames == 5
    assert set(report.skipped) == {"broken.png", "notes.txt", "fake.jpg"}
    assert "corrupt" in report.skipped["broken.png"] and "not an image" in report.skipped["notes.txt"]
    # OpenCV's decoder already drops a PNG's alpha (as IMREAD_COLOR does): nothing to note for alpha.png
    assert report.notes == {"deep.png": ["16-bit → 8-bit (v >> 8)"], "gray.png": ["grayscale → RGB"]}
    assert "3 skipped" in report.summary()


def test_conversions_equal_the_training_pipelines_read(mixed_folder: Path) -> None:
    """Gray, 16-bit and RGBA frames are exactly what ``kpreg.data.topdown.read_image`` (IMREAD_COLOR) gives."""
    for frame in open_source(mixed_folder):
        np.testing.assert_array_equal(frame.image, read_image(mixed_folder / frame.name, 0))


def test_sixteen_bit_keeps_the_high_byte(tmp_path: Path) -> None:
    values = np.repeat(np.array([[0, 255, 256, 511, 32768, 65535]], np.uint16), 4, axis=0)  # (4, 6) gray
    cv2.imwrite(str(tmp_path / "d.png"), values)
    (frame,) = open_source(tmp_path / "d.png")
    np.testing.assert_array_equal(frame.image[0, :, 0], [0, 0, 1, 1, 128, 255])
    np.testing.assert_array_equal(frame.image[..., 0], frame.image[..., 2])  # gray in all channels


def test_four_channel_and_float_decodes() -> None:
    bgra = np.zeros((2, 3, 4), np.uint8)
    bgra[..., 0], bgra[..., 3] = 200, 7  # blue, alpha
    image, notes = to_rgb8(bgra)
    assert image.shape == (2, 3, 3) and image[0, 0].tolist() == [0, 0, 200] and notes == ["alpha channel dropped"]
    with pytest.raises(ValueError, match="float32"):
        to_rgb8(np.zeros((2, 3, 3), np.float32))


def test_float_tiff_is_skipped_with_its_reason(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "f.tiff"), np.ones((4, 4, 3), np.float32))
    cv2.imwrite(str(tmp_path / "g.png"), colour_image())
    source = open_source(tmp_path)
    assert [f.name for f in source] == ["g.png"]
    assert source.report.skipped == {"f.tiff": "float32 pixels that OpenCV cannot convert to 8-bit"}


def test_truncated_jpeg_is_kept_with_a_note(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "full.jpg"), colour_image(64, 64))
    truncate(tmp_path / "full.jpg", tmp_path / "cut.jpg", 0.6)
    source = open_source(tmp_path)
    assert [f.name for f in source] == ["cut.jpg", "full.jpg"]
    assert list(source.report.notes) == ["cut.jpg"] and "truncated" in source.report.notes["cut.jpg"][0]


def test_glob_names_are_relative_to_its_fixed_root(tmp_path: Path) -> None:
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        cv2.imwrite(str(tmp_path / sub / "x1.png"), colour_image())
    (tmp_path / "b" / "x2.txt").write_text("-")
    source = open_source(str(tmp_path / "*" / "x*"))
    assert source.kind == "glob"
    assert [f.name for f in source] == ["a/x1.png", "b/x1.png"]
    assert list(source.report.skipped) == ["b/x2.txt"]


def test_natural_order() -> None:
    assert sorted(["f10.png", "f9.png", "F1.png"], key=natural_key) == ["F1.png", "f9.png", "f10.png"]


def test_single_image(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "one.png"), colour_image())
    source = open_source(tmp_path / "one.png")
    (frame,) = list(source)
    assert source.kind == "image" and frame.name == "one.png" and frame.index == 0
    np.testing.assert_array_equal(frame.image, colour_image()[..., ::-1])  # BGR written, RGB read


@pytest.mark.parametrize("case", ["missing", "empty", "glob"])
def test_nothing_to_read_is_one_clear_error(tmp_path: Path, case: str) -> None:
    (tmp_path / "empty").mkdir()
    path = {"missing": tmp_path / "nope.png", "empty": tmp_path / "empty", "glob": str(tmp_path / "*.jpg")}[case]
    with pytest.raises(SourceError, match=str(Path(path).name).replace("*", r"\*")):
        open_source(path)


def test_folder_without_any_readable_image_fails_at_the_end_naming_the_files(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("-")
    (tmp_path / "b.jpg").write_bytes(b"\xff\xd8\xff" + b"0" * 40)  # JPEG signature, no image
    source = open_source(tmp_path)
    with pytest.raises(SourceError, match=r"none of its 2 file\(s\).*a\.txt.*b\.jpg"):
        list(source)


# ---- videos --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("fourcc", "suffix"), [("mp4v", ".mp4"), ("MJPG", ".avi")])
def test_video_frames_in_order_with_metadata(tmp_path: Path, fourcc: str, suffix: str) -> None:
    path = write_video(tmp_path / f"clip{suffix}", 12, fourcc, fps=10.0)
    source = open_source(path)
    assert source.kind == "video" and source.names is None
    assert source.video is not None
    assert (source.video.fps, source.video.frame_count, source.video.width, source.video.height) == (10.0, 12, 64, 48)
    frames = list(source)
    assert [f.index for f in frames] == list(range(12))
    assert [f.name for f in frames] == [str(i) for i in range(12)]
    assert [frame_number(f.image) for f in frames] == list(range(12))
    assert frames[0].image.shape == (48, 64, 3) and frames[0].image.dtype == np.uint8
    assert source.report.fault is None and source.report.frames == 12


def test_truncated_video_yields_its_first_frames_and_names_the_fault(tmp_path: Path) -> None:
    # AVI keeps its header up front (an MP4 from OpenCV keeps its index at the end: see the next test).
    full = write_video(tmp_path / "clip.avi", 20, "MJPG")
    cut = truncate(full, tmp_path / "cut.avi", 0.6)
    source = open_source(cut)
    frames = list(source)
    assert 0 < len(frames) < 20
    assert [frame_number(f.image) for f in frames[:-1]] == list(range(len(frames) - 1))  # the last may be partial
    fault = source.report.fault
    assert fault is not None and "cut.avi" in fault and f"stopped at frame {len(frames)} of the 20" in fault


def test_mp4_cut_before_its_index_is_a_clear_error(tmp_path: Path) -> None:
    cut = truncate(write_video(tmp_path / "clip.mp4", 10, "mp4v"), tmp_path / "cut.mp4", 0.5)
    with pytest.raises(SourceError, match="cut.mp4.*neither an image nor a video"):
        open_source(cut)


def test_breaking_out_of_a_video_stops_the_decoder(tmp_path: Path) -> None:
    source = open_source(write_video(tmp_path / "clip.avi", 20, "MJPG"), prefetch_depth=2)
    before = {t.name for t in threading.enumerate()}
    for frame in source:
        if frame.index == 3:
            break
    assert source.report.frames == 4
    assert not any(t.name.startswith("kpreg-frames") for t in threading.enumerate() if t.name not in before)


# ---- the background thread ------------------------------------------------------------------------------
def test_prefetch_stays_a_bounded_number_of_items_ahead() -> None:
    produced: list[int] = []

    def items() -> Iterator[int]:
        for i in range(1000):
            produced.append(i)
            yield i

    stream = prefetch(items, depth=3)
    assert next(stream) == 0
    deadline = time.monotonic() + 5.0
    while len(produced) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # had it not blocked, the producer would be far ahead by now
    # 1 consumed + 3 queued + 1 produced and waiting for room: memory does not grow with the stream
    assert len(produced) == 5
    stream.close()


def test_prefetch_closes_the_producer_and_reraises_its_error() -> None:
    closed = threading.Event()

    def items() -> Iterator[int]:
        try:
            yield 1
            yield 2
            raise RuntimeError("decoder failed at item 3")
        finally:
            closed.set()

    stream = prefetch(items, depth=1)
    assert next(stream) == 1 and next(stream) == 2
    with pytest.raises(RuntimeError, match="item 3"):
        next(stream)
    assert closed.is_set()

    closed.clear()
    early = prefetch(items, depth=1)
    next(early)
    early.close()  # the consumer leaves: the producer's finally runs, the thread is joined
    assert closed.is_set()
