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
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from rich.console import Console

from kpreg.backbone import BackboneError
from kpreg.inference.export import ExportError, export_onnx, export_torchscript, parity
from kpreg.inference.rebuild import rebuild
from kpreg.training.checkpoint import CheckpointMismatchError

FORMATS = ("onnx", "torchscript")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="export.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="a kpreg checkpoint")
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--out", required=True, help="the file to write (.onnx / .pt)")
    parser.add_argument("--config", help="a run's config.yaml, checked against the checkpoint (optional)")
    flip = parser.add_mutually_exclusive_group()
    flip.add_argument("--flip", dest="flip", action="store_true", default=None, help="flip test in the graph")
    flip.add_argument("--no-flip", dest="flip", action="store_false", help="no flip test in the graph")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    parser.add_argument("--no-check", action="store_true", help="skip the parity check against PyTorch")
    return parser


def export_checkpoint(ckpt: str | Path, fmt: str, out: str | Path, flip: bool | None = None,
                      config: str | Path | None = None, opset: int = 18) -> tuple[Path, torch.nn.Module]:
    """Write the checkpoint's model as ``fmt``; returns the path and the PyTorch model it was exported from."""
    if fmt not in FORMATS:
        raise ExportError(f"format must be one of {FORMATS}, got {fmt!r}")
    model = rebuild(ckpt, config, flip_test=flip)
    net = model.network
    metadata = model.info.to_metadata()
    if fmt == "onnx":
        return export_onnx(net, out, opset=opset, metadata=metadata), net
    with warnings.catch_warnings():
        # The trace warns about shape tests such as the neck's "is the feature map already the output grid?":
        # they depend on the input size, which the export fixes, so the traced branch is the right one.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return export_torchscript(net, out, metadata=metadata), net


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    console = Console(soft_wrap=True)
    try:
        path, net = export_checkpoint(args.ckpt, args.format, args.out, args.flip, args.config, args.opset)
        flip = "with" if net.flip_test else "without"
        console.print(f"wrote {path} ({args.format}, {flip} the flip test, dynamic batch, input "
                      f"{net.input_size[0]}x{net.input_size[1]})", highlight=False)
        if args.no_check:
            return
        if args.format == "onnx" and importlib.util.find_spec("onnxruntime") is None:
            console.print("parity check skipped: pip install onnxruntime to run it", highlight=False)
            return
        crops = torch.randn(4, 3, *net.input_size, generator=torch.Generator().manual_seed(0))
        paths = {"onnx_path": path} if args.format == "onnx" else {"torchscript_path": path}
        for p in parity(net, crops, **paths):
            console.print(f"parity vs PyTorch ({p.runtime}, 4 random crops): max |Δ coords| {p.max_coord_px:.2e} "
                          f"input px, max |Δ confidence| {p.max_confidence:.2e}", highlight=False)
    except (ValueError, FileNotFoundError, BackboneError, CheckpointMismatchError) as err:
        if os.environ.get("KPREG_DEBUG"):
            raise
        Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {err}", highlight=False)
        sys.exit(2)
