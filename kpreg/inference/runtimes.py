"""Backends that run the network: normalised crops in, coordinates in input pixels and confidences out.

Every backend takes a (B, 3, H, W) float32 CPU tensor of normalised crops and returns ``coords`` (B, K, 2)
x,y input pixels and ``confidence`` (B, K) as float32 CPU tensors; what happens before (decoding, cropping,
normalising) and after (back to frame pixels, calibration) is the predictor's, shared by all of them.

* ``TorchRuntime``: the rebuilt ``KeypointNetwork`` (PyTorch eager) on any device.
* ``OnnxRuntime``: an ONNX file exported by ``export.py``, run by ONNX Runtime on the CPU.
* ``TorchScriptRuntime``: a TorchScript file exported by ``export.py``.

The exported files carry their ``ModelInfo`` as metadata (``kpreg.inference.model_info``), so they need
no checkpoint. Their flip test is fixed in the graph at export time.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import torch

from kpreg.inference.export import INPUT_NAME, METADATA_FILE, OUTPUT_NAMES
from kpreg.inference.model_info import ModelInfo
from kpreg.network import KeypointNetwork

BACKENDS = ("torch", "onnxruntime", "torchscript")


class BackendError(ValueError):
    """A backend that cannot run as asked (missing optional package, unreadable file, wrong device)."""


class Runtime(Protocol):
    name: str
    device: str
    flip_test: bool

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` / ``"auto"`` → CUDA if available, else CPU; checks that an asked-for device exists."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise BackendError(f"unknown device {device!r} ({err})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BackendError(f"device {device!r} asked for, but CUDA is not available here")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise BackendError(f"device {device!r} asked for, but MPS is not available here")
    return dev


class TorchRuntime:
    """A ``KeypointNetwork`` in eval mode on ``device``; inputs move there, outputs come back to the CPU. It runs in
    the memory layout the run trained in (``model.channels_last``: NHWC is ~20 % faster on this project's CPU, and
    on tensor cores; the values are the same up to float rounding)."""

    name = "torch"

    def __init__(self, model: KeypointNetwork, device: str | torch.device | None = "cpu") -> None:
        self.torch_device = resolve_device(device)
        self.device = str(self.torch_device)
        self.model = model.eval().to(self.torch_device)
        self.flip_test = model.flip_test

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.inference_mode():
            x = images.to(self.torch_device, non_blocking=True)  # (B, 3, H, W)
            coords, confidence = self.model(x)  # (B, K, 2) input px, (B, K)
            return coords.float().cpu(), confidence.float().cpu()


class OnnxRuntime:
    """An exported ONNX file on ONNX Runtime's CPU provider; ``threads`` intra-op threads (0: its default)."""

    name = "onnxruntime"

    def __init__(self, path: str | Path, threads: int = 0) -> None:
        if importlib.util.find_spec("onnxruntime") is None:
            raise BackendError("--backend onnxruntime needs the optional package 'onnxruntime': "
                                "pip install onnxruntime (or pip install -e '.[export]')")
        import onnxruntime as ort

        self.path = _existing(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
        # Idle pool threads sleep instead of spinning: on a video, decoding and cropping run in their own threads
        # beside the network and need those cores (int8 predict.py on 2 cores: ×1.13, docs/peers.md).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types for bad files
            raise BackendError(f"{self.path}: ONNX Runtime cannot load it ({str(err).splitlines()[0]})") from None
        props = dict(self.session.get_modelmeta().custom_metadata_map)
        self.info, self.flip_test = ModelInfo.from_metadata(props, str(self.path))
        self.device = "cpu"

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        coords, confidence = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: images.float().cpu().numpy()})
        return torch.from_numpy(coords), torch.from_numpy(confidence)


@contextlib.contextmanager
def _quiet_jit() -> Iterator[None]:
    with warnings.catch_warnings():  # torch ≥ 2.9 deprecates torch.jit; export.py says why it is still offered
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=FutureWarning)
        yield


class TorchScriptRuntime:
    """An exported TorchScript file, on the CPU: a trace replays the device of every tensor it created when
    it was traced (``export.py`` traces on the CPU), so it is not moved to another device."""

    name = "torchscript"

    def __init__(self, path: str | Path, device: str | torch.device | None = "cpu") -> None:
        self.path = _existing(path)
        if device not in (None, "auto") and torch.device(device).type != "cpu":
            raise BackendError(f"{path}: a TorchScript trace runs on the CPU it was traced on, not {device!r} "
                               "(use the checkpoint, or ONNX, on another device)")
        self.torch_device = torch.device("cpu")
        self.device = str(self.torch_device)
        extra = {METADATA_FILE: ""}
        try:
            with _quiet_jit():
                self.module = torch.jit.load(str(self.path), map_location=self.torch_device, _extra_files=extra)
        except (RuntimeError, ValueError) as err:
            raise BackendError(f"{self.path}: not a TorchScript file ({str(err).splitlines()[0]})") from None
        try:
            props = json.loads(extra[METADATA_FILE] or "{}")
        except json.JSONDecodeError:
            props = {}
        self.info, self.flip_test = ModelInfo.from_metadata(props, str(self.path))
        self.module.eval()

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.inference_mode():
            coords, confidence = self.module(images.to(self.torch_device))
            return coords.float().cpu(), confidence.float().cpu()


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise BackendError(f"model file not found: {path}")
    return path


def guess_backend(path: str | Path) -> str:
    """The backend a model file needs: ``.onnx`` → onnxruntime; a TorchScript archive (a zip with ``code/``)
    → torchscript; anything else is read as a checkpoint (torch)."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        return "onnxruntime"
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if any("/code/" in name or name.endswith("/" + METADATA_FILE) for name in archive.namelist()):
                return "torchscript"
    return "torch"
