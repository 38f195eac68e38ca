"""The evaluation table: one row per evaluated sample, in dataset order, that everything after the network reads.

::

    each process, each batch:  TableRows.add(coords, raw confidence, spread, meta)    (kept on the device, packed)
    end of the epoch:          one all_gather of the packed rows (kpreg.training.evaluation.gather_table)
                               ─▶ EvaluationTable.from_packed: padding dropped, sorted by sample index, de-duplicated
    then:                      calibration, every dataset metric, the uncertainty figures and the prediction writers
                               read the table; ``save`` writes it per run (``per_sample.npz``), so that runs on the same
                               frames can be paired.

Packing: every per-sample value of a batch (the sample contract's ``meta``, ``kpreg.data.sample``, with the
dataset's own numeric entries such as ``image_id`` or ``occluded``) becomes float64 columns of one (B, C) tensor,
so that a process's rows travel in one collective. Integers up to 2⁵³ and booleans are exact in float64.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kpreg.metrics.calibration import data_fingerprint

# The sample contract's per-sample entries every table has; anything else numeric in ``meta`` is an extra.
_CONTRACT = ("index", "keypoints_orig", "visible_orig", "norm_length", "box_size")
_SKIPPED = ("affine_inv", "padding")  # geometry already applied / the sampler's flag (a column of its own)
PER_SAMPLE_FILE = "per_sample.npz"


@dataclass(frozen=True)
class Column:
    """A named block of the packed columns: ``shape`` is the per-sample shape, ``dtype`` the unpacked dtype."""

    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype

    @property
    def width(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class Layout:
    """Where each value sits in a packed (S, C) row block."""

    columns: tuple[Column, ...]

    @property
    def width(self) -> int:
        return sum(c.width for c in self.columns)

    def split(self, packed: torch.Tensor) -> dict[str, torch.Tensor]:
        """(S, C) float64 → name → (S, *shape) in the column's dtype."""
        out: dict[str, torch.Tensor] = {}
        start = 0
        for c in self.columns:
            block = packed[:, start:start + c.width].reshape(len(packed), *c.shape)
            out[c.name] = block.round().to(c.dtype) if not c.dtype.is_floating_point else block.to(c.dtype)
            start += c.width
        return out


class TableRows:
    """One process's rows of an evaluation epoch, packed per batch and kept on the batch's device."""

    def __init__(self) -> None:
        self.layout: Layout | None = None
        self.blocks: list[torch.Tensor] = []  # (B, C) float64 each

    def __len__(self) -> int:
        return sum(len(b) for b in self.blocks)

    def clear(self) -> None:
        self.layout, self.blocks = None, []

    def add(self, coords: torch.Tensor, confidence: torch.Tensor, spread: torch.Tensor | None,
            meta: Mapping[str, Any]) -> None:
        """coords (B, K, 2) x,y original px; confidence (B, K) the head's raw score; spread (B, K) input px² or None;
        meta the batch's collated sample meta (with ``padding`` (B,) where the sampler padded the shard)."""
        b = coords.shape[0]
        values: dict[str, torch.Tensor] = {
            "coords": coords, "confidence": confidence,
            "padding": meta["padding"] if "padding" in meta else torch.zeros(b, dtype=torch.bool),
        }
        if spread is not None:
            values["spread"] = spread
        for key, value in meta.items():
            if key in _SKIPPED or not isinstance(value, torch.Tensor) or value.ndim == 0 or len(value) != b:
                continue
            if value.dtype.is_floating_point or value.dtype in (torch.bool, torch.int64, torch.int32, torch.uint8):
                values[key] = value
        missing = [k for k in _CONTRACT if k not in values]
        if missing:
            raise ValueError(f"evaluation batch meta lacks {missing} (the sample contract, kpreg.data.sample)")
        layout = Layout(tuple(Column(name, tuple(v.shape[1:]), v.dtype) for name, v in sorted(values.items())))
        if self.layout is None:
            self.layout = layout
        elif layout != self.layout:
            raise ValueError(f"evaluation batches differ in their meta: {layout} vs {self.layout}")
        device = coords.device
        block = torch.cat([values[c.name].detach().to(device, torch.float64).reshape(b, -1)
                           for c in layout.columns], dim=1)  # (B, C)
        self.blocks.append(block)

    def packed(self) -> torch.Tensor:
        """(S_local, C) float64: every batch's rows, in the order they came."""
        if not self.blocks:
            raise ValueError("no evaluation rows on this process")
        return torch.cat(self.blocks)


@dataclass
class EvaluationTable:
    """An evaluated split, one row per sample, sorted by sample index; on the CPU.

    Coordinates are in original-image pixels; ``confidence`` is the head's raw score (the calibration decides what
    the metrics get); ``extra`` holds the dataset's own per-sample values (COCO's ``image_id``, ``box_score`` and
    ``nms_area``, the synthetic figures' ``occluded`` …).
    """

    index: torch.Tensor  # (S,) int64 sample index in its dataset
    coords: torch.Tensor  # (S, K, 2) float64 x,y original px
    gt: torch.Tensor  # (S, K, 2) float64 x,y original px
    visible: torch.Tensor  # (S, K) bool: labelled keypoints (those that count)
    norm_length: torch.Tensor  # (S,) float64 original px: the scale errors are normalised by
    box_size: torch.Tensor  # (S,) float64 original px: the instance box's larger side
    confidence: torch.Tensor  # (S, K) float64 raw head score
    spread: torch.Tensor | None  # (S, K) float64 input px²
    extra: dict[str, torch.Tensor] = field(default_factory=dict)  # (S, …) each

    @classmethod
    def from_packed(cls, packed: torch.Tensor, layout: Layout) -> EvaluationTable:
        """All processes' packed rows (N, C) → the table: padded rows dropped, sorted by index, duplicates dropped."""
        values = layout.split(packed.detach().cpu())
        keep = ~values.pop("padding").bool()
        index = values["index"][keep].long()
        order = torch.argsort(index, stable=True)
        first = torch.ones(len(order), dtype=torch.bool)
        first[1:] = index[order][1:] != index[order][:-1]
        rows = keep.nonzero().flatten()[order[first]]  # (S,) rows of ``packed``, by index, first of duplicates
        v = {k: t[rows] for k, t in values.items()}
        extra = {k: t for k, t in v.items()
                 if k not in (*_CONTRACT, "coords", "confidence", "spread")}
        return cls(index=v["index"].long(), coords=v["coords"].double(), gt=v["keypoints_orig"].double(),
                   visible=v["visible_orig"].bool(), norm_length=v["norm_length"].double(),
                   box_size=v["box_size"].double(), confidence=v["confidence"].double(),
                   spread=v["spread"].double() if "spread" in v else None, extra=extra)

    def __len__(self) -> int:
        return len(self.index)

    def select(self, keep: torch.Tensor) -> EvaluationTable:
        """The rows ``keep`` ((S,) bool or indices)."""
        return EvaluationTable(self.index[keep], self.coords[keep], self.gt[keep], self.visible[keep],
                               self.norm_length[keep], self.box_size[keep], self.confidence[keep],
                               None if self.spread is None else self.spread[keep],
                               {k: v[keep] for k, v in self.extra.items()})

    @property
    def num_keypoints(self) -> int:
        return int(self.coords.shape[1])

    @property
    def groups(self) -> torch.Tensor:
        """(S,) int64: samples of one image share a group (a cross-fitting fold never splits an image)."""
        return self.extra["image_id"].long() if "image_id" in self.extra else self.index

    def errors(self) -> torch.Tensor:
        """(S, K) float64 Euclidean error in original pixels; NaN where the keypoint is not labelled."""
        err = (self.coords - self.gt).norm(dim=-1)  # (S, K)
        return torch.where(self.visible, err, torch.full_like(err, math.nan))

    def meta(self) -> dict[str, torch.Tensor]:
        """The rows as a collated sample ``meta`` (what ``DatasetMetric.update`` reads)."""
        return {"index": self.index, "keypoints_orig": self.gt, "visible_orig": self.visible,
                "norm_length": self.norm_length, "box_size": self.box_size, **self.extra}

    def fingerprint(self) -> str:
        """A short hash of the evaluated samples and their labels (equal: the same frames, the same labels)."""
        return data_fingerprint(self.index, self.gt, self.visible)

    def save(self, path: str | Path, keypoint_names: Sequence[str], confidence: torch.Tensor,
             **info: Any) -> Path:
        """Write the per-sample file: every sample × keypoint with its error, confidence and visibility.

        ``confidence`` (S, K) is the confidence the metrics got (calibrated, out of fold where fitted on this split);
        ``info``: plain scalars stored beside (e.g. the definition of correct)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, Any] = {
            "index": self.index.numpy(), "image_id": self.groups.numpy(),
            "keypoint_names": np.array([str(n) for n in keypoint_names]),
            "coords": self.coords.numpy(), "gt": self.gt.numpy(), "visible": self.visible.numpy(),
            "error_px": self.errors().numpy(), "norm_length": self.norm_length.numpy(),
            "box_size": self.box_size.numpy(), "confidence": confidence.double().cpu().numpy(),
            "raw_confidence": self.confidence.numpy(), "fingerprint": np.array(self.fingerprint()),
        }
        if self.spread is not None:
            arrays["spread"] = self.spread.numpy()
        arrays.update({f"extra/{k}": v.numpy() for k, v in self.extra.items()})
        arrays.update({f"info/{k}": np.array(v) for k, v in info.items()})
        with path.open("wb") as f:
            np.savez_compressed(f, **arrays)
        return path


def load_per_sample(path: str | Path) -> dict[str, np.ndarray]:
    """A ``per_sample.npz`` as a dict of arrays (see ``EvaluationTable.save`` for the keys)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"per-sample table not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a per-sample table ({err})") from None
