"""int8 ONNX models: static quantisation of an exported model, calibrated on the crops it will see.

``quantize_int8(src, out, crops)`` turns ``export.py``'s float32 ONNX file into an int8 one with ONNX Runtime's
quantiser (``onnxruntime.quantization``): QDQ format (QuantizeLinear / DequantizeLinear pairs that ONNX Runtime
fuses into integer kernels), convolution weights int8 per output channel, activations uint8 with ranges from
the calibration crops (min / max), convolutions only (``Conv`` nodes) — the head's decoding and the calibration
map stay float32. The graph is pre-processed first (``quant_pre_process``: shape inference and ONNX Runtime's own fusions), as the quantiser asks.
The file keeps its ``kpreg.*`` metadata, so ``predict.py --backend onnxruntime --model FILE`` runs it as it
runs the float32 file.

Calibration crops matter: they must look like what the model sees in use (crops of the animal for a model
trained on crops), or the activation ranges are wrong and the error grows. ``docs/performance.md`` gives the
speed and the accuracy cost measured on DeepLabCut's openfield frames.
"""

from __future__ import annotations

import importlib.util
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from kpreg.inference.export import INPUT_NAME, ExportError

CALIBRATION_BATCH = 8


def quantize_int8(src: str | Path, out: str | Path, crops: np.ndarray) -> Path:
    """Write ``src`` (float32 ONNX from ``export.py``) as an int8 model to ``out``, its activation ranges from
    ``crops`` (N, 3, H, W) float32 normalised crops, as ``Predictor.prepare`` makes them."""
    if importlib.util.find_spec("onnxruntime") is None:
        raise ExportError("int8 quantisation needs onnxruntime: pip install 'kpreg[export]'")
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    crops = np.ascontiguousarray(crops, dtype=np.float32)
    if crops.ndim != 4 or crops.shape[1] != 3 or len(crops) == 0:
        raise ExportError(f"calibration crops must be (N, 3, H, W) with N ≥ 1, got {crops.shape}")

    class Crops(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches: Iterator[np.ndarray] = iter(
                crops[i:i + CALIBRATION_BATCH] for i in range(0, len(crops), CALIBRATION_BATCH))

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._batches, None)
            return None if batch is None else {INPUT_NAME: batch}

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kpreg-int8-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(out), Crops(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                        op_types_to_quantize=["Conv"], calibrate_method=CalibrationMethod.MinMax)
    return out
