"""``predictions.json``: the one predictions file of ``evaluate.py`` and ``predict.py``.

A JSON list, one object per predicted instance, that is a COCO keypoint results file (pycocotools' ``loadRes`` and
``evaluate.py score`` read it) with three more fields saying where each instance comes from::

    [{"image_id": 7, "category_id": 1, "keypoints": [x, y, confidence] * K, "score": 0.93,
      "file_name": "img0042.png", "frame_index": 3, "index": 5}, ...]

* ``keypoints``: x, y in original-image pixels, 0-based pixel centres, unshifted (kpreg's convention and COCO's
  ground truth), rounded to 1e-4 px; the keypoint's confidence (calibrated P(correct) where the model has a map).
  A keypoint written as ``0, 0, 0`` is COCO's "absent" (``predict.py --filter-output``).
* ``score``: the instance score: box score × mean keypoint confidence above 0.2 (``kpreg.formats.oks``;
  ``evaluate.py`` takes the dataset's ``kp_score_thr``).
* ``image_id``: the ground truth's image id where there is one (COCO files, ``--images-file``, a DeepLabCut
  project's frames), else ``frame_index``.
* ``file_name``: the image, as the dataset or the input names it (relative to its images folder or project; a
  video's file name); empty for images that are not files (synthetic data).
* ``frame_index``: the image's 0-based position in the input: a video's frame number, a folder's n-th image, the
  n-th image of the evaluated split.
* ``index``: the instance's 0-based number: its sample in the evaluated split (``evaluate.py``: one sample per
  annotated person or animal), its position in the file (``predict.py``).

``PredictionsWriter`` appends instances as they come (a long video needs no memory; each is written when
predicted): entries go to ``<path>.partial``, a valid JSON list after every ``close``, renamed to ``path`` on a
normal end, so a file under the final name is always complete. ``write_predictions`` writes arrays through it;
``read_predictions`` reads a file back into arrays, checking every entry.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np

from kpreg.formats.files import FormatError, read_json

__all__ = ["FIELDS", "COORD_DECIMALS", "SCORE_DECIMALS", "Predictions", "PredictionsWriter", "write_predictions",
           "read_predictions"]

FIELDS: tuple[str, ...] = ("image_id", "category_id", "keypoints", "score", "file_name", "frame_index", "index")
COORD_DECIMALS = 4
SCORE_DECIMALS = 6


class PredictionsWriter:
    """Appends instances to a ``predictions.json`` as they are predicted; see the module docstring.

    Args:
        path: the file to write (folders are created; ``<path>.partial`` until ``close``).
        category_id: the COCO category of every instance.
    """

    def __init__(self, path: str | os.PathLike[str], category_id: int = 1) -> None:
        self.path = Path(path)
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
        index: int | None = None,
        present: np.ndarray | None = None,
    ) -> None:
        """One instance: keypoints (K, 2) x,y original pixels, confidence (K,), its instance score; ``index``
        defaults to the instance's position in the file; ``present`` (K,) bool: False keypoints are written as
        COCO's absent ``0, 0, 0``."""
        if self._file is None:
            raise FormatError(f"{self.path}: the writer is closed")
        xy = np.asarray(keypoints, dtype=np.float64)  # (K, 2) original pixels
        conf = np.asarray(confidence, dtype=np.float64)  # (K,)
        where = f"{self.path}: {file_name} frame {frame_index}"
        if xy.ndim != 2 or xy.shape[1] != 2 or conf.shape != (len(xy),):
            raise FormatError(f"{where}: keypoints must be (K, 2) and confidence (K,), got {xy.shape}, {conf.shape}")
        if not (np.isfinite(xy).all() and np.isfinite(conf).all() and math.isfinite(score)):
            raise FormatError(f"{where}: NaN or infinite prediction")
        triplets = np.concatenate([xy.round(COORD_DECIMALS), conf.round(SCORE_DECIMALS)[:, None]], axis=1)  # (K, 3)
        if present is not None:
            triplets[~np.asarray(present, dtype=bool)] = 0.0  # COCO's "absent" keypoint
        entry = {
            "image_id": int(image_id),
            "category_id": self.category_id,
            "keypoints": triplets.reshape(-1).tolist(),
            "score": round(float(score), SCORE_DECIMALS),
            "file_name": str(file_name),
            "frame_index": int(frame_index),
            "index": self.count if index is None else int(index),
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


def write_predictions(
    path: str | os.PathLike[str],
    keypoints: np.ndarray,
    confidence: np.ndarray,
    scores: np.ndarray,
    image_ids: Sequence[int] | np.ndarray,
    file_names: Sequence[str],
    frame_indices: Sequence[int] | np.ndarray,
    indices: Sequence[int] | np.ndarray,
    category_id: int = 1,
) -> Path:
    """Write N instances: keypoints (N, K, 2) x,y original pixels, confidence (N, K), scores (N,) and the (N,)
    fields of the module docstring. Returns the path."""
    xy = np.asarray(keypoints, dtype=np.float64)  # (N, K, 2)
    n = len(xy)
    columns = {"confidence": confidence, "scores": scores, "image_ids": image_ids, "file_names": file_names,
               "frame_indices": frame_indices, "indices": indices}
    bad = {name: len(v) for name, v in columns.items() if len(v) != n}
    if bad:
        raise FormatError(f"{path}: {n} instances, but the lengths of {bad}")
    with PredictionsWriter(path, category_id) as writer:
        for i in range(n):
            writer.add(int(image_ids[i]), xy[i], confidence[i], float(scores[i]), file_names[i],
                       int(frame_indices[i]), int(indices[i]))
    return writer.path


@dataclass(frozen=True, eq=False)  # eq=False: arrays have no single truth value
class Predictions:
    """A ``predictions.json`` read back, one row per instance in file order."""

    keypoints: np.ndarray  # (N, K, 2) float64 x,y original pixels
    confidence: np.ndarray  # (N, K) float64
    score: np.ndarray  # (N,) float64 instance scores
    image_id: np.ndarray  # (N,) int64
    category_id: np.ndarray  # (N,) int64
    file_name: tuple[str, ...]  # (N,)
    frame_index: np.ndarray  # (N,) int64
    index: np.ndarray  # (N,) int64

    def __len__(self) -> int:
        return len(self.file_name)

    @property
    def num_keypoints(self) -> int:
        return int(self.keypoints.shape[1])


def _integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def read_predictions(path: str | os.PathLike[str]) -> Predictions:
    """Read a ``predictions.json``; a ``FormatError`` names the file and the entry of anything off the schema."""
    data = read_json(path, "predictions file")
    if not isinstance(data, list):
        raise FormatError(f"{path}: a predictions file holds a JSON list of instances, got {type(data).__name__}")
    k: int | None = None
    triplets, scores, ids, categories, names, frames, indices = [], [], [], [], [], [], []
    for n, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise FormatError(f"{path}: entry {n} is not an object")
        missing = [f for f in FIELDS if f not in entry]
        if missing:
            raise FormatError(f"{path}: entry {n} lacks {missing} (a predictions file has {', '.join(FIELDS)})")
        for name in ("image_id", "category_id", "frame_index", "index"):
            if not _integer(entry[name]):
                raise FormatError(f"{path}: entry {n}: {name} must be an integer, got {entry[name]!r}")
        if not isinstance(entry["file_name"], str):
            raise FormatError(f"{path}: entry {n}: file_name must be a string, got {entry['file_name']!r}")
        values = entry["keypoints"]
        if (not isinstance(values, list) or len(values) % 3 or not values
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)):
            raise FormatError(f"{path}: entry {n}: keypoints must be a non-empty list of numbers [x, y, confidence] "
                              "per keypoint")
        if k is None:
            k = len(values) // 3
        elif len(values) != 3 * k:
            raise FormatError(f"{path}: entry {n} has {len(values) // 3} keypoints, entry 0 has {k}")
        score = entry["score"]
        if not (isinstance(score, (int, float)) and not isinstance(score, bool)):
            raise FormatError(f"{path}: entry {n}: score must be a number, got {score!r}")
        if not (all(math.isfinite(v) for v in values) and math.isfinite(score)):
            raise FormatError(f"{path}: entry {n} (index {entry['index']}) has NaN or infinite values")
        triplets.append(values)
        scores.append(score)
        ids.append(entry["image_id"])
        categories.append(entry["category_id"])
        names.append(entry["file_name"])
        frames.append(entry["frame_index"])
        indices.append(entry["index"])
    kpts = np.array(triplets, dtype=np.float64).reshape(len(data), k or 0, 3)  # (N, K, 3) x, y, confidence
    return Predictions(
        keypoints=kpts[..., :2],
        confidence=kpts[..., 2],
        score=np.array(scores, dtype=np.float64),
        image_id=np.array(ids, dtype=np.int64),
        category_id=np.array(categories, dtype=np.int64),
        file_name=tuple(names),
        frame_index=np.array(frames, dtype=np.int64),
        index=np.array(indices, dtype=np.int64),
    )
