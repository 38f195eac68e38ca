"""A video's predictions as one track: (T, K, 2) keypoints and (T, K) confidence, frame by frame.

``read_track`` reads a predictions table of a video as ``predict.py`` (``predictions.csv``) or DeepLabCut's
``analyze_videos`` (``<video>DLC_….csv`` / ``.h5``) write it: one row per frame, indexed by the frame number, ``x, y,
likelihood`` per keypoint. Frames are placed by their number, so a frame without a prediction (an empty row, or no
row at all) is NaN, never a shifted neighbour. Given the video's frame count, a table that does not fit that video
is refused: a predictions file of another video must not be smoothed, ranked or drawn on this one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kpreg.formats.deeplabcut import DLCFormatError, read_collected_data


class TrackError(ValueError):
    """A predictions file that is not a track of the given video: names the file and why."""


@dataclass(frozen=True, eq=False)
class Track:
    """One instance's predictions over the frames 0 … T−1 of a video."""

    keypoints: np.ndarray  # (T, K, 2) float64 x,y image pixels; NaN where nothing was predicted
    confidence: np.ndarray  # (T, K) float64; NaN where nothing was predicted
    bodyparts: tuple[str, ...]
    scorer: str

    @property
    def num_frames(self) -> int:
        return len(self.keypoints)


def read_track(path: str | Path, frame_count: int | None = None) -> Track:
    """The track in a predictions table (CSV, or ``.h5`` with pandas + tables); ``frame_count``: the video's, checked."""
    source = Path(path)
    try:
        table = read_collected_data(source)
    except DLCFormatError as err:
        raise TrackError(str(err)) from None
    if table.likelihood is None:
        raise TrackError(f"{source}: has no likelihood columns: not a predictions table (x, y, likelihood per "
                         "keypoint), perhaps a table of hand labels")
    try:
        frames = np.array([int(p) for p in table.image_paths], dtype=np.int64)  # (N,)
    except ValueError:
        bad = next(p for p in table.image_paths if not p.lstrip("-").isdigit())
        raise TrackError(f"{source}: rows are named by images ({bad!r}), not by frame numbers: not the predictions "
                         "of a video") from None
    if len(frames) and frames.min() < 0:
        raise TrackError(f"{source}: frame number {int(frames.min())} is negative")
    last = int(frames.max()) + 1 if len(frames) else 0
    rows = _row_count(source)
    t = max(last, rows)
    if frame_count is not None and t != frame_count:
        raise TrackError(f"{source}: has {t} frame(s) but the video has {frame_count}: these are the predictions of "
                         "another video (or of a part of it); predict this video again")
    xy = np.full((t, table.num_keypoints, 2), np.nan)
    conf = np.full((t, table.num_keypoints), np.nan)
    xy[frames] = np.where(table.labelled[..., None], table.keypoints, np.nan)
    conf[frames] = table.likelihood
    return Track(xy, conf, table.bodyparts, table.scorer)


def _row_count(source: Path) -> int:
    """Rows of a table, empty ones included (a frame without a prediction is an empty row, not a missing frame)."""
    if source.suffix.lower() in (".h5", ".hdf5", ".hdf"):
        import pandas as pd  # read_collected_data has read this file with pandas already

        return len(pd.read_hdf(source))
    with open(source, encoding="utf-8-sig") as f:
        return max(sum(1 for line in f if line.strip()) - 3, 0)
