"""``python export.py --ckpt CKPT --format onnx|torchscript --out FILE``: a checkpoint as a standalone model file.

The exported graph takes a normalised crop batch ``images`` (batch, 3, H, W) — dynamic batch size — and
returns ``coords`` (batch, K, 2) x,y input pixels and ``confidence`` (batch, K): the head's decoding is inside,
and so is the flip test unless ``--no-flip`` (by default it follows the run's evaluation setting, as
``predict.py`` does). The file carries the keypoint names, skeleton, left/right pairs, input size,
normalisation and calibration map as metadata (``kpreg.inference.model_info``), so ``predict.py --backend
onnxruntime --model FILE`` needs nothing else. After writing, the file is run on random crops against PyTorch
and the largest differences are printed (``--no-check`` skips that).

    python export.py --ckpt runs/synthetic/heatmap/checkpoints/best.ckpt --format onnx --out model.onnx
    python export.py --ckpt CKPT --format torchscript --out model.pt --no-flip
    python export.py --ckpt CKPT --format onnx --out model_int8.onnx --int8 video.mp4 --detections boxes.csv

``--int8 SOURCE`` writes an int8 model instead (``kpreg.inference.quantize``): the float32 export quantised with
activation ranges from ``--calibration-frames`` frames of SOURCE (images, a folder, a glob or a video, spread
evenly over it), cropped as ``predict.py`` crops them: whole frames, or the boxes of ``--detections`` (same
formats as predict.py's) for a model trained on crops of the animal. The parity check then runs on those crops.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from kpreg.cli.errors import USER_ERRORS, CommandParser, fail
from kpreg.cli.outputs import OVERWRITE_HELP, OutputError, check_file
from kpreg.inference.export import ExportError, check_opset, export_onnx, export_torchscript, parity
from kpreg.inference.rebuild import RebuiltModel, rebuild

FORMATS = ("onnx", "torchscript")


def _parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="export.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="a kpreg checkpoint")
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--out", required=True, help="the file to write (.onnx / .pt)")
    parser.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    parser.add_argument("--config", help="a run's config.yaml, checked against the checkpoint (optional)")
    flip = parser.add_mutually_exclusive_group()
    flip.add_argument("--flip", dest="flip", action="store_true", default=None, help="flip test in the graph")
    flip.add_argument("--no-flip", dest="flip", action="store_false", help="no flip test in the graph")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    parser.add_argument("--no-check", action="store_true", help="skip the parity check against PyTorch")
    int8 = parser.add_argument_group("int8 (ONNX only)")
    int8.add_argument("--int8", metavar="SOURCE", help="quantise to int8, calibrated on frames of SOURCE (images, "
                      "folder, glob or video)")
    int8.add_argument("--detections", help="boxes of SOURCE's frames (predict.py's formats); default whole frames")
    int8.add_argument("--calibration-frames", type=int, default=64, help="frames of SOURCE used (evenly spread)")
    return parser


def calibration_crops(ckpt: str | Path, source: str, detections: str | None, frames: int,
                      flip: bool | None = None, config: str | Path | None = None) -> torch.Tensor:
    """(N, 3, H, W) normalised crops of ``frames`` frames spread evenly over ``source``, cut as predict.py cuts
    them (whole frames, or ``detections``' boxes; a frame without a box gives no crop)."""
    from kpreg.inference.boxes import BoxSelector, load_detections
    from kpreg.inference.predictor import Predictor
    from kpreg.inference.sources import open_source

    if frames < 1:
        raise ValueError(f"--calibration-frames must be at least 1, got {frames}")
    stream = open_source(source)
    boxes = load_detections(detections, 0.0, None, None) if detections else None
    selector = BoxSelector(stream, boxes)
    predictor = Predictor.from_checkpoint(ckpt, "cpu", flip, config)
    total = len(stream)
    wanted = None if not total else set(np.linspace(0, total - 1, min(frames, total)).round().astype(int).tolist())
    batches = []
    for frame in stream:
        if wanted is None and len(batches) >= frames:
            break
        if wanted is None or frame.index in wanted:
            batches.append(predictor.prepare(frame.image, selector(frame) if boxes else None).batch)
    crops = torch.cat(batches) if batches else torch.zeros(0)
    if len(crops) == 0:
        raise ValueError(f"{source}: no calibration crop (no frame" + (f" with a box in {detections})" if boxes
                                                                       else ")"))
    return crops  # (N, 3, H, W)


def export_checkpoint(ckpt: str | Path, fmt: str, out: str | Path, flip: bool | None = None,
                      config: str | Path | None = None, opset: int = 18) -> tuple[Path, torch.nn.Module]:
    """Write the checkpoint's model as ``fmt``; returns the path and the PyTorch model it was exported from."""
    if fmt not in FORMATS:
        raise ExportError(f"format must be one of {FORMATS}, got {fmt!r}")
    return export_model(rebuild(ckpt, config, flip_test=flip), fmt, out, opset)


def export_model(model: RebuiltModel, fmt: str, out: str | Path, opset: int = 18) -> tuple[Path, torch.nn.Module]:
    """Write a rebuilt checkpoint's model as ``fmt``; returns the path and the PyTorch network."""
    net = model.network
    metadata = model.info.to_metadata()
    if fmt == "onnx":
        return export_onnx(net, out, opset=opset, metadata=metadata), net
    with warnings.catch_warnings():
        # The trace warns about shape tests such as the neck's "is the feature map already the output grid?":
        # they depend on the input size, which the export fixes, so the traced branch is the right one.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return export_torchscript(net, out, metadata=metadata), net


def check_arguments(args: argparse.Namespace) -> None:
    """``--out`` (``kpreg.cli.outputs``: a file, new unless ``--overwrite``, named so that ``kpreg.load`` and
    ``predict.py`` read it as its format) and ``--opset``, before any work."""
    out = check_file(args.out, "--out", args.overwrite)
    onnx_name = out.suffix.lower() == ".onnx"
    if args.format == "onnx" and not onnx_name:
        raise OutputError(f"--out {out}: name an ONNX file .onnx (kpreg.load and predict.py read the format from "
                          "the name)")
    if args.format == "torchscript" and (onnx_name or out.suffix.lower() == ".ckpt"):
        raise OutputError(f"--out {out}: --format torchscript writes TorchScript, which kpreg.load and predict.py "
                          f"would read as {'ONNX' if onnx_name else 'a checkpoint'}: name it .pt")
    if args.format == "onnx" and importlib.util.find_spec("onnx") is not None:
        check_opset(args.opset, "--opset")


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    console = Console(soft_wrap=True, markup=False)
    try:
        check_arguments(args)
        if args.int8 is not None:
            if args.format != "onnx":
                raise ValueError("--int8 quantises an ONNX model: give --format onnx")
            _export_int8(args, console)
            return
        path, net = export_model(rebuild(args.ckpt, args.config, flip_test=args.flip), args.format, args.out,
                                 args.opset)
        flip = "with" if net.flip_test else "without"
        console.print(f"wrote {path} ({args.format}, {flip} the flip test, dynamic batch, input "
                      f"{net.input_size[0]}x{net.input_size[1]})", highlight=False)
        if args.no_check:
            return
        if args.format == "onnx" and importlib.util.find_spec("onnxruntime") is None:
            console.print("parity check skipped: pip install onnxruntime to run it", highlight=False)
            return
        crops = torch.randn(4, 3, *net.input_size, generator=torch.Generator().manual_seed(0))
        _print_parity(console, net, crops, "4 random crops",
                      {"onnx_path": path} if args.format == "onnx" else {"torchscript_path": path})
    except USER_ERRORS as err:  # the user's input (kpreg.cli.errors): one line, exit code 2
        fail(err)


def _export_int8(args: argparse.Namespace, console: Console) -> None:
    from kpreg.inference.quantize import quantize_int8

    crops = calibration_crops(args.ckpt, args.int8, args.detections, args.calibration_frames, args.flip, args.config)
    with tempfile.TemporaryDirectory(prefix="kpreg-export-") as tmp:
        fp32, net = export_model(rebuild(args.ckpt, args.config, flip_test=args.flip), "onnx",
                                 Path(tmp) / "fp32.onnx", args.opset)
        path = quantize_int8(fp32, args.out, crops.numpy())
    flip = "with" if net.flip_test else "without"
    console.print(f"wrote {path} (onnx int8, {flip} the flip test, dynamic batch, input {net.input_size[0]}x"
                  f"{net.input_size[1]}; calibrated on {len(crops)} crops of {args.int8})", highlight=False)
    if not args.no_check:
        _print_parity(console, net, crops, f"the {len(crops)} calibration crops", {"onnx_path": path})


def _print_parity(console: Console, net: torch.nn.Module, crops: torch.Tensor, what: str,
                  paths: dict[str, Path]) -> None:
    for p in parity(net, crops, **paths):
        console.print(f"parity vs PyTorch ({p.runtime}, {what}): max |Δ coords| {p.max_coord_px:.2e} input px, "
                      f"max |Δ confidence| {p.max_confidence:.2e}", highlight=False)
