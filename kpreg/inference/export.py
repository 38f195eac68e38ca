"""ONNX / TorchScript export of a ``KeypointNetwork``, with a parity check.

The exported graph is the network kpreg runs everywhere (``kpreg.network.KeypointNetwork``) traced: a normalised
crop batch (B, 3, H, W) — ImageNet mean / std, as ``kpreg.data.sample.image_to_tensor`` — in, ``coords`` (B, K, 2)
x,y input pixels and ``confidence`` (B, K) out. The head's decoding is inside the graph, so a runtime needs nothing
of kpreg but the crop geometry (``kpreg.inference.crops``); so are the flip test (one batch of 2B: the crops and
their mirrors) when the network has it on, and the calibration map when it has one (``confidence`` is then
P(correct); without one it is the head's raw score, and the metadata says which).

Exporters, and why:

* ONNX: torch's ``torch.export``-based ("dynamo") exporter, ``torch.onnx.export(..., dynamo=True)``. It is
  torch's default and maintained path (the TorchScript-based ONNX exporter is deprecated), it needs
  ``onnxscript``, and it expresses the dynamic batch axis as a ``torch.export.Dim`` that it *verifies*: a
  head whose graph depended on the batch size would fail to export instead of exporting a wrong graph.
  Default opset 18: the opset of torch's ONNX function library (no version conversion pass), run by
  ONNX Runtime ≥ 1.14 and TensorRT ≥ 8.6.
* TorchScript: ``torch.jit.trace``, not ``script``. The heads use Python that the TorchScript compiler does
  not accept (class-level attributes such as ``SpatialHead.maps_per_keypoint``, the numpy-or-torch helpers
  of ``kpreg.coords``, dataclass specs), while their forward and decode have no data-dependent Python
  control flow (branches are on configuration; per-element choices are ``torch.where``), so a trace
  records them exactly. The trace is checked on two other batch sizes (``check_inputs``) so that a
  batch-size specialisation fails loudly. (TorchScript itself is deprecated in recent torch; it is kept
  for runtimes that load it, e.g. LibTorch.)

Both exports run on a CPU copy of the model in eval mode (the caller's module is left as it is), so the
files load anywhere. ``parity`` reports the largest coordinate (input pixels) and confidence differences of
ONNX Runtime and TorchScript against PyTorch on the same crops.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import json
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from kpreg.data.sample import IMAGENET_MEAN, IMAGENET_STD
from kpreg.network import KeypointNetwork

INPUT_NAME = "images"
OUTPUT_NAMES = ("coords", "confidence")
DEFAULT_OPSET = 18
METADATA_FILE = "kpreg.json"  # TorchScript extra file holding the metadata (ONNX: metadata_props)


class ExportError(ValueError):
    """An export or parity check that cannot run as asked (missing optional package, missing file)."""


def supported_opsets() -> range:
    """The ONNX opsets an export can be asked for: from torch's ONNX function library's (18: the exporter builds the
    graph at it) to the newest the installed ``onnx`` knows (the exporter converts the graph up to it)."""
    import onnx

    return range(DEFAULT_OPSET, onnx.defs.onnx_opset_version() + 1)


def check_opset(opset: int, name: str = "opset") -> int:
    """``opset`` if an export can write it; else ``ExportError`` naming the supported range (torch's exporter would
    log a traceback and write opset 18 instead)."""
    opsets = supported_opsets()
    if isinstance(opset, bool) or not isinstance(opset, int) or opset not in opsets:
        raise ExportError(f"{name} {opset} is not supported: torch's ONNX exporter writes opsets {opsets.start} to "
                          f"{opsets.stop - 1} (with onnx {_version('onnx')})")
    return opset


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def default_metadata(model: KeypointNetwork) -> dict[str, str]:
    """What a runtime needs to feed the file: input layout and size, normalisation, outputs."""
    h, w = model.input_size
    return {
        "kpreg.input": f"{INPUT_NAME}: (batch, 3, {h}, {w}) float32 RGB, (x / 255 - mean) / std",
        "kpreg.mean": json.dumps([round(float(v), 6) for v in IMAGENET_MEAN]),
        "kpreg.std": json.dumps([round(float(v), 6) for v in IMAGENET_STD]),
        "kpreg.outputs": "coords: (batch, K, 2) x,y input pixels (0-based pixel centres); confidence: (batch, K)",
        "kpreg.head": type(model.head).__name__,
        "kpreg.flip_test": json.dumps(model.flip_pairs if model.flip_test else None),
        "kpreg.confidence": model.describe_confidence(),
    }


@contextlib.contextmanager
def _quiet_torchscript_deprecation() -> Iterator[None]:
    """torch ≥ 2.9 warns on every ``torch.jit`` call that TorchScript is deprecated; the module docstring
    says why it is still offered, so the warning is not repeated to the user at each call."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=FutureWarning)
        yield


def _portable(model: KeypointNetwork) -> KeypointNetwork:
    """A CPU copy in eval mode with contiguous (NCHW) weights and no layout conversion in the graph: the memory
    layout is a speed setting of the runtime, not part of the model."""
    portable = copy.deepcopy(model).cpu().eval()
    portable.channels_last = False
    return portable.to(memory_format=torch.contiguous_format)


def _example(model: KeypointNetwork, batch: int, input_size: Sequence[int] | None) -> torch.Tensor:
    h, w = input_size if input_size is not None else model.input_size
    if (int(h), int(w)) != model.input_size:
        raise ExportError(f"input_size {h}x{w} differs from the head's input size "
                          f"{model.input_size[0]}x{model.input_size[1]} (the head's layers are built for it)")
    return torch.randn(batch, 3, int(h), int(w), generator=torch.Generator().manual_seed(0))


def export_onnx(
    model: KeypointNetwork,
    path: str | Path,
    input_size: Sequence[int] | None = None,
    opset: int = DEFAULT_OPSET,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write ``model`` as ONNX with a dynamic batch axis; returns the path.

    ``input_size`` (H, W) must be the head's (it is checked); ``metadata`` entries are added to the
    model's ``metadata_props`` after ``default_metadata``.
    """
    for package in ("onnx", "onnxscript"):
        if importlib.util.find_spec(package) is None:
            raise ExportError(f"ONNX export needs the optional package '{package}': pip install onnx onnxscript")
    import onnx

    check_opset(opset)
    path = Path(path)
    portable = _portable(model)
    example = _example(portable, 2, input_size)  # batch 2: a batch of 1 would be specialised by torch.export
    batch = torch.export.Dim("batch", min=1)
    with torch.no_grad():
        program = torch.onnx.export(
            portable, (example,), dynamo=True, opset_version=opset, dynamic_shapes=({0: batch},),
            input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES), verbose=False,
        )
    if program is None:  # only the legacy exporter writes directly
        raise ExportError("torch.onnx.export returned no program")
    path.parent.mkdir(parents=True, exist_ok=True)
    program.save(path)  # weights > 2 GB go to an external data file beside it
    proto = onnx.load(str(path), load_external_data=False)
    written = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if written != opset:  # the exporter logs a failed conversion and keeps its own opset: say so, keep no file
        path.unlink()
        raise ExportError(f"opset {opset}: torch's ONNX exporter could not convert the graph to it (it wrote opset "
                          f"{written}); export at opset {DEFAULT_OPSET}, the exporter's own")
    props = {p.key: p.value for p in proto.metadata_props}
    onnx.helper.set_model_props(proto, {**props, **default_metadata(portable), **(metadata or {})})
    onnx.save(proto, str(path))
    return path


def export_torchscript(
    model: KeypointNetwork,
    path: str | Path,
    input_size: Sequence[int] | None = None,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Trace ``model`` to TorchScript (see the module docstring for why a trace); returns the path.

    The metadata is stored as the extra file ``kpreg.json`` (``torch.jit.load(path, _extra_files=...)``).
    """
    path = Path(path)
    portable = _portable(model)
    example = _example(portable, 2, input_size)
    checks = [(_example(portable, n, input_size),) for n in (1, 3)]  # the trace must not depend on the batch
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = {METADATA_FILE: json.dumps({**default_metadata(portable), **(metadata or {})})}
    with torch.no_grad(), _quiet_torchscript_deprecation():
        traced = torch.jit.trace(portable, (example,), check_inputs=checks)
        checked = torch.jit.script(_InputCheck(traced, portable.input_size))
        torch.jit.save(checked, str(path), _extra_files=extra)
    return path


class _InputCheck(torch.nn.Module):
    """The traced network behind a check of its input's shape. A trace replays the shapes it was traced with: a
    crop of another size would run through the convolutions and decode to coordinates on a wrong scale without a
    word, where ONNX Runtime refuses it by the graph's fixed dimensions. Scripted, so the check is in the file."""

    def __init__(self, network: torch.nn.Module, input_size: tuple[int, int]) -> None:
        super().__init__()
        self.network = network
        self.height = int(input_size[0])
        self.width = int(input_size[1])

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if images.dim() != 4 or images.size(1) != 3 or images.size(2) != self.height or images.size(3) != self.width:
            raise ValueError(f"kpreg: images must be (batch, 3, {self.height}, {self.width}) normalised crops, "
                             f"got {list(images.shape)}")
        return self.network(images)


@dataclass(frozen=True)
class Parity:
    """Largest differences of one runtime against PyTorch on the same crops."""

    runtime: str  # "onnxruntime" or "torchscript"
    max_coord_px: float  # max |Δ coords|, input pixels, over the batch, keypoints and both axes
    max_confidence: float  # max |Δ confidence|


def parity(
    model: KeypointNetwork,
    images: torch.Tensor,
    onnx_path: str | Path | None = None,
    torchscript_path: str | Path | None = None,
) -> list[Parity]:
    """Run (B, 3, H, W) normalised ``images`` through PyTorch and each given exported file; on CPU."""
    if onnx_path is None and torchscript_path is None:
        raise ExportError("parity needs an ONNX file, a TorchScript file or both")
    portable = _portable(model)
    images = images.detach().float().cpu()
    with torch.no_grad():
        ref_coords, ref_conf = (t.numpy() for t in portable(images))
    out: list[Parity] = []
    if onnx_path is not None:
        if importlib.util.find_spec("onnxruntime") is None:
            raise ExportError("the ONNX parity check needs the optional package 'onnxruntime': pip install onnxruntime")
        import onnxruntime as ort

        session = ort.InferenceSession(str(_existing(onnx_path)), providers=["CPUExecutionProvider"])
        coords, conf = session.run(list(OUTPUT_NAMES), {INPUT_NAME: images.numpy()})
        out.append(Parity("onnxruntime", _max_diff(coords, ref_coords), _max_diff(conf, ref_conf)))
    if torchscript_path is not None:
        with torch.no_grad(), _quiet_torchscript_deprecation():
            scripted = torch.jit.load(str(_existing(torchscript_path)), map_location="cpu")
            coords, conf = (t.numpy() for t in scripted(images))
        out.append(Parity("torchscript", _max_diff(coords, ref_coords), _max_diff(conf, ref_conf)))
    return out


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"exported model not found: {path}")
    return path


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b|; equal non-finite values (NaN, ±inf in both) count as equal, any other mismatch as inf."""
    if a.shape != b.shape:
        raise ExportError(f"output shapes differ: {a.shape} vs {b.shape}")
    a, b = a.astype(np.float64), b.astype(np.float64)
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    diff = np.where(same, 0.0, np.abs(a - b))
    diff = np.where(np.isnan(diff), np.inf, diff)
    return float(diff.max()) if diff.size else 0.0
