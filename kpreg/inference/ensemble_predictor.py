"""``EnsemblePredictor``: several models of the same keypoints run as one (``kpreg.load([a, b, c])``,
``predict.py --ckpt a --ckpt b --ckpt c``).

Every member predicts the same frame in the same boxes; the ensemble's ``Prediction`` holds the members' mean
position and mean confidence, and their ``variance`` per coordinate (px², ``kpreg.inference.ensemble.combine``):
the disagreement that ranks frames to label and adds to the Kalman smoother's observation noise. Without boxes the
ensemble finds the animal as its members were trained to (``kpreg.inference.locate``): each coarse-to-fine pass crops
the box of the *ensemble's* keypoints, so all members see the same crop. Members must predict the same keypoints in
the same order and have been trained to see the animal the same way (``crop_mode``); otherwise ``EnsembleError``
names the two that differ. Frames run one at a time through each member (no cross-frame batching).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from kpreg.inference.boxes import Box, whole_frame
from kpreg.inference.ensemble import EnsembleError, check_members, combine
from kpreg.inference.locate import DEFAULT_REFINE, CropMode, coarse_to_fine, refuse_whole_frames
from kpreg.inference.model_info import ModelInfo
from kpreg.inference.predictor import HasImage, Prediction, Predictor


class EnsemblePredictor:
    """Members (``Predictor``) of the same keypoints, named by ``names`` (their files) in errors."""

    def __init__(self, members: Sequence[Predictor], names: Sequence[str]) -> None:
        if len(members) != len(names) or not members:
            raise EnsembleError(f"an ensemble needs one name per member, got {len(members)} member(s) and "
                                f"{len(names)} name(s)")
        check_members([str(n) for n in names], [m.keypoint_names for m in members])
        for member, name in zip(members[1:], names[1:]):
            if member.crop_mode != members[0].crop_mode:
                raise EnsembleError(f"{names[0]} and {name} were trained to see the animal differently (crop mode "
                                    f"{members[0].crop_mode} vs {member.crop_mode}): an ensemble runs its members "
                                    "on the same crops")
        self.members = list(members)
        self.names = [str(n) for n in names]

    # ---- what the ensemble is (the first member's description; all share the keypoints) -------------------
    @property
    def info(self) -> ModelInfo:
        return self.members[0].info

    @property
    def keypoint_names(self) -> tuple[str, ...]:
        return self.members[0].keypoint_names

    @property
    def skeleton(self) -> tuple[tuple[int, int], ...]:
        return self.members[0].skeleton

    @property
    def crop_mode(self) -> CropMode:
        return self.members[0].crop_mode

    @property
    def backend(self) -> str:
        return self.members[0].backend

    @property
    def device(self) -> str:
        return self.members[0].device

    @property
    def flip_test(self) -> bool:
        return all(m.flip_test for m in self.members)

    @property
    def calibrated(self) -> bool:
        return all(m.calibrated for m in self.members)

    def describe(self) -> str:
        lines = [f"ensemble of {len(self.members)} models (mean position and confidence, variance of the members):"]
        return "\n".join(lines + [f"  {name}: {m.describe()}" for name, m in zip(self.names, self.members)])

    # ---- prediction ---------------------------------------------------------------------------------------
    def predict(self, image: np.ndarray, boxes: Any = None) -> Prediction:
        """One image (H, W, 3) uint8 RGB, its boxes (as ``Predictor.predict``; None: the whole image)."""
        results = [m.predict(image, boxes) for m in self.members]
        assert all(isinstance(r, Prediction) for r in results), "one image gives one Prediction"
        ens = combine(np.stack([r.keypoints for r in results]),  # type: ignore[union-attr]
                      np.stack([r.confidence for r in results]))  # type: ignore[union-attr]
        return Prediction(ens.keypoints, ens.confidence.astype(np.float32), results[0].boxes,  # type: ignore[union-attr]
                          ens.variance)

    def locate(self, image: np.ndarray, refine: int = DEFAULT_REFINE) -> Prediction:
        """The animal found without a box (``Predictor.locate``), every pass run by the whole ensemble."""
        if self.crop_mode == "crop":
            raise refuse_whole_frames("this ensemble")
        if self.crop_mode == "image":
            return self.predict(image)
        last: list[Prediction] = []

        def run(img: np.ndarray, boxes: list[Box] | None) -> tuple[np.ndarray, np.ndarray]:
            out = self.predict(img, None if boxes is None else np.array([b.xywh for b in boxes]))
            last[:] = [out]
            return out.keypoints, out.confidence

        xy, conf, box = coarse_to_fine(run, image, refine)  # (K, 2), (K,), the last crop's box
        return Prediction(xy[None], np.asarray(conf, dtype=np.float32)[None], (box or whole_frame(image),),
                          last[0].variance)

    def stream(self, frames: Iterable[HasImage], boxes: Callable[[Any], Sequence[Box]] | None = None,
               prefetch_depth: int = 8) -> Iterator[tuple[Any, Prediction]]:
        """(frame, its ``Prediction``) for every frame, in order (``Predictor.stream``'s interface)."""
        for frame in frames:
            if boxes is None:
                yield frame, self.predict(frame.image)
            else:
                given = list(boxes(frame))
                out = self.predict(frame.image, np.array([[*b.xywh, b.score] for b in given]).reshape(-1, 5))
                # the given boxes themselves (with their image ids), one per instance in order
                yield frame, Prediction(out.keypoints, out.confidence, tuple(given), out.variance)
