"""Frames from a path: one image, a folder of images, a glob, or a video file (anything OpenCV reads).

``open_source(path)`` checks the path at once (a missing file, an empty folder, a glob that matches nothing
or a file OpenCV cannot open is one ``SourceError``) and returns a ``FrameSource``; iterating it yields
``Frame(index, name, image)`` with ``image`` (H, W, 3) uint8 RGB. The stream never holds more than a few
frames: decoding runs ``prefetch`` frames ahead in a background thread (``kpreg.inference.prefetch``).

Nothing is lost silently; ``FrameSource.report`` tells, once the stream has ended:

* a folder or glob entry that is not an image, or an image that does not decode, is **skipped** and
  listed with its reason (if no entry at all decodes, the end of the stream is a ``SourceError``);
* images that needed a conversion get a **note**: grayscale → RGB (the gray value in all three channels),
  16-bit → 8-bit by dropping the low byte (``v >> 8``: OpenCV's own ``IMREAD_COLOR`` conversion, which the
  training and evaluation pipeline reads images with, so that a 16-bit image gives the same crop in
  prediction as in evaluation), an alpha channel dropped, a JPEG without its end-of-image marker (decoded
  as far as it goes: OpenCV fills the rest);
* a video that stops decoding before the frame count its header announces gets a **fault** naming the
  file and the frame index where decoding stopped; the frames before it have been yielded.

Frame names and indices: for an image, its path relative to the folder (or to the glob's fixed leading
directory), ``index`` its rank in natural order (``img2`` before ``img10``); for a video, ``index`` is the
0-based frame index and ``name`` that index as text.
"""

from __future__ import annotations

import glob as globlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from kpreg.inference.images import image_size_problem
from kpreg.inference.prefetch import prefetch

SourceKind = Literal["image", "folder", "glob", "video"]
_GLOB_MAGIC = re.compile(r"[*?[]")
# Decode with the file's own channels and depth (to convert and note it ourselves) but unlike
# IMREAD_UNCHANGED still apply the EXIF orientation, as IMREAD_COLOR (the training pipeline's flag) does.
_DECODE_FLAGS = cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH
_JPEG_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif")


class SourceError(ValueError):
    """The input path cannot give frames: names the path and why."""


@dataclass(frozen=True)
class Frame:
    """One frame of the stream."""

    index: int  # video frame index, or the image's rank in the sorted listing (0-based)
    name: str  # image path relative to the folder / glob root, or the video frame index as text
    image: np.ndarray  # (H, W, 3) uint8 RGB


@dataclass(frozen=True)
class VideoInfo:
    """What the video's header says. ``frame_count`` is None where the container does not tell."""

    fps: float | None
    frame_count: int | None
    width: int
    height: int


@dataclass
class SourceReport:
    """What happened while streaming; complete once the iteration has ended."""

    frames: int = 0  # frames yielded
    skipped: dict[str, str] = field(default_factory=dict)  # name → why it was skipped
    notes: dict[str, list[str]] = field(default_factory=dict)  # name → conversions applied
    fault: str | None = None  # a video that stopped early: where and in which file

    def summary(self) -> str:
        """A few lines for the command line."""
        lines = [f"{self.frames} frame(s) read"]
        if self.skipped:
            lines.append(f"{len(self.skipped)} skipped: " + _first(f"{n} ({r})" for n, r in self.skipped.items()))
        if self.notes:
            lines.append(f"{len(self.notes)} converted: "
                         + _first(f"{n} ({', '.join(r)})" for n, r in self.notes.items()))
        if self.fault:
            lines.append(f"fault: {self.fault}")
        return "\n".join(lines)


def _first(items: Iterator[str], n: int = 5) -> str:
    listed = list(items)
    more = f", … {len(listed) - n} more" if len(listed) > n else ""
    return ", ".join(listed[:n]) + more


# ---- the events the decoding thread sends; only the consumer thread writes the report ------------------
@dataclass(frozen=True)
class _Skip:
    name: str
    reason: str


@dataclass(frozen=True)
class _Fault:
    message: str


@dataclass(frozen=True)
class _Decoded:
    frame: Frame
    notes: tuple[str, ...]


class _NotAnImage(ValueError):
    """An entry that is not a decodable image (the reason is the message)."""


# ---- images --------------------------------------------------------------------------------------------
def natural_key(name: str) -> list[int | str]:
    """Sort key putting ``img2`` before ``img10`` (digit runs compare as numbers)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def to_rgb8(decoded: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """An image as OpenCV decodes it with ``_DECODE_FLAGS`` → ((H, W, 3) uint8 RGB, conversion notes).

    The result equals ``cv2.cvtColor(cv2.imread(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)`` (what
    ``kpreg.data.topdown.read_image`` gives) for 8- and 16-bit, gray, colour and alpha images.
    """
    notes: list[str] = []
    image = decoded
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)  # (H, W[, C]) high byte: IMREAD_COLOR's 16 → 8-bit rule
        notes.append("16-bit → 8-bit (v >> 8)")
    elif image.dtype != np.uint8:
        raise _NotAnImage(f"unsupported pixel type {image.dtype}")
    if image.ndim == 2 or image.shape[2] == 1:
        notes.append("grayscale → RGB")
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB), notes
    if image.shape[2] == 4:
        notes.append("alpha channel dropped")
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB), notes
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB), notes


def read_image_file(path: Path) -> tuple[np.ndarray, list[str]]:
    """(H, W, 3) uint8 RGB and conversion notes, or ``_NotAnImage`` with the reason."""
    if not cv2.haveImageReader(str(path)):  # looks at the file's signature, not its suffix
        raise _NotAnImage("not an image OpenCV can read")
    decoded = cv2.imread(str(path), _DECODE_FLAGS)
    if decoded is None:
        raise _NotAnImage("corrupt image: it does not decode")
    extra: list[str] = []
    if decoded.dtype not in (np.uint8, np.uint16):  # float / 32-bit (TIFF, EXR…): OpenCV's own 8-bit rule
        depth = decoded.dtype
        extra.append(f"{depth} → 8-bit (OpenCV's IMREAD_COLOR conversion)")
        decoded = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if decoded is None:
            raise _NotAnImage(f"{depth} pixels that OpenCV cannot convert to 8-bit")
    problem = image_size_problem(*decoded.shape[:2])
    if problem is not None:
        raise _NotAnImage(problem)
    image, notes = to_rgb8(decoded)
    notes = extra + notes
    if path.suffix.lower() in _JPEG_SUFFIXES and not _has_jpeg_end(path):
        notes.append("JPEG without end-of-image marker: truncated? (decoded as far as it goes)")
    return image, notes


def _has_jpeg_end(path: Path) -> bool:
    """Whether the file ends with JPEG's end-of-image marker FF D9 (some writers pad with zero bytes)."""
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - 64))
        tail = f.read().rstrip(b"\x00")
    return tail.endswith(b"\xff\xd9")


# ---- the source ----------------------------------------------------------------------------------------
class FrameSource:
    """Frames of one input; see the module docstring. Build it with ``open_source``.

    Attributes: ``kind`` (image, folder, glob, video), ``path`` (the path or pattern as given), ``names``
    (the entries of an image source, known before decoding; None for a video), ``video`` (``VideoInfo`` of
    a video, else None), ``report`` (``SourceReport`` of the latest iteration).
    """

    def __init__(
        self,
        kind: SourceKind,
        path: str,
        files: list[tuple[str, Path]] | None = None,
        video: VideoInfo | None = None,
        prefetch_depth: int = 4,
    ) -> None:
        self.kind = kind
        self.path = path
        self._files = files or []
        self.names: list[str] | None = [name for name, _ in self._files] if files is not None else None
        self.video = video
        self.prefetch_depth = prefetch_depth
        self.report = SourceReport()

    def __len__(self) -> int:
        """Entries of an image source; for a video, the frame count its header announces (0 if unknown)."""
        if self.video is not None:
            return self.video.frame_count or 0
        return len(self._files)

    def __iter__(self) -> Iterator[Frame]:
        report = self.report = SourceReport()
        make = self._video_events if self.video is not None else self._image_events
        events = prefetch(make, self.prefetch_depth, name=f"kpreg-frames:{Path(self.path).name}")
        try:
            for event in events:
                if isinstance(event, _Decoded):
                    if event.notes:
                        report.notes[event.frame.name] = list(event.notes)
                    report.frames += 1
                    yield event.frame
                elif isinstance(event, _Skip):
                    report.skipped[event.name] = event.reason
                else:
                    report.fault = event.message
        finally:
            events.close()  # a consumer that stops early stops the decoding thread now, not at garbage collection
        if report.frames == 0 and self.video is None:
            raise SourceError(f"{self.path}: none of its {len(self._files)} file(s) is a readable image: "
                              + _first(f"{n} ({r})" for n, r in report.skipped.items()))

    def _image_events(self) -> Iterator[_Decoded | _Skip]:
        index = 0
        for name, path in self._files:
            try:
                image, notes = read_image_file(path)
            except _NotAnImage as err:
                yield _Skip(name, str(err))
                continue
            except OSError as err:  # unreadable file (permissions, vanished since the listing)
                yield _Skip(name, f"cannot read: {err.strerror or err}")
                continue
            yield _Decoded(Frame(index, name, image), tuple(notes))
            index += 1

    def _video_events(self) -> Iterator[_Decoded | _Fault]:
        assert self.video is not None
        capture = cv2.VideoCapture(self.path)
        index = 0
        try:
            if not capture.isOpened():  # it opened when the source was built: the file changed since
                yield _Fault(f"{self.path}: the video no longer opens")
                return
            while True:
                ok, bgr = capture.read()
                if not ok:
                    break
                image, notes = to_rgb8(bgr)  # (H, W, 3) uint8 RGB; videos are 8-bit BGR as decoded
                yield _Decoded(Frame(index, str(index), image), tuple(notes))
                index += 1
        finally:
            capture.release()
        expected = self.video.frame_count
        if expected is not None and index < expected:
            read = f"frames 0…{index - 1} were read" if index else "no frame was read"
            yield _Fault(f"{self.path}: decoding stopped at frame {index} of the {expected} frames its header "
                         f"announces (truncated or corrupt file); {read}")


def open_source(path: str | os.PathLike[str], prefetch_depth: int = 4) -> FrameSource:
    """The ``FrameSource`` of an image file, a folder of images, a glob pattern or a video file.

    Raises ``SourceError`` for a missing path, an empty folder, a glob that matches no file, or a file that
    is neither an image nor a video OpenCV can open.
    """
    text = os.fspath(path)
    p = Path(text)
    if p.is_dir():
        files = [(q.name, q) for q in p.iterdir() if q.is_file()]
        if not files:
            raise SourceError(f"{p}: the folder has no files")
        return FrameSource("folder", text, _sorted(files), prefetch_depth=prefetch_depth)
    if p.is_file():
        if cv2.haveImageReader(text):
            return FrameSource("image", text, [(p.name, p)], prefetch_depth=prefetch_depth)
        return FrameSource("video", text, video=_video_info(text), prefetch_depth=prefetch_depth)
    if _GLOB_MAGIC.search(text):
        root = _glob_root(text)
        files = [(os.path.relpath(m, root), Path(m)) for m in globlib.glob(text, recursive=True)
                 if os.path.isfile(m)]
        if not files:
            raise SourceError(f"{text}: the pattern matches no file")
        return FrameSource("glob", text, _sorted(files), prefetch_depth=prefetch_depth)
    raise SourceError(f"{text}: no such file or folder")


def _sorted(files: list[tuple[str, Path]]) -> list[tuple[str, Path]]:
    return sorted(files, key=lambda item: natural_key(item[0]))


def _glob_root(pattern: str) -> str:
    """The pattern's leading directories without wildcards (``data/*/a?.png`` → ``data``)."""
    parts = Path(pattern).parts
    fixed: list[str] = []
    for part in parts[:-1]:
        if _GLOB_MAGIC.search(part):
            break
        fixed.append(part)
    return os.path.join(*fixed) if fixed else "."


def _video_info(path: str) -> VideoInfo:
    capture = cv2.VideoCapture(path)
    try:
        if not capture.isOpened():
            raise SourceError(f"{path}: neither an image nor a video OpenCV can open (corrupt, truncated — an "
                              "MP4 cut before its index — or an unsupported format)")
        fps = capture.get(cv2.CAP_PROP_FPS)
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    finally:
        capture.release()
    problem = image_size_problem(height, width) if width > 0 and height > 0 else None
    if problem is not None:
        raise SourceError(f"{path}: its frames are {problem}")
    return VideoInfo(fps=fps if fps > 0 else None, frame_count=count if count > 0 else None,
                     width=width, height=height)
