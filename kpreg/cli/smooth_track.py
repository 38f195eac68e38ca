"""``predict.py --smooth``: a video's predictions table smoothed over time, written beside it, and drawn.

The track is read back from the table ``predict.py`` has just written (or from ``--predictions FILE``) by
``kpreg.inference.tracks.read_track``, which places rows by frame number and refuses a table of another video (its
frame count differs from the video's). ``kpreg.inference.smoothing`` smooths it; the result is written as
``predictions_smoothed.csv`` in DeepLabCut's analysis layout (the ``.h5`` twin too where pandas and PyTables are
installed). Its likelihood column is the prediction's confidence, unchanged: a gap the smoother bridged keeps the
low confidence it had, so DeepLabCut's ``pcutoff`` and kpreg's ``--min-confidence`` still tell it apart. The drawn
video of the smoothed track (``<video>_smoothed.mp4``) shows such keypoints as hollow rings, with an optional trail
of the last frames and ``legend.png`` naming the colours.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from kpreg.formats.deeplabcut import DLCTableWriter
from kpreg.inference.render import draw_legend, draw_predictions
from kpreg.inference.smoothing import Smoothed, smooth
from kpreg.inference.sources import FrameSource
from kpreg.inference.tracks import Track
from kpreg.inference.writers import VideoWriter

SMOOTHED_CSV = "predictions_smoothed.csv"
DEFAULT_GATE = 0.1  # below it a keypoint is a gap: low, as calibrated P(correct) is often < 0.5 on a limb that is right


@dataclass(frozen=True)
class SmoothingSettings:
    method: str  # median | kalman
    gate: float  # confidence below which a keypoint is a gap
    window: int  # the median's frames


def smooth_track(track: Track, settings: SmoothingSettings, ensemble_variance: np.ndarray | None = None) -> Smoothed:
    """The track (T, K) smoothed; ``ensemble_variance`` (T, K) px² adds to the Kalman observation noise."""
    conf = np.nan_to_num(track.confidence, nan=0.0)  # (T, K): a frame without a prediction is a gap
    variance = None if ensemble_variance is None else np.nan_to_num(ensemble_variance, nan=0.0)  # (T, K) px²
    return smooth(settings.method, track.keypoints, conf, settings.gate, settings.window,
                  ensemble_variance=variance)


def write_smoothed(out_dir: Path, track: Track, smoothed: Smoothed) -> list[Path]:
    """``predictions_smoothed.csv`` (+ ``.h5`` where pandas and PyTables are installed) → the paths written."""
    path = out_dir / SMOOTHED_CSV
    with DLCTableWriter(path, track.scorer, track.bodyparts) as table:
        for t in range(track.num_frames):
            table.add(t, smoothed.keypoints[t], track.confidence[t])
    written = [path]
    try:
        import pandas  # noqa: F401
        import tables  # noqa: F401
    except ImportError:
        return written
    from kpreg.formats.deeplabcut_h5 import write_analysis_h5

    written.append(write_analysis_h5(path.with_suffix(".h5"), track.scorer, track.bodyparts, smoothed.keypoints,
                                     track.confidence))
    return written


def draw_smoothed(source: FrameSource, out_path: Path, fps: float, track: Track, smoothed: Smoothed,
                  skeleton: tuple[tuple[int, int], ...], min_confidence: float, colormap: str, trail: int) -> Path:
    """The smoothed track drawn on the video's frames (a second pass over the video) and ``legend.png`` beside it."""
    conf = np.where(smoothed.observed, np.nan_to_num(track.confidence, nan=0.0), 0.0)  # (T, K): bridged → hollow
    writer = VideoWriter(out_path, fps)
    try:
        for frame in source:
            t = frame.index
            if t >= track.num_frames:
                break
            history = None
            if trail > 0 and t > 0:
                history = smoothed.keypoints[max(0, t - trail):t][:, None]  # (L, 1, K, 2) oldest first
            image = draw_predictions(frame.image, smoothed.keypoints[t][None], conf[t][None], skeleton,
                                     min_confidence, colormap=colormap, low_confidence="hollow", trail=history)
            writer.write(image)
    finally:
        writer.close()
    legend = draw_legend(track.bodyparts, colormap)
    cv2.imwrite(str(out_path.parent / "legend.png"), cv2.cvtColor(legend, cv2.COLOR_RGB2BGR))
    return out_path
