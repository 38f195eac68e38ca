#!/usr/bin/env python
"""Prediction speed and memory: the demo model on a generated video, PyTorch against ONNX Runtime.

The demo model (``make demo``: ResNet-18 to layer2, heatmap head, 64 × 64 input) predicts on a generated
1,000-frame video (synthetic figures, 64 × 64 renders upscaled to 256 × 256, MPEG-4 in an MP4 — every OpenCV
wheel writes and reads it). Four configurations run interleaved, ``--rounds`` times, so that a shared machine's
load falls on all of them alike; each figure is the median over rounds, each ratio the median of the rounds'
ratios:

* bare forward, PyTorch / ONNX Runtime: the network alone (flip test included, as predict.py runs it) on crops
  decoded and cropped beforehand, in batches of ``--batch``; PyTorch in the run's memory layout (the demo's
  config asks for channels_last, NHWC) and, as a reference, in plain NCHW;
* predict.py, PyTorch / ONNX Runtime: the command's whole loop (``kpreg.cli.predict.run``: decoding, cropping,
  the network, mapping back, ``predictions.json`` and ``predictions.csv``), frames per second from the first
  frame to the last (model loading excluded).

Ratios: ONNX Runtime / PyTorch (target ≥ 1.3) and predict.py / bare forward (target ≥ 0.8). Both
runtimes get the same number of threads (``--threads``, default torch's setting: ``OMP_NUM_THREADS``). Peak
memory: ``predict.py --draw`` (annotated MP4 too) as a fresh process on the first 100 and on all 1,000 frames,
its peak resident set size (``VmHWM``). Parity: the exported ONNX and TorchScript files against PyTorch on
the video's crops (per head, on random weights: ``benchmarks/export_parity.py``).

    python benchmarks/predict_speed.py [--ckpt runs/synthetic/heatmap/checkpoints/best.ckpt] [--json out.json]
    python benchmarks/predict_speed.py --quick --ckpt CKPT     # 40 frames, one round: a smoke run
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from rich.console import Console

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from anywhere without installing kpreg
from _report import write_json  # noqa: E402  benchmarks/ is on sys.path when a script runs

from kpreg.cli.export import export_checkpoint  # noqa: E402
from kpreg.cli.predict import _parser as predict_parser  # noqa: E402
from kpreg.cli.predict import run as predict_run  # noqa: E402
from kpreg.data.synthetic import render_figure  # noqa: E402
from kpreg.inference.predictor import Predictor  # noqa: E402
from kpreg.inference.rebuild import rebuild  # noqa: E402
from kpreg.inference.render import draw_predictions  # noqa: E402
from kpreg.inference.runtimes import TorchRuntime  # noqa: E402

DEMO_CKPT = ROOT / "runs" / "synthetic" / "heatmap" / "checkpoints" / "best.ckpt"
SEED = 777  # figures unseen in training (the training split uses other streams)


def make_video(path: Path, frames: int, size: int, render: int = 64, fps: float = 25.0) -> Path:
    """``frames`` synthetic figures rendered at ``render`` px, upscaled to ``size`` (bicubic), as an MP4."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (size, size))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    for i in range(frames):
        image = render_figure(SEED, i, render, True).image  # (r, r, 3) uint8 RGB
        big = cv2.resize(image, (size, size), interpolation=cv2.INTER_CUBIC)
        writer.write(cv2.cvtColor(big, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def decoded_crops(predictor: Predictor, video: Path) -> torch.Tensor:
    """(N, 3, H, W) normalised whole-frame crops of every frame, made before any timing."""
    capture = cv2.VideoCapture(str(video))
    batches = []
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        batches.append(predictor.prepare(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)).batch)
    capture.release()
    return torch.cat(batches)


def bare_forward(predictor: Predictor, crops: torch.Tensor, batch: int) -> float:
    """Frames per second of the network alone (one crop per frame), batches of ``batch``."""
    predictor.run(crops[:batch])  # warm-up (allocator, ONNX Runtime's first run)
    start = time.perf_counter()
    for i in range(0, len(crops), batch):
        predictor.run(crops[i:i + batch])
    return len(crops) / (time.perf_counter() - start)


def predict_command(args: list[str]) -> float:
    """Frames per second of predict.py's loop, run in this process (output to a throw-away console)."""
    stats = predict_run(predict_parser().parse_args(args), Console(file=io.StringIO()))
    return stats.frames_per_second


# Runs predict.py in a fresh interpreter and records its peak RSS from /proc/self/status (VmHWM) at exit: unlike
# wait4's ru_maxrss, VmHWM belongs to the process image after exec, not to the forked copy of this big process.
_MEASURE = """
import os, runpy, sys
out, sys.argv = sys.argv[1], sys.argv[2:]
sys.path.insert(0, os.path.dirname(os.path.abspath(sys.argv[0])))  # as `python predict.py` would
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    status = open("/proc/self/status").read()
    open(out, "w").write(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))
"""


def peak_memory_mb(args: list[str], work: Path) -> float:
    """Peak resident set size of ``predict.py`` run as a fresh process, in MiB (Linux)."""
    record = work / "vmhwm.txt"
    env = {**os.environ, "KPREG_PROGRESS": "none"}
    proc = subprocess.run([sys.executable, "-c", _MEASURE, str(record), str(ROOT / "predict.py"), *args], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"predict.py failed: {proc.stderr[-2000:]}")
    return int(record.read_text()) / 1024.0  # kB → MiB


def drawn_frames(predictor: Predictor, out: Path, indices: list[int], size: int) -> Path:
    """A strip of drawn frames for the documentation (the same frames as the video's)."""
    tiles = []
    for i in indices:
        image = cv2.resize(render_figure(SEED, i, 64, True).image, (size, size), interpolation=cv2.INTER_CUBIC)
        result = predictor.predict(image)
        tiles.append(draw_predictions(image, result.keypoints, result.confidence, predictor.skeleton, 0.3))
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), cv2.cvtColor(np.concatenate(tiles, axis=1), cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", default=str(DEMO_CKPT), help="the model (default: make demo's checkpoint)")
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--memory-frames", type=int, default=100, help="the shorter video of the memory figure")
    parser.add_argument("--size", type=int, default=256, help="video frame side")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="network threads for both runtimes")
    parser.add_argument("--work", default=None, help="folder for the video and outputs (default: a temporary one)")
    parser.add_argument("--frame-png", default=None, help="also draw a strip of 3 predicted frames to this PNG")
    parser.add_argument("--quick", action="store_true", help="40 frames, one round, memory of PyTorch at 10 and 40")
    parser.add_argument("--skip-memory", action="store_true", help="leave out the peak-memory runs")
    parser.add_argument("--json", help="also write the numbers to this JSON file")
    args = parser.parse_args()
    if args.quick:
        args.frames, args.memory_frames, args.rounds = 40, 10, 1
    if not Path(args.ckpt).is_file():
        sys.exit(f"checkpoint not found: {args.ckpt} (make demo trains it, ~3 minutes on 2 cores)")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    os.environ["KPREG_PROGRESS"] = "none"

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        long_video = make_video(work / "long.mp4", args.frames, args.size)
        short_video = make_video(work / "short.mp4", args.memory_frames, args.size)
        onnx_path, _ = export_checkpoint(args.ckpt, "onnx", work / "demo.onnx")
        print(f"generated {args.frames} + {args.memory_frames} frames and exported ONNX in "
              f"{time.perf_counter() - t0:.0f} s; {threads} network thread(s)")
        models = {
            "PyTorch": Predictor.from_checkpoint(args.ckpt, "cpu", batch_size=args.batch),
            "ONNX Runtime": Predictor.from_exported(onnx_path, "onnxruntime", batch_size=args.batch, threads=threads),
        }
        # PyTorch's default follows the run's memory layout (the demo's: channels_last); NCHW is plain PyTorch.
        plain = rebuild(args.ckpt)
        plain.network.channels_last = False
        nchw = Predictor(TorchRuntime(plain.network.to(memory_format=torch.contiguous_format), "cpu"),
                         plain.info, args.batch)
        crops = decoded_crops(models["PyTorch"], long_video)
        # Parity on the video's real crops, the trained model (the per-head table of export_parity.py uses random
        # weights, whose flat heatmaps are the hard case for sub-pixel decoders).
        script_path, _ = export_checkpoint(args.ckpt, "torchscript", work / "demo.pt")
        reference = models["PyTorch"].run(crops)
        parity = {}
        for name, other in (("ONNX Runtime", models["ONNX Runtime"]),
                            ("TorchScript", Predictor.from_exported(script_path, "torchscript", batch_size=args.batch))):
            coords, confidence = other.run(crops)
            parity[name] = [float((coords - reference[0]).abs().max()), float((confidence - reference[1]).abs().max())]
        common = ["--input", str(long_video), "--batch-size", str(args.batch), "--threads", str(threads),
                  "--device", "cpu"]
        commands = {
            "PyTorch": ["--ckpt", args.ckpt, *common, "--out", str(work / "out_torch")],
            "ONNX Runtime": ["--backend", "onnxruntime", "--model", str(onnx_path), *common,
                             "--out", str(work / "out_onnx")],
        }
        fps: dict[str, list[float]] = {}
        for r in range(args.rounds):  # interleaved: a change in the machine's load hits every configuration
            for name in models:
                fps.setdefault(f"bare forward, {name}", []).append(bare_forward(models[name], crops, args.batch))
                fps.setdefault(f"predict.py, {name}", []).append(predict_command(commands[name]))
            fps.setdefault("bare forward, PyTorch NCHW", []).append(bare_forward(nchw, crops, args.batch))
            print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{k} {v[-1]:.0f}" for k, v in fps.items()))

        def ratio(a: str, b: str) -> float:
            return statistics.median(x / y for x, y in zip(fps[a], fps[b]))

        ratios = {
            "ONNX Runtime / PyTorch, bare forward": ratio("bare forward, ONNX Runtime", "bare forward, PyTorch"),
            "ONNX Runtime / PyTorch, predict.py": ratio("predict.py, ONNX Runtime", "predict.py, PyTorch"),
            "ONNX Runtime / PyTorch NCHW, bare forward": ratio("bare forward, ONNX Runtime",
                                                               "bare forward, PyTorch NCHW"),
            "PyTorch (run's layout) / PyTorch NCHW, bare forward": ratio("bare forward, PyTorch",
                                                                         "bare forward, PyTorch NCHW"),
            "predict.py / bare forward, PyTorch": ratio("predict.py, PyTorch", "bare forward, PyTorch"),
            "predict.py / bare forward, ONNX Runtime": ratio("predict.py, ONNX Runtime", "bare forward, ONNX Runtime"),
        }
        memory = {}
        backends = {"PyTorch": ["--ckpt", args.ckpt],
                    "ONNX Runtime": ["--backend", "onnxruntime", "--model", str(onnx_path)]}
        for label, video in () if args.skip_memory else ((args.memory_frames, short_video), (args.frames, long_video)):
            for name, base in list(backends.items())[:1 if args.quick else None]:
                memory[f"{name}, {label} frames"] = peak_memory_mb(
                    [*base, "--input", str(video), "--out", str(work / f"mem_{label}"), "--draw", "--device", "cpu",
                     "--batch-size", str(args.batch), "--threads", str(threads)], work)
        if args.frame_png:
            # 240 px frames keep the PNG under 300 kB (noisy backgrounds compress poorly)
            print(f"wrote {drawn_frames(models['PyTorch'], Path(args.frame_png), [3, 8, 15], 240)}")

    median = {k: statistics.median(v) for k, v in fps.items()}
    print(f"\nPrediction speed, {args.frames}-frame {args.size}×{args.size} MP4, {Path(args.ckpt).name}, batch "
          f"{args.batch}, flip test on, {threads} network thread(s), median of {args.rounds} interleaved round(s)\n")
    print("| configuration | frames/s |\n|---|---|")
    for name, value in median.items():
        print(f"| {name} | {value:.0f} |")
    print("\n| ratio | value |\n|---|---|")
    for name, value in ratios.items():
        print(f"| {name} | {value:.2f} |")
    print(f"\n| parity vs PyTorch on the video's {len(crops)} crops | max |Δ coords| input px | max |Δ confidence| |")
    print("|---|---|---|")
    for name, (px, conf) in parity.items():
        print(f"| {name} | {px:.1e} | {conf:.1e} |")
    print("\n| predict.py --draw, peak RSS | MiB |\n|---|---|")
    for name, value in memory.items():
        print(f"| {name} | {value:.0f} |")
    write_json(args.json, {"frames": args.frames, "size": args.size, "batch": args.batch, "threads": threads,
                           "rounds": args.rounds, "fps": fps, "median_fps": median, "ratios": ratios,
                           "peak_rss_mib": memory, "parity": parity, "checkpoint": str(args.ckpt)})


if __name__ == "__main__":
    main()
