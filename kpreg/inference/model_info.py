"""What a runtime needs to know about a model besides its network: ``ModelInfo``.

The keypoint names, skeleton, left/right pairs, input size, input normalisation, whether the flip test is in
use, and the confidence calibration. It is read from a checkpoint's ``checkpoint["kpreg"]`` record
(``KeypointModule.describe``) or from an exported file's metadata, and written into exported files
(``to_metadata``), so that ``predict.py --backend onnxruntime`` needs nothing but the file.

Metadata keys (all values are JSON text), besides those ``kpreg.inference.export.default_metadata`` writes
(``kpreg.input``, ``kpreg.mean``, ``kpreg.std``, ``kpreg.outputs``, ``kpreg.head``, ``kpreg.flip_test``)::

    kpreg.format          1
    kpreg.keypoints       ["nose", ...]              keypoint names, (K,)
    kpreg.skeleton        [[0, 1], ...]              0-based keypoint index pairs
    kpreg.flip_pairs      [[1, 2], ...]              the data's left/right pairs (the flip test's)
    kpreg.input_size      [H, W]
    kpreg.backbone        "resnet18"
    kpreg.calibration     {...} or null              a fitted calibration map's state (kpreg.metrics.calibration)
    kpreg.crop_mode       "image" | "both" | "crop"  how the model saw the animal in training (kpreg.inference.locate);
                                                     a file without it is taken as "image"
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kpreg.classpath import short_name
from kpreg.data.sample import IMAGENET_MEAN, IMAGENET_STD
from kpreg.inference.locate import CROP_MODES, CropMode, crop_mode

METADATA_FORMAT = 1


class ModelInfoError(ValueError):
    """A checkpoint record or exported file whose description of the model is missing or malformed."""


@dataclass(frozen=True)
class ModelInfo:
    """The model's description that pre- and post-processing need; see the module docstring."""

    keypoint_names: tuple[str, ...]
    skeleton: tuple[tuple[int, int], ...]
    flip_pairs: tuple[tuple[int, int], ...]
    input_size: tuple[int, int]  # (H, W) of the network input
    head: str  # the head's class name
    backbone: str
    flip_test: bool  # the run's evaluation setting (model.flip_test, off without flip pairs): the default
    calibration: Mapping[str, Any] | None = None  # a fitted calibration map's state, None = raw confidences
    mean: tuple[float, float, float] = tuple(float(v) for v in IMAGENET_MEAN)  # type: ignore[assignment]
    std: tuple[float, float, float] = tuple(float(v) for v in IMAGENET_STD)  # type: ignore[assignment]
    crop_mode: CropMode = "image"  # what the network saw in training: whole frames, crops and frames, crops only

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoint_names)

    @classmethod
    def from_record(cls, record: Mapping[str, Any], source: str) -> ModelInfo:
        """From a checkpoint's ``checkpoint["kpreg"]`` (``KeypointModule.describe()``)."""
        missing = [k for k in ("head", "backbone", "num_keypoints", "input_size") if k not in record]
        if missing:
            raise ModelInfoError(f"{source}: the checkpoint's model record lacks {missing}")
        k = int(record["num_keypoints"])
        names = record.get("keypoint_names") or [f"keypoint_{i}" for i in range(k)]
        settings = record.get("network") or {}
        head = short_name(record["head"].get("class_path"))
        return cls(
            keypoint_names=_names(names, k, source),
            skeleton=_pairs(record.get("skeleton") or [], k, source, "skeleton"),
            flip_pairs=_pairs(record.get("flip_pairs") or [], k, source, "flip_pairs"),
            input_size=_size(record["input_size"], source),
            head=head,
            backbone=str(record["backbone"]),
            # As evaluate.py: the run's model.flip_test (KeypointModule's default: on), but not on data without
            # left/right pairs, where evaluate.py refuses it unless forced (a mirrored figure is another figure)
            flip_test=bool(settings.get("flip_test", True)) and bool(record.get("flip_pairs")),
            calibration=record.get("calibration"),
            crop_mode=crop_mode(record),
        )

    def to_metadata(self) -> dict[str, str]:
        """The entries an exported file carries (JSON values); ``from_metadata`` reads them back."""
        return {
            "kpreg.format": json.dumps(METADATA_FORMAT),
            "kpreg.keypoints": json.dumps(list(self.keypoint_names)),
            "kpreg.skeleton": json.dumps([list(e) for e in self.skeleton]),
            "kpreg.flip_pairs": json.dumps([list(p) for p in self.flip_pairs]),
            "kpreg.input_size": json.dumps(list(self.input_size)),
            "kpreg.backbone": json.dumps(self.backbone),
            "kpreg.calibration": json.dumps(self.calibration),
            "kpreg.crop_mode": json.dumps(self.crop_mode),
        }

    @classmethod
    def from_metadata(cls, props: Mapping[str, str], source: str) -> tuple[ModelInfo, bool]:
        """From an exported file's metadata → (info, whether the flip test is inside the graph)."""
        if "kpreg.keypoints" not in props:
            raise ModelInfoError(f"{source}: no kpreg metadata (export it with export.py, which embeds the keypoint "
                                 "names, skeleton, input size and normalisation)")

        def value(key: str, default: Any = None) -> Any:
            if key not in props:
                if default is not None:
                    return default
                raise ModelInfoError(f"{source}: metadata lacks {key}")
            try:
                return json.loads(props[key])
            except json.JSONDecodeError as err:
                raise ModelInfoError(f"{source}: metadata {key} is not JSON ({err})") from None

        if int(value("kpreg.format", METADATA_FORMAT)) != METADATA_FORMAT:
            raise ModelInfoError(f"{source}: metadata format {props['kpreg.format']}, this kpreg reads "
                                 f"{METADATA_FORMAT}")
        names = value("kpreg.keypoints")
        k = len(names) if isinstance(names, list) else 0
        graph_flip = value("kpreg.flip_test", "null")  # the pairs the graph's flip test uses, or None
        info = cls(
            keypoint_names=_names(names, k, source),
            skeleton=_pairs(value("kpreg.skeleton", []), k, source, "skeleton"),
            flip_pairs=_pairs(value("kpreg.flip_pairs", []), k, source, "flip_pairs"),
            input_size=_size(value("kpreg.input_size"), source),
            head=str(props.get("kpreg.head", "")),
            backbone=str(value("kpreg.backbone", "")),
            flip_test=graph_flip is not None,
            calibration=value("kpreg.calibration", "null") if "kpreg.calibration" in props else None,
            mean=_triple(value("kpreg.mean"), source, "kpreg.mean"),
            std=_triple(value("kpreg.std"), source, "kpreg.std"),
            crop_mode=_crop_mode(value("kpreg.crop_mode") if "kpreg.crop_mode" in props else "image",
                                 source),
        )
        return info, graph_flip is not None


def _crop_mode(mode: Any, source: str) -> CropMode:
    if mode not in CROP_MODES:
        raise ModelInfoError(f"{source}: kpreg.crop_mode must be one of {list(CROP_MODES)}, got {mode!r}")
    return mode  # type: ignore[no-any-return]


def _names(names: Any, k: int, source: str) -> tuple[str, ...]:
    if not isinstance(names, Sequence) or isinstance(names, str) or len(names) != k or k == 0:
        raise ModelInfoError(f"{source}: expected {k or 'some'} keypoint names, got {names!r}")
    return tuple(str(n) for n in names)


def _pairs(pairs: Any, k: int, source: str, what: str) -> tuple[tuple[int, int], ...]:
    try:
        out = tuple((int(a), int(b)) for a, b in pairs)
    except (TypeError, ValueError):
        raise ModelInfoError(f"{source}: {what} must be index pairs, got {pairs!r}") from None
    bad = [p for p in out if not (0 <= p[0] < k and 0 <= p[1] < k)]
    if bad:
        raise ModelInfoError(f"{source}: {what} {bad[0]} is out of range for {k} keypoints")
    return out


def _size(size: Any, source: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ModelInfoError(f"{source}: input_size must be [H, W], got {size!r}") from None
    if h <= 0 or w <= 0:
        raise ModelInfoError(f"{source}: input_size must be positive, got {size!r}")
    return h, w


def _triple(values: Any, source: str, key: str) -> tuple[float, float, float]:
    try:
        # float32, as the normalisation computes (and the defaults are): 0.485 written with 6 decimals reads back
        # to the same float32 as IMAGENET_MEAN's, so a file and its checkpoint describe equal models
        a, b, c = (float(np.float32(v)) for v in values)
    except (TypeError, ValueError):
        raise ModelInfoError(f"{source}: {key} must be three numbers, got {values!r}") from None
    return a, b, c
