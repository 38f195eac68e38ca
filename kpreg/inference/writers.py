"""Outputs that grow with the input, written as they come: an MP4 of drawn frames, a predictions file.

``VideoWriter``: OpenCV's ``VideoWriter`` with the ``mp4v`` fourcc (MPEG-4 Part 2 in an MP4 container).
It is the MP4 codec that every OpenCV wheel can write: the pip wheels' FFmpeg has no H.264 encoder
(``avc1`` fails to open), so ``mp4v`` is the default; players that need H.264 can take the file through
ffmpeg. The frame size is taken from the first frame; every later frame must have it.

``PredictionsWriter``: ``predictions.json`` (``kpreg.formats.predictions``, the schema ``evaluate.py`` writes too),
appended instance by instance; with ``min_confidence`` (DeepLabCut's ``pcutoff``, ``kpreg.inference.filtering``) a
keypoint below it is written as COCO's "absent" triplet ``0, 0, 0`` (what every COCO reader understands; OKS counts
it as missed); the instance ``score`` is the one given (computed from all keypoints).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import cv2
import numpy as np

from kpreg.formats import predictions
from kpreg.formats.predictions import COORD_DECIMALS, SCORE_DECIMALS
from kpreg.inference.filtering import confident

__all__ = ["MP4_FOURCC", "COORD_DECIMALS", "SCORE_DECIMALS", "WriterError", "VideoWriter", "PredictionsWriter"]

MP4_FOURCC = "mp4v"


class WriterError(ValueError):
    """An output that cannot be written as asked: names the file."""


class VideoWriter:
    """Streams (H, W, 3) uint8 RGB frames into a video file (``mp4v`` unless told otherwise)."""

    def __init__(self, path: str | os.PathLike[str], fps: float, fourcc: str = MP4_FOURCC) -> None:
        if not (math.isfinite(fps) and fps > 0):
            raise WriterError(f"{path}: the video's fps must be a positive number, got {fps}")
        if len(fourcc) != 4:
            raise WriterError(f"{path}: a fourcc has four characters, got {fourcc!r}")
        self.path = Path(path)
        self.fps = float(fps)
        self.fourcc = fourcc
        self.frames = 0
        self._size: tuple[int, int] | None = None  # (W, H)
        self._writer: cv2.VideoWriter | None = None

    def write(self, frame: np.ndarray) -> None:
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise WriterError(f"{self.path}: frames are (H, W, 3) uint8 RGB, got {frame.dtype} {frame.shape}")
        size = (frame.shape[1], frame.shape[0])
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*self.fourcc), self.fps, size)
            if not self._writer.isOpened():
                self._writer = None
                raise WriterError(f"{self.path}: OpenCV cannot write a '{self.fourcc}' video here "
                                  f"(use '{MP4_FOURCC}' for .mp4, 'MJPG' for .avi)")
            self._size = size
        elif size != self._size:
            raise WriterError(f"{self.path}: frame {self.frames} is {size[0]}x{size[1]}, but the video is "
                              f"{self._size[0]}x{self._size[1]}")  # type: ignore[index]
        self._writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> None:
        """Finish the file (an MP4's index is written here). Idempotent."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PredictionsWriter(predictions.PredictionsWriter):
    """``kpreg.formats.predictions.PredictionsWriter`` that blanks the keypoints below ``min_confidence``."""

    def __init__(self, path: str | os.PathLike[str], category_id: int = 1, min_confidence: float | None = None) -> None:
        super().__init__(path, category_id)
        self.min_confidence = min_confidence

    def add(
        self,
        image_id: int,
        keypoints: np.ndarray,
        confidence: np.ndarray,
        score: float,
        file_name: str,
        frame_index: int,
        index: int | None = None,
        present: np.ndarray | None = None,
    ) -> None:
        """One instance: keypoints (K, 2) x,y original pixels, confidence (K,), its instance score."""
        if present is None and self.min_confidence is not None:
            present = confident(confidence, self.min_confidence)  # (K,)
        super().add(image_id, keypoints, confidence, score, file_name, frame_index, index, present)
