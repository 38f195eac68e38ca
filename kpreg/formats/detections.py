"""Detections files: the person boxes of each frame, read for ``predict.py --detections`` (``load_detections``)
and for the COCO datamodule's ``bbox_file`` (``read_coco_detections``, the entries of a COCO detection JSON).

Boxes are COCO ``[x, y, w, h]``: top-left *edge* and size, original pixels. Three layouts:

* **COCO detection JSON**, a list ``[{image_id, category_id, bbox, score}]`` (what a detector writes for
  COCO) keyed by ``file_name`` in each entry, or by ``image_id`` with ``images_file`` — any COCO JSON whose
  ``images`` list maps ids to file names (the annotation file of the same images);
* a COCO file with its own ``images`` and ``annotations`` (e.g. ground-truth boxes; an annotation without a
  ``score`` scores 1);
* a **CSV** with a header ``frame, x, y, w, h, score`` (more columns are ignored): one row per box, ``frame``
  the 0-based frame index of a video (or an image's file name, for a folder).

Boxes scoring below ``score_thr``, of another category than ``category_id`` (when given) or with a zero
size are dropped and counted. Several boxes of one frame are several instances. ``Detections.match`` compares
the frame keys with those of the input and counts the detections naming frames that are not in it; if none
matches at all that is one ``BoxError``.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from kpreg.formats.coco import read_images
from kpreg.formats.files import read_json

Key = str | int
KeyKind = Literal["file_name", "frame"]
CSV_COLUMNS = ("frame", "x", "y", "w", "h", "score")


class BoxError(ValueError):
    """A detections file that cannot be used: names the file and the entry or line."""


@dataclass(frozen=True)
class Box:
    """One instance to crop: a COCO box in original pixels and its detector score."""

    x: float  # left edge (the first pixel's centre is x + 0.5)
    y: float  # top edge
    w: float
    h: float
    score: float = 1.0
    image_id: int | None = None  # the detections file's image id, kept for the results file

    @property
    def xywh(self) -> tuple[float, float, float, float]:
        return (self.x, self.y, self.w, self.h)


@dataclass
class DetectionsReport:
    """What was read from a detections file and how it matched the input."""

    path: str
    entries: int = 0  # entries (JSON) or rows (CSV) read
    kept: int = 0  # boxes kept after the filters
    dropped: Counter[str] = field(default_factory=Counter)  # reason → count
    not_in_input: dict[Key, int] = field(default_factory=dict)  # frame key → boxes naming it

    def summary(self) -> str:
        lines = [f"{self.path}: {self.kept} of {self.entries} detection(s) kept"]
        lines += [f"  {n} dropped: {reason}" for reason, n in sorted(self.dropped.items())]
        if self.not_in_input:
            keys = list(self.not_in_input)
            more = f", … {len(keys) - 5} more" if len(keys) > 5 else ""
            lines.append(f"  {sum(self.not_in_input.values())} name frames that are not in the input: "
                         + ", ".join(map(str, keys[:5])) + more)
        return "\n".join(lines)


class Detections:
    """Boxes per frame key, read by ``load_detections``."""

    def __init__(self, by_key: dict[Key, list[Box]], key_kind: KeyKind, report: DetectionsReport) -> None:
        self.by_key = by_key
        self.key_kind = key_kind
        self.report = report

    def match(self, keys: Iterable[Key]) -> DetectionsReport:
        """Count the detections whose frame is not among ``keys`` (the input's); ``BoxError`` if none is."""
        present = set(keys)
        self.report.not_in_input = {k: len(v) for k, v in self.by_key.items() if k not in present}
        if self.by_key and len(self.report.not_in_input) == len(self.by_key):
            sample = ", ".join(map(repr, list(self.by_key)[:3]))
            seen = ", ".join(map(repr, list(present)[:3])) or "none"
            raise BoxError(f"{self.report.path}: none of its detections names a frame of the input (it names "
                           f"{sample} …; the input has {seen} …)")
        return self.report

    def boxes(self, key: Key) -> list[Box]:
        return self.by_key.get(key, [])


def load_detections(
    path: str | Path,
    score_thr: float = 0.0,
    category_id: int | None = None,
    images_file: str | Path | None = None,
) -> Detections:
    """Read a COCO detection JSON or a per-frame CSV (by suffix); see the module docstring."""
    path = Path(path)
    if not path.is_file():
        raise BoxError(f"detections file not found: {path}")
    if path.suffix.lower() == ".csv":
        return _load_csv(path, score_thr)
    if path.suffix.lower() == ".json":
        return _load_json(path, score_thr, category_id, images_file)
    raise BoxError(f"{path}: a detections file is .json (COCO) or .csv (frame, x, y, w, h, score)")


# ---- JSON ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Detection:
    """One entry of a COCO detection JSON, checked: the image it names, its category, its box and score."""

    entry: int  # position in the file, for messages
    image_id: int | None  # None where the entry names a file instead
    file_name: str | None
    category_id: Any
    box: tuple[float, float, float, float]  # x, y, w, h: top-left edge and size, original pixels (finite)
    score: float


def read_coco_detections(
    path: str | Path, what: str = "detections file", error: type[ValueError] = BoxError
) -> tuple[list[Detection], dict[int, str] | None]:
    """The entries of a COCO detection JSON (a list) or of a COCO file's ``annotations`` (an annotation without a
    ``score`` scores 1), each checked (an image id or file name, a score, four finite box numbers), and, for a COCO
    file, its ``images`` map id → file name (else None). ``error`` is the class raised, naming the file and entry."""
    data = read_json(path, what, error)
    images: dict[int, str] | None = None
    default_score: float | None = None
    if isinstance(data, dict):
        if not isinstance(data.get("annotations"), list) or not isinstance(data.get("images"), list):
            raise error(f"{path}: a COCO JSON object needs 'images' and 'annotations' lists")
        entries, images, default_score = data["annotations"], _image_names(data, Path(path), error), 1.0
    elif isinstance(data, list):
        entries = data
    else:
        raise error(f"{path}: expected a JSON list of detections, got {type(data).__name__}")
    out: list[Detection] = []
    for n, det in enumerate(entries):
        if not isinstance(det, dict):
            raise error(f"{path}: entry {n} is not an object")
        if "file_name" not in det and "image_id" not in det:
            raise error(f"{path}: entry {n} has neither file_name nor image_id")
        image_id = det.get("image_id")
        if image_id is not None and (not isinstance(image_id, int) or isinstance(image_id, bool)):
            raise error(f"{path}: entry {n} has image_id {image_id!r}; COCO image ids are integers")
        score = _number(det.get("score", default_score), path, f"entry {n} score", error)
        box = _box(det.get("bbox"), path, f"entry {n}", error)
        file_name = str(det["file_name"]) if "file_name" in det else None
        out.append(Detection(n, image_id, file_name, det.get("category_id"), box, score))
    return out, images


def _load_json(path: Path, score_thr: float, category_id: int | None, images_file: str | Path | None) -> Detections:
    entries, id_to_name = read_coco_detections(path)
    if images_file is not None:
        id_to_name = _image_names(read_json(images_file, "images file", BoxError), Path(images_file))
    report = DetectionsReport(str(path), entries=len(entries))
    by_key: dict[Key, list[Box]] = {}
    for det in entries:
        if det.file_name is not None:
            key = det.file_name
        elif id_to_name is None:
            raise BoxError(f"{path}: entry {det.entry} names image_id {det.image_id!r} but no file: pass "
                           "images_file (a COCO JSON whose 'images' list maps ids to file names)")
        elif det.image_id not in id_to_name:
            raise BoxError(f"{path}: entry {det.entry} has image_id {det.image_id!r}, which the images list lacks")
        else:
            key = id_to_name[det.image_id]  # type: ignore[index]
        if category_id is not None and det.category_id != category_id:
            report.dropped[f"of another category than {category_id}"] += 1
            continue
        _keep(by_key, key, det.box, det.score, det.image_id, score_thr, report)
    return Detections(by_key, "file_name", report)


def _image_names(data: Any, path: Path, error: type[ValueError] = BoxError) -> dict[int, str]:
    """image id → file name, from the ``images`` list of a COCO file."""
    return {i: img.file_name for i, img in read_images(data, path, error).items()}


# ---- CSV -----------------------------------------------------------------------------------------------
def _load_csv(path: Path, score_thr: float) -> Detections:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        header = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in CSV_COLUMNS if c not in header]
        if missing:
            raise BoxError(f"{path}: the header lacks {missing} (expected {', '.join(CSV_COLUMNS)})")
        reader.fieldnames = header
        rows = [(reader.line_num, row) for row in reader]
    frame_keys = all(_is_int(row["frame"]) for _, row in rows)
    report = DetectionsReport(str(path), entries=len(rows))
    by_key: dict[Key, list[Box]] = {}
    for line, row in rows:
        where = f"line {line}"
        key: Key = int(row["frame"]) if frame_keys else row["frame"].strip()
        if frame_keys and int(key) < 0:
            raise BoxError(f"{path}: {where}: negative frame index {key}")
        box = _box([row[c] for c in ("x", "y", "w", "h")], path, where)
        _keep(by_key, key, box, _number(row["score"], path, f"{where} score"), None, score_thr, report)
    return Detections(by_key, "frame" if frame_keys else "file_name", report)


def _is_int(text: str | None) -> bool:
    try:
        int(str(text).strip())
        return True
    except ValueError:
        return False


# ---- shared --------------------------------------------------------------------------------------------
def _number(value: Any, path: str | Path, where: str, error: type[ValueError] = BoxError) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise error(f"{path}: {where} is not a number: {value!r}") from None


def _box(value: Any, path: str | Path, where: str, error: type[ValueError] = BoxError) -> tuple[float, float, float, float]:
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 4:
        raise error(f"{path}: {where}: bbox must be four numbers [x, y, w, h], got {value!r}")
    x, y, w, h = (_number(v, path, f"{where} bbox", error) for v in value)
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        raise error(f"{path}: {where}: bbox is not finite: {value!r}")
    return x, y, w, h


def _keep(
    by_key: dict[Key, list[Box]],
    key: Key,
    xywh: tuple[float, float, float, float],
    score: float,
    image_id: int | None,
    score_thr: float,
    report: DetectionsReport,
) -> None:
    if not score >= score_thr:  # also drops NaN scores
        report.dropped[f"scoring below score_thr={score_thr}"] += 1
    elif xywh[2] <= 0 or xywh[3] <= 0:
        report.dropped["with a zero or negative size box"] += 1
    else:
        by_key.setdefault(key, []).append(Box(*xywh, score=score, image_id=image_id))
        report.kept += 1
