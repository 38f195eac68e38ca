"""kpreg: keypoint estimation with interchangeable coordinate heads.

``kpreg.load(path)`` returns a ``kpreg.inference.predictor.Predictor`` for a checkpoint or an exported model
(``kpreg.load([a, b, c])``: an ensemble of them, ``kpreg.inference.ensemble_predictor.EnsemblePredictor``);
it is imported on first use, so ``import kpreg`` stays cheap (no torch, timm or Lightning).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from kpreg.inference.predictor import Predictor


def load(path: Any, **kwargs: Any) -> Predictor:
    """A ``Predictor`` for a checkpoint (``.ckpt``) or an exported model (``.onnx``, TorchScript), or for a list of
    them an ensemble with the same interface (``EnsemblePredictor``); the keyword
    arguments are those of ``kpreg.inference.predictor.load`` (device, flip, batch_size, config, backend)."""
    from kpreg.inference.predictor import load as _load

    return _load(path, **kwargs)


__all__ = ["load", "__version__"]
