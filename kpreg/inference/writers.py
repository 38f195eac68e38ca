"""Outputs that grow with the input, written as they come: an MP4 of drawn frames, a predictions file.

``VideoWriter``: OpenCV's ``VideoWriter`` with the ``mp4v`` fourcc (MPEG-4 Part 2 in an MP4 container).
It is the MP4 codec that every OpenCV wheel can write: the pip wheels' FFmpeg has no H.264 encoder
(``avc1`` fails to open), so ``mp4v`` is the default; players that need H.264 can take the file through
ffmpeg. The frame size is taken from the first frame; every later frame must have it.

``PredictionsWriter``: COCO keypoint results plus where each instance came from::

    [{"image_id", "category_id", "keypoints": [x, y, score] * K, "score", "file_name", "frame_index"}, ...]

with x, y in original-image pixels, 0-based pixel centres, unshifted (kpreg's convention and COCO's
ground truth: ``kpreg.formats.coco.write_results_json`` writes the same), rounded to 1e-4 px, scores to
1e-6. With ``min_confidence`` (DeepLabCut's ``pcutoff``, ``kpreg.inference.filtering``) a keypoint below it is
written as COCO's "absent" triplet ``0, 0, 0`` (what every COCO reader understands; OKS counts it as missed);
the instance ``score`` is the one given (computed from all keypoints). It is written **incrementally**: each instance is appended as it is predicted, so memory does not
grow with a long video, and a crash loses nothing already predicted. The entries go to ``<path>.partial``,
a valid JSON list after every ``close``; only a normal end renames it to ``path``, so a file under the
final name is always complete, and an interrupted run leaves ``<path>.partial`` with what it did.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

from kpreg.inference.filtering import confident

MP4_FOURCC = "mp4v"
COORD_DECIMALS = 4
SCORE_DECIMALS = 6


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


class PredictionsWriter:
    """Appends instances to ``predictions.json`` as they are predicted; see the module docstring."""

    def __init__(self, path: str | os.PathLike[str], category_id: int = 1, min_confidence: float | None = None) -> None:
        self.path = Path(path)
        self.min_confidence = min_confidence
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.category_id = int(category_id)
        self.count = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.partial, "w")  # noqa: SIM115 - closed by close() / __exit__
        self._file.write("[")

    def add(
        self,
        image_id: int,
        keypoints: np.ndarray,
        confidence: np.ndarray,
        score: float,
        file_name: str,
        frame_index: int,
    ) -> None:
        """One instance: keypoints (K, 2) x,y original pixels, confidence (K,), its instance score."""
        if self._file is None:
            raise WriterError(f"{self.path}: the writer is closed")
        xy = np.asarray(keypoints, dtype=np.float64)  # (K, 2) original pixels
        conf = np.asarray(confidence, dtype=np.float64)  # (K,)
        where = f"{self.path}: {file_name} frame {frame_index}"
        if xy.ndim != 2 or xy.shape[1] != 2 or conf.shape != (len(xy),):
            raise WriterError(f"{where}: keypoints must be (K, 2) and confidence (K,), got {xy.shape}, {conf.shape}")
        if not (np.isfinite(xy).all() and np.isfinite(conf).all() and math.isfinite(score)):
            raise WriterError(f"{where}: NaN or infinite prediction")
        triplets = np.concatenate([xy.round(COORD_DECIMALS), conf.round(SCORE_DECIMALS)[:, None]], axis=1)  # (K, 3)
        if self.min_confidence is not None:
            triplets[~confident(conf, self.min_confidence)] = 0.0  # COCO's "absent" keypoint
        entry = {
            "image_id": int(image_id),
            "category_id": self.category_id,
            "keypoints": triplets.reshape(-1).tolist(),
            "score": round(float(score), SCORE_DECIMALS),
            "file_name": str(file_name),
            "frame_index": int(frame_index),
        }
        self._file.write(("," if self.count else "") + "\n" + json.dumps(entry, allow_nan=False))
        self.count += 1

    def close(self, complete: bool = True) -> Path:
        """End the JSON list; if ``complete``, move it to its final name. Returns where the file is."""
        if self._file is not None:
            self._file.write("\n]\n")
            self._file.close()
            self._file = None
            if complete:
                os.replace(self.partial, self.path)
        return self.path if not self.partial.exists() else self.partial

    def __enter__(self) -> PredictionsWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close(complete=exc_type is None)
