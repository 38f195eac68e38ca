import numpy as np
import pytest

from kpreg.formats.deeplabcut import DLCTableWriter, write_collected_data
from kpreg.formats.deeplabcut_h5 import write_analysis_h5
from kpreg.inference.tracks import TrackError, read_track

NAMES = ("snout", "tail")


def _predictions(path, rows: int = 5, empty: tuple[int, ...] = (2, 4)) -> tuple[np.ndarray, np.ndarray]:
    """A predictions table as predict.py writes it: frame-number rows, x, y, likelihood; ``empty`` rows blank."""
    xy = np.arange(rows * 4, dtype=float).reshape(rows, 2, 2) + 0.25
    conf = np.linspace(0.1, 0.9, rows * 2).reshape(rows, 2)
    with DLCTableWriter(path, "kpreg_test", NAMES) as table:
        for f in range(rows):
            if f in empty:
                table.add(f, np.full((2, 2), np.nan), np.full(2, np.nan))
            else:
                table.add(f, xy[f], conf[f])
    return xy, conf


def test_frames_are_placed_by_number_and_empty_rows_stay_empty(tmp_path) -> None:
    xy, conf = _predictions(tmp_path / "p.csv")
    track = read_track(tmp_path / "p.csv", frame_count=5)
    assert track.num_frames == 5 and track.bodyparts == NAMES and track.scorer == "kpreg_test"
    keep = [0, 1, 3]
    np.testing.assert_array_equal(track.keypoints[keep], xy[keep])
    np.testing.assert_array_equal(track.confidence[keep], conf[keep])
    assert np.isnan(track.keypoints[[2, 4]]).all() and np.isnan(track.confidence[[2, 4]]).all()


def test_the_h5_twin_reads_the_same(tmp_path) -> None:
    pytest.importorskip("tables")
    xy, conf = _predictions(tmp_path / "p.csv", empty=(4,))
    xy[4], conf[4] = np.nan, np.nan
    write_analysis_h5(tmp_path / "p.h5", "kpreg_test", NAMES, xy, conf)
    a, b = read_track(tmp_path / "p.csv", 5), read_track(tmp_path / "p.h5", 5)
    np.testing.assert_array_equal(a.keypoints, b.keypoints)
    np.testing.assert_array_equal(a.confidence, b.confidence)


def test_a_table_of_another_video_is_refused(tmp_path) -> None:
    _predictions(tmp_path / "p.csv", rows=5)
    with pytest.raises(TrackError, match=r"has 5 frame\(s\) but the video has 7: these are the predictions of another"):
        read_track(tmp_path / "p.csv", frame_count=7)


def test_hand_labels_and_image_rows_are_not_tracks(tmp_path) -> None:
    write_collected_data(tmp_path / "labels.csv", "me", NAMES, ["labeled-data/v/img0.png"], np.zeros((1, 2, 2)))
    with pytest.raises(TrackError, match="no likelihood columns"):
        read_track(tmp_path / "labels.csv")
    write_collected_data(tmp_path / "images.csv", "me", NAMES, ["img0.png"], np.zeros((1, 2, 2)),
                         likelihood=np.ones((1, 2)))
    with pytest.raises(TrackError, match="named by images"):
        read_track(tmp_path / "images.csv")
