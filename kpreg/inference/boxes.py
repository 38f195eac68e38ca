"""The person boxes of each frame: the whole frame, or a detections file (``kpreg.formats.detections`` reads
it: COCO detection JSON, a COCO file's annotations, or a per-frame CSV).

File names of the detections are matched to ``Frame.name`` (the path relative to the folder or glob root), frame
indices to ``Frame.index``.
"""

from __future__ import annotations

import numpy as np

from kpreg.formats.detections import (
    CSV_COLUMNS,
    Box,
    BoxError,
    Detections,
    DetectionsReport,
    Key,
    KeyKind,
    load_detections,
)
from kpreg.inference.sources import Frame, FrameSource


def box_problem(box: Box, height: int, width: int) -> str | None:
    """Why ``box`` cannot be cropped from a ``width`` × ``height`` image, or None: it must overlap the image (a box
    entirely outside gives a crop of black border, on which the network still predicts, with some confidence)."""
    x0, y0 = max(box.x, 0.0), max(box.y, 0.0)
    x1, y1 = min(box.x + box.w, float(width)), min(box.y + box.h, float(height))
    if x1 <= x0 or y1 <= y0:
        xywh = ", ".join(f"{v:g}" for v in box.xywh)
        return f"box [{xywh}] (x, y, w, h) does not overlap the {width}x{height} image"
    return None

__all__ = ["CSV_COLUMNS", "Box", "BoxError", "BoxSelector", "Detections", "DetectionsReport", "Key", "KeyKind",
           "box_problem", "load_detections", "whole_frame"]


OUTSIDE = "boxes that do not overlap their frame"


def whole_frame(image: np.ndarray) -> Box:
    """The box covering all of an (H, W, 3) image: edges at -0.5 and W - 0.5 in pixel-centre coordinates."""
    h, w = image.shape[:2]
    return Box(0.0, 0.0, float(w), float(h))


class BoxSelector:
    """The boxes of each frame of one source: the whole frame, or its detections.

    With detections, an image source is matched up front (its names are known before decoding) and a video
    when ``finish`` is called after the stream, with the frames actually read.
    """

    def __init__(self, source: FrameSource, detections: Detections | None = None) -> None:
        self.source = source
        self.detections = detections
        if detections is None:
            return
        video = source.video is not None
        if video and detections.key_kind != "frame":
            raise BoxError(f"{detections.report.path}: its detections name image files, but {source.path} is a "
                           "video: give a CSV with a frame column")
        if not video and detections.key_kind != "file_name":
            raise BoxError(f"{detections.report.path}: its detections name frame indices, but {source.path} is "
                           "not a video: name the image files")
        if source.names is not None:
            detections.match(source.names)

    def __call__(self, frame: Frame) -> list[Box]:
        if self.detections is None:
            return [whole_frame(frame.image)]
        boxes = self.detections.boxes(frame.index if self.detections.key_kind == "frame" else frame.name)
        kept = [b for b in boxes if box_problem(b, *frame.image.shape[:2]) is None]
        if len(kept) < len(boxes):  # dropped and counted like the other filters (the report says so)
            self.detections.report.dropped[OUTSIDE] += len(boxes) - len(kept)
            self.detections.report.kept -= len(boxes) - len(kept)
        return kept

    def finish(self) -> DetectionsReport | None:
        """The detections report, once the stream has ended (None when boxes are whole frames)."""
        if self.detections is None:
            return None
        if self.source.video is not None:
            return self.detections.match(range(self.source.report.frames))
        return self.detections.report
