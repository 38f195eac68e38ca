"""Where the animal is when no box is given: the crop a model was trained on, found by the model itself.

A top-down model sees a crop. Which crop it was trained on is in its checkpoint (the data part's ``box_source``):

* ``image`` (and datasets whose samples are whole images): the whole frame — run it on whole frames;
* ``both`` (``kpreg.data.deeplabcut``): the labelled extent *and* the whole frame — **coarse to fine**: one pass on
  the whole frame finds the animal roughly, then ``refine`` passes on the box of the keypoints just found (their
  extent, grown to the input's aspect ratio and padded as in training) find it precisely;
* ``keypoints`` / ``bbox``: only crops around the animal — such a model cannot find the animal on a whole frame
  (on DeepLabCut's openfield frames it lands 188 px off on average) and is never run on one: boxes must come from
  elsewhere (a detections file).

On video, ``Tracker`` runs every frame coarse to fine (the default: ``1 + refine`` passes a frame), or, with
``follow``, as DeepLabCut's dynamic cropping does: the box of frame t is the extent of frame t − 1's keypoints (one
pass a frame), and the coarse pass re-finds the animal when it is lost (the mean confidence of the last frame below
``lost_below``). Following is not the default: on DeepLabCut's openfield video a followed box drifted off the mouse
within seconds while the crop model, out of its training distribution on a wrong crop, stayed confident (0.99), so
"lost" never fired; the whole-frame pass of every frame cannot drift.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import numpy as np

from kpreg.inference.boxes import Box

CropMode = Literal["image", "both", "crop"]
CROP_MODES: tuple[CropMode, ...] = ("image", "both", "crop")
DEFAULT_REFINE = 1  # openfield held-out frames: 1 refine 1.97 px, 2 refines 2.03 px (evaluate.py 2.03)
DEFAULT_LOST_BELOW = 0.3
# (image, boxes or None for the whole frame) → keypoints (N, K, 2) image px, confidence (N, K)
PredictFn = Callable[[np.ndarray, "list[Box] | None"], tuple[np.ndarray, np.ndarray]]


class LocateError(ValueError):
    """A model asked to run where it cannot: says why and what to do instead."""


def crop_mode(record: Mapping[str, Any]) -> CropMode:
    """How a checkpoint's model was trained to see the animal, from its recorded config (``checkpoint["kpreg"]``):
    ``image`` (whole frames), ``both`` (crops and whole frames) or ``crop`` (crops around the animal only)."""
    config = record.get("config") or {}
    data = config.get("data") or {} if isinstance(config, Mapping) else {}
    args = data.get("init_args") or {} if isinstance(data, Mapping) else {}
    source = args.get("box_source") if isinstance(args, Mapping) else None
    if source is None:
        return "image"  # a data part without boxes (the synthetic figures): every sample is a whole image
    if source in ("image", "both"):
        return source
    return "crop"


def refuse_whole_frames(name: str, box_source: str = "keypoints") -> LocateError:
    """The error for a crop-only model run without boxes."""
    return LocateError(
        f"{name} was trained on crops around the animal (box_source: {box_source}) and cannot find it on a whole "
        f"frame (it would land far off with a high confidence). Give boxes (--detections), or train with "
        f"--data.init_args.box_source both (crops and whole frames: predict then finds the animal itself)")


def extent_box(keypoints: np.ndarray) -> Box | None:
    """The box of the finite keypoints' extent (K, 2), as training crops the labelled extent (the cropper grows it
    to the input's aspect ratio and pads it); None with fewer than two distinct points."""
    xy = np.asarray(keypoints, dtype=np.float64)
    xy = xy[np.isfinite(xy).all(-1)]  # (L, 2)
    if len(xy) < 2:
        return None
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    if not np.any(hi > lo):
        return None
    # an edge box whose centre (x + w/2 - 0.5) is the extent's middle (kpreg.data.deeplabcut)
    return Box(float(lo[0] + 0.5), float(lo[1] + 0.5), float(max(hi[0] - lo[0], 1.0)), float(max(hi[1] - lo[1], 1.0)))


def refine(predict: PredictFn, image: np.ndarray, keypoints: np.ndarray, confidence: np.ndarray,
           passes: int) -> tuple[np.ndarray, np.ndarray, Box | None]:
    """``passes`` crops, each on the box of the keypoints found by the pass before. keypoints (K, 2), confidence
    (K,) → the last pass's keypoints, confidence and box (the input's own where no box can be made)."""
    box = None
    for _ in range(passes):
        nxt = extent_box(keypoints)
        if nxt is None:
            break
        box = nxt
        xy, conf = predict(image, [box])
        keypoints, confidence = xy[0], conf[0]
    return keypoints, confidence, box


def coarse_to_fine(predict: PredictFn, image: np.ndarray, passes: int = DEFAULT_REFINE
                   ) -> tuple[np.ndarray, np.ndarray, Box | None]:
    """The whole frame, then ``passes`` refinements: keypoints (K, 2), confidence (K,), the last box."""
    xy, conf = predict(image, None)
    return refine(predict, image, xy[0], conf[0], passes)


class Tracker:
    """Boxes that follow one animal through a video (module docstring).

    ``step(image)`` returns the frame's keypoints (K, 2), confidence (K,) and the box used (None: the whole frame).
    ``passes`` counts the network passes run so far (for the summary).
    """

    def __init__(self, predict: PredictFn, mode: CropMode, refine_passes: int = DEFAULT_REFINE,
                 lost_below: float = DEFAULT_LOST_BELOW, follow: bool = False) -> None:
        if mode == "crop":
            raise refuse_whole_frames("the model")
        self.predict = predict
        self.mode = mode
        self.refine_passes = refine_passes
        self.lost_below = lost_below
        self.follow = follow
        self.passes = 0
        self.refound = 0
        self._last: np.ndarray | None = None  # (K, 2) the previous frame's keypoints while the animal is tracked

    def _run(self, image: np.ndarray, boxes: list[Box] | None) -> tuple[np.ndarray, np.ndarray]:
        self.passes += 1
        return self.predict(image, boxes)

    def step(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, Box | None]:
        if self.mode == "image":
            xy, conf = self._run(image, None)
            return xy[0], conf[0], None
        box = None if self._last is None else extent_box(self._last)
        if box is None:  # the start, or the animal was lost: find it on the whole frame
            self.refound += 1
            xy, conf, box = coarse_to_fine(self._run, image, self.refine_passes)
        else:
            out, c = self._run(image, [box])
            xy, conf = out[0], c[0]
        found = bool(np.isfinite(conf).any() and np.nanmean(conf) >= self.lost_below)
        self._last = xy if found and self.follow else None
        return xy, conf, box
