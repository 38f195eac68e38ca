"""What a dataset declares: its keypoints (names, skeleton, flip pairs, OKS sigmas) and its evaluation protocol.

Datamodules (``kpreg.data``) fill an ``EvaluationSpec``; ``kpreg.metrics.build_metrics`` turns it into the
dataset's metrics. Neither side imports the other: this module is the contract between them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

# The sample's scale (``meta.norm_length``): PCKh's head size, or the larger side of the instance's box.
ScaleKind = Literal["head", "box"]

# The metrics a dataset can be scored with (``kpreg.metrics`` owns their keys): PCKh (head-normalised datasets), OKS AP
# (datasets with a COCO ground truth), pixel error and PCK (every dataset).
MetricFamily = Literal["pckh", "oks", "pixel"]
METRIC_FAMILIES: tuple[str, ...] = ("pckh", "oks", "pixel")

# An error of at most this many "scales" counts as correct (uncertainty figures, calibration): PCKh@0.5 of the head
# size on head-normalised data, PCK@0.1 of the box size otherwise (mmpose's PCKAccuracy default is 0.05–0.2; a head
# is about a fifth of a body, so the two are of the same strictness on people).
DEFAULT_CORRECT_THRESHOLD: dict[str, float] = {"head": 0.5, "box": 0.1}


@dataclass(frozen=True)
class KeypointLayout:
    """The keypoints of a dataset: names (their order is the model's output order), skeleton edges and left/right
    flip pairs as 0-based index pairs, and OKS sigmas (COCOeval units, COCO's nose = 0.026) per keypoint."""

    names: tuple[str, ...]
    skeleton: tuple[tuple[int, int], ...] = ()
    flip_pairs: tuple[tuple[int, int], ...] = ()
    sigmas: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        k = len(self.names)
        for a, b in (*self.skeleton, *self.flip_pairs):
            if not (0 <= a < k and 0 <= b < k):
                raise ValueError(f"keypoint index pair ({a}, {b}) out of range for {k} keypoints")
        if self.sigmas and len(self.sigmas) != k:
            raise ValueError(f"{len(self.sigmas)} OKS sigmas for {k} keypoints")

    @property
    def num_keypoints(self) -> int:
        return len(self.names)

    def describe(self) -> dict[str, Any]:
        """Plain data (for checkpoints, logs and files)."""
        return {"keypoint_names": list(self.names), "skeleton": [list(e) for e in self.skeleton],
                "flip_pairs": [list(p) for p in self.flip_pairs], "sigmas": list(self.sigmas)}


@dataclass
class EvaluationSpec:
    """How a dataset is evaluated.

    layout: its keypoints.
    scale: what ``meta.norm_length`` is — ``head`` (PCKh's head size: the dataset is scored with PCKh) or ``box``
        (the larger side of the instance box).
    correct_threshold: an error of at most ``correct_threshold × norm_length`` counts as correct.
    primary: the metric key that selects the best checkpoint (None: the primary key of the first family).
    families: the metrics it is scored with, in table order (None: PCKh where the scale is a head size, OKS AP where
        there is a COCO ground truth, then pixel error / PCK).
    title: the title of the printed metric table.
    pckh_groups / pckh_mean_joints: PCKh's table columns and the joints of its ``Mean`` (None: MPII's for MPII's
        joints, else no groups and every joint).
    coco_gt: a pycocotools ``COCO`` of the ground truth for OKS AP (COCO-format datasets), else None.
    oks: options of the OKS AP metric (``use_nms``, ``nms_thr``, ``kp_score_thr``, ``category_id``).
    """

    layout: KeypointLayout
    scale: ScaleKind
    primary: str | None = None
    title: str = ""
    correct_threshold: float | None = None
    pckh_groups: Mapping[str, Sequence[int]] | None = None
    pckh_mean_joints: Sequence[int] | None = None
    coco_gt: Any = None
    oks: dict[str, Any] = field(default_factory=dict)
    families: tuple[MetricFamily, ...] | None = None

    def __post_init__(self) -> None:
        if self.scale not in DEFAULT_CORRECT_THRESHOLD:
            raise ValueError(f"scale must be 'head' or 'box', got {self.scale!r}")
        if self.correct_threshold is None:
            self.correct_threshold = DEFAULT_CORRECT_THRESHOLD[self.scale]
        if self.families is None:
            self.families = (*(("pckh",) if self.scale == "head" else ()),
                             *(("oks",) if self.coco_gt is not None else ()), "pixel")
        self.families = tuple(self.families)
        unknown = [f for f in self.families if f not in METRIC_FAMILIES]
        if unknown or not self.families or len(set(self.families)) != len(self.families):
            raise ValueError(f"metric families must be distinct names of {METRIC_FAMILIES}, got {self.families}")
        if "pckh" in self.families and self.scale != "head":
            raise ValueError("PCKh needs the head size as the sample's scale (scale 'head')")
        if "oks" in self.families and self.coco_gt is None:
            raise ValueError("OKS AP needs a COCO ground truth (coco_gt)")
