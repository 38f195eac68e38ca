"""Small generated media for the inference tests: images in every depth / channel layout, videos."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

VIDEO_SIZE = (64, 48)  # (W, H)


def colour_image(h: int = 24, w: int = 32, seed: int = 0) -> np.ndarray:
    """(h, w, 3) uint8 BGR noise."""
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def video_frame(i: int) -> np.ndarray:
    """(H, W, 3) uint8 BGR frame ``i``: its green level is 10·i, so a decoded frame tells its index."""
    w, h = VIDEO_SIZE
    frame = np.zeros((h, w, 3), np.uint8)
    frame[..., 1] = 10 * i
    return frame


def frame_number(rgb: np.ndarray) -> int:
    """The index encoded by ``video_frame`` in a decoded (H, W, 3) RGB frame (lossy codecs: rounded)."""
    return int(round(float(rgb[..., 1].mean()) / 10.0))


def write_video(path: Path, n: int, fourcc: str, fps: float = 10.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, VIDEO_SIZE)
    assert writer.isOpened(), f"OpenCV cannot write {fourcc} here"
    for i in range(n):
        writer.write(video_frame(i))
    writer.release()
    return path


def truncate(path: Path, out: Path, fraction: float) -> Path:
    data = path.read_bytes()
    out.write_bytes(data[: int(len(data) * fraction)])
    return out
