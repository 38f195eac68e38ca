"""``Predictor``: a trained model applied to images, with evaluation's exact pre- and post-processing.

::

    import kpreg
    predictor = kpreg.load("runs/synthetic/heatmap/checkpoints/best.ckpt")   # or an exported .onnx / .pt
    result = predictor.predict(image)              # (H, W, 3) uint8 RGB; boxes=None: the whole image
    result.keypoints, result.confidence            # (1, K, 2) x,y image pixels, (1, K)

The steps, shared by every backend (``kpreg.inference.runtimes``) and by ``predict.py``:

1. image → (H, W, 3) uint8 RGB (``kpreg.inference.images``);
2. each box → an input crop by the evaluation transform (``kpreg.inference.crops``); without boxes, the
   whole image is one box. A detection box is padded (1.25, SimpleBaseline's) to give the network the context
   around a tight box that it was trained with; the whole image is not padded (``padding`` 1): it already holds
   all the context there is, and padding would only shrink the subject in the input;
3. normalisation with the model's mean / std (ImageNet's, as ``kpreg.data.sample.image_to_tensor``);
4. the network, batched (``batch_size`` crops at a time) and with the flip test as the model's run evaluated
   (``flip=None``; ``True`` / ``False`` override it);
5. coordinates back to image pixels through each crop's inverse affine, and the confidence through the
   model's calibration map where it has one (applied inside the network's graph; the raw head score otherwise).

``stream`` runs the same steps over a long iterable of frames (a video): decoding happens in the source's
thread, cropping and normalising in a second one, the network in the caller's, so they overlap; memory holds
a few frames and one batch, however long the video.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from kpreg.formats.oks import instance_score
from kpreg.inference.boxes import Box, whole_frame
from kpreg.inference.crops import DEFAULT_PADDING, Crop, Cropper, to_original
from kpreg.inference.images import as_box_lists, as_rgb8_batch
from kpreg.inference.locate import DEFAULT_REFINE, CropMode, coarse_to_fine, refuse_whole_frames
from kpreg.inference.model_info import ModelInfo
from kpreg.inference.prefetch import prefetch
from kpreg.inference.runtimes import (
    BackendError,
    OnnxRuntime,
    Runtime,
    TorchRuntime,
    TorchScriptRuntime,
    guess_backend,
)
from kpreg.metrics.calibration import describe_confidence

WHOLE_IMAGE_PADDING = 1.0


class HasImage(Protocol):
    image: np.ndarray  # (H, W, 3) uint8 RGB


@dataclass(frozen=True)
class Prediction:
    """The instances predicted on one image."""

    keypoints: np.ndarray  # (N, K, 2) float64 x,y image pixels (0-based pixel centres)
    confidence: np.ndarray  # (N, K) float32: calibrated P(correct) where the model has a map, else the raw score
    boxes: tuple[Box, ...]  # the N boxes (the whole image when none were given)
    # (N, K) float64 an ensemble's variance of its members' positions per coordinate, px² (None: one model)
    variance: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def xywh(self) -> np.ndarray:
        """(N, 4) float64 boxes, COCO x, y, w, h in image pixels."""
        return np.array([b.xywh for b in self.boxes], dtype=np.float64).reshape(-1, 4)

    @property
    def box_scores(self) -> np.ndarray:
        """(N,) the boxes' detector scores (1 for the whole image)."""
        return np.array([b.score for b in self.boxes], dtype=np.float64)

    @property
    def scores(self) -> np.ndarray:
        """(N,) instance scores: box score × mean confidence above 0.2 (COCO's top-down rule, formats.oks)."""
        if not self.boxes:
            return np.zeros(0)
        return instance_score(self.confidence, self.box_scores)


@dataclass(frozen=True)
class Prepared:
    """One image's crops, ready for the network."""

    crops: tuple[Crop, ...]
    batch: torch.Tensor  # (N, 3, H, W) float32 normalised


class PredictorError(ValueError):
    """A predictor that cannot be built as asked (e.g. a flip test the exported graph does not have)."""


class Predictor:
    """A model ready to predict; build it with ``kpreg.load`` / ``from_checkpoint`` / ``from_exported``.

    Args:
        runtime: the backend running the network (``kpreg.inference.runtimes``).
        info: the model's keypoints, skeleton, input size, normalisation and calibration.
        batch_size: crops per forward pass.
        padding: how much a detection box is grown around its centre (the whole image is never padded).
    """

    def __init__(self, runtime: Runtime, info: ModelInfo, batch_size: int = 32,
                 padding: float = DEFAULT_PADDING) -> None:
        if batch_size < 1:
            raise PredictorError(f"batch_size must be at least 1, got {batch_size}")
        self.runtime = runtime
        self.info = info
        self.batch_size = int(batch_size)
        self._whole = Cropper(info.input_size, WHOLE_IMAGE_PADDING)
        self._boxed = Cropper(info.input_size, padding)
        std = np.asarray(info.std, dtype=np.float32)
        # (x / 255 - mean) / std as x * scale + shift, in float32 as kpreg.data.sample.image_to_tensor computes it
        self._scale = torch.from_numpy(1.0 / (255.0 * std)).view(1, 3, 1, 1)
        self._shift = torch.from_numpy(-np.asarray(info.mean, dtype=np.float32) / std).view(1, 3, 1, 1)

    # ---- construction ----------------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(
        cls,
        ckpt: str | Path,
        device: str | torch.device | None = "auto",
        flip: bool | None = None,
        config: str | Path | dict[str, Any] | None = None,
        batch_size: int = 32,
        padding: float = DEFAULT_PADDING,
    ) -> Predictor:
        """The checkpoint's network in PyTorch; ``config`` (optional) is checked against the checkpoint."""
        from kpreg.inference.rebuild import rebuild  # imports timm; kept off the exported-model path

        model = rebuild(ckpt, config, flip_test=flip)
        return cls(TorchRuntime(model.network, device), model.info, batch_size, padding)

    @classmethod
    def from_exported(
        cls,
        path: str | Path,
        backend: str | None = None,
        device: str | torch.device | None = "auto",
        flip: bool | None = None,
        batch_size: int = 32,
        padding: float = DEFAULT_PADDING,
        threads: int = 0,
    ) -> Predictor:
        """An ``export.py`` file: ONNX (ONNX Runtime, CPU, ``threads`` intra-op threads, 0 = its default) or
        TorchScript. The flip test is in the graph or not, as exported; ``flip`` may only confirm it."""
        backend = backend or guess_backend(path)
        runtime: OnnxRuntime | TorchScriptRuntime
        if backend == "onnxruntime":
            runtime = OnnxRuntime(path, threads)
        elif backend == "torchscript":
            runtime = TorchScriptRuntime(path, device)
        else:
            raise BackendError(f"{path}: backend {backend!r} does not run exported files (onnxruntime, torchscript)")
        if flip is not None and bool(flip) != runtime.flip_test:
            if runtime.flip_test:
                raise PredictorError(f"{path} has the flip test in its graph; to predict without it, export the "
                                     "checkpoint again with --no-flip")
            raise PredictorError(f"{path} was exported without the flip test; to predict with it, export the "
                                 "checkpoint again with --flip")
        return cls(runtime, runtime.info, batch_size, padding)

    # ---- what the model is -----------------------------------------------------------------------------
    @property
    def keypoint_names(self) -> tuple[str, ...]:
        return self.info.keypoint_names

    @property
    def skeleton(self) -> tuple[tuple[int, int], ...]:
        return self.info.skeleton

    @property
    def input_size(self) -> tuple[int, int]:
        return self.info.input_size

    @property
    def flip_test(self) -> bool:
        return self.runtime.flip_test

    @property
    def crop_mode(self) -> CropMode:
        """How the model saw the animal in training (``kpreg.inference.locate``): whole frames, crops and whole
        frames, or crops only."""
        return self.info.crop_mode

    @property
    def calibrated(self) -> bool:
        """Whether the confidence is the model's calibrated P(correct) (else the head's raw score)."""
        return self.info.calibration is not None

    @property
    def backend(self) -> str:
        return self.runtime.name

    @property
    def device(self) -> str:
        return self.runtime.device

    def describe(self) -> str:
        """One line for logs: head, backbone, input size, backend, device, flip test, confidence."""
        h, w = self.input_size
        return (f"{self.info.head or 'model'} on {self.info.backbone or '?'} at {h}x{w}, {len(self.keypoint_names)} "
                f"keypoints; {self.backend} on {self.device}; flip test {'on' if self.flip_test else 'off'}; "
                f"confidence: {describe_confidence(self.info.calibration)}")

    # ---- the steps -------------------------------------------------------------------------------------
    def prepare(self, image: np.ndarray, boxes: Sequence[Box] | None = None) -> Prepared:
        """(H, W, 3) uint8 RGB image and its boxes (None: the whole image) → crops and the normalised batch."""
        if boxes is None:
            crops = (self._whole(image, whole_frame(image)),)
        else:
            crops = tuple(self._boxed(image, box) for box in boxes)
        if not crops:
            h, w = self.input_size
            return Prepared((), torch.zeros(0, 3, h, w))
        pixels = torch.from_numpy(np.stack([c.image for c in crops]))  # (N, H, W, 3) uint8
        batch = torch.empty(pixels.shape[0], 3, *pixels.shape[1:3], dtype=torch.float32)
        batch.copy_(pixels.permute(0, 3, 1, 2))  # (N, 3, H, W) float32 0…255
        return Prepared(crops, batch.mul_(self._scale).add_(self._shift))

    def run(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 3, H, W) normalised crops → coords (N, K, 2) input pixels, confidence (N, K), in batches."""
        k = len(self.keypoint_names)
        if len(batch) == 0:
            return torch.zeros(0, k, 2), torch.zeros(0, k)
        outputs = [self.runtime(batch[i:i + self.batch_size]) for i in range(0, len(batch), self.batch_size)]
        coords = torch.cat([c for c, _ in outputs])  # (N, K, 2) input pixels
        confidence = torch.cat([s for _, s in outputs])  # (N, K): calibrated in the graph where the model has a map
        return coords, confidence

    def _finish(self, prepared: Sequence[Prepared], coords: torch.Tensor, confidence: torch.Tensor) -> list[Prediction]:
        """Split a joint batch's outputs per image and map them back to image pixels."""
        out = []
        start = 0
        for p in prepared:
            n = len(p.crops)
            keypoints = to_original(coords[start:start + n], p.crops) if n else np.zeros((0, coords.shape[1], 2))
            out.append(Prediction(keypoints, confidence[start:start + n].numpy().astype(np.float32),
                                  tuple(c.box for c in p.crops)))
            start += n
        return out

    # ---- the API -----------------------------------------------------------------------------------------
    def predict(self, images: Any, boxes: Any = None) -> Prediction | list[Prediction]:
        """Keypoints of one image or a batch; see ``kpreg.inference.images`` for the accepted inputs.

        boxes: None (each whole image is one instance); for one image an (N, 4) x, y, w, h array in its pixels
        ((N, 5) with a detector score) — N instances; for a batch, a list with such an entry (or None) per image.
        Returns a ``Prediction`` for one image, a list of them for a batch.
        """
        rgb, single = as_rgb8_batch(images)
        box_lists = as_box_lists(boxes, len(rgb), single)
        prepared = [self.prepare(image, None if b is None else [Box(*row[:4], score=row[4]) for row in b])
                    for image, b in zip(rgb, box_lists)]
        coords, confidence = self.run(torch.cat([p.batch for p in prepared]))
        results = self._finish(prepared, coords, confidence)
        return results[0] if single else results

    def locate(self, image: np.ndarray, refine: int = DEFAULT_REFINE) -> Prediction:
        """One animal on a whole image (H, W, 3) uint8 RGB without a box, as the model was trained to see it
        (``kpreg.inference.locate``): one pass for a whole-frame model, coarse to fine (the whole image, then
        ``refine`` crops of the keypoints found) for a ``both`` model; a crop-only model is refused."""
        if self.crop_mode == "crop":
            raise refuse_whole_frames("this model")
        if self.crop_mode == "image":
            result = self.predict(image)
            assert isinstance(result, Prediction)
            return result

        def run(img: np.ndarray, boxes: list[Box] | None) -> tuple[np.ndarray, np.ndarray]:
            out = self.predict(img, None if boxes is None else np.array([b.xywh for b in boxes]))
            assert isinstance(out, Prediction)
            return out.keypoints, out.confidence

        xy, conf, box = coarse_to_fine(run, image, refine)  # (K, 2), (K,), the last crop's box
        return Prediction(xy[None], np.asarray(conf, dtype=np.float32)[None], (box or whole_frame(image),))

    def stream(
        self,
        frames: Iterable[HasImage],
        boxes: Callable[[Any], Sequence[Box]] | None = None,
        prefetch_depth: int = 8,
    ) -> Iterator[tuple[Any, Prediction]]:
        """(frame, its ``Prediction``) for every frame, in order; frames are batched together.

        ``frames`` yields objects with an ``image`` (H, W, 3) uint8 RGB (``kpreg.inference.sources.Frame``);
        ``boxes(frame)`` gives a frame's boxes (None: whole frames). Cropping runs ``prefetch_depth`` frames
        ahead in a background thread, overlapping the network.
        """
        def prepared() -> Iterator[tuple[Any, Prepared]]:
            it = iter(frames)
            try:
                for frame in it:
                    yield frame, self.prepare(frame.image, None if boxes is None else list(boxes(frame)))
            finally:
                close = getattr(it, "close", None)
                if close is not None:
                    close()  # a consumer that stops early stops the source's decoding thread too

        items = prefetch(prepared, prefetch_depth, name="kpreg-crops")
        pending: list[tuple[Any, Prepared]] = []
        count = 0
        try:
            for frame, prep in items:
                pending.append((frame, prep))
                count += len(prep.crops)
                if count >= self.batch_size:
                    yield from self._flush(pending)
                    pending, count = [], 0
            yield from self._flush(pending)
        finally:
            items.close()

    def _flush(self, pending: list[tuple[Any, Prepared]]) -> Iterator[tuple[Any, Prediction]]:
        if not pending:
            return
        preps = [p for _, p in pending]
        coords, confidence = self.run(torch.cat([p.batch for p in preps]))
        yield from zip((f for f, _ in pending), self._finish(preps, coords, confidence))


def load(
    path: str | Path | Sequence[str | Path],
    device: str | torch.device | None = "auto",
    flip: bool | None = None,
    batch_size: int = 32,
    config: str | Path | dict[str, Any] | None = None,
    backend: str | None = None,
    padding: float = DEFAULT_PADDING,
) -> Predictor:
    """A ``Predictor`` from a checkpoint (``.ckpt``) or an exported model (``.onnx``: ONNX Runtime; TorchScript).

    device: ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda:0"``, …; flip: ``None`` follows the
    run's evaluation setting (on by default), ``True`` / ``False`` override it (an exported file keeps its own);
    config: a run's ``config.yaml``, checked against the checkpoint (not needed); backend: ``torch``,
    ``onnxruntime`` or ``torchscript`` (default: from the file). Several paths: an ensemble of those models
    (``kpreg.inference.ensemble_predictor.EnsemblePredictor``, the same interface).
    """
    if not isinstance(path, (str, Path)):
        from kpreg.inference.ensemble_predictor import EnsemblePredictor

        paths = list(path)
        members = [load(p, device, flip, batch_size, config, backend, padding) for p in paths]
        return EnsemblePredictor(members, [str(p) for p in paths])  # type: ignore[return-value]
    backend = backend or guess_backend(path)
    if backend == "torch":
        return Predictor.from_checkpoint(path, device, flip, config, batch_size, padding)
    if config is not None:
        raise PredictorError("config is checked against a checkpoint; an exported model carries its own description")
    return Predictor.from_exported(path, backend, device, flip, batch_size, padding)
