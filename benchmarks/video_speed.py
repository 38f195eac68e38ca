#!/usr/bin/env python
"""predict.py on a real video: frames/s against the bare network, PyTorch / ONNX Runtime / int8, one core and two.

Made for DeepLabCut's openfield video (``m3v1mp4.mp4``, 640 × 480) and a kpreg openfield model, to put beside
DeepLabCut's ``analyze_videos`` (``benchmarks/peers/deeplabcut``); any checkpoint and video work. The model sees
crops of ``--detections`` boxes (predict.py's CSV: ``frame, x, y, w, h, score``), one per frame.

What it measures, in one process:

* **speed** (``--skip-speed`` leaves it out; time it under ``cpuslot --exclusive``): for each backend — PyTorch
  (the checkpoint), ONNX Runtime float32 and int8 (``export.py`` / ``export.py --int8``) — predict.py's whole loop
  (``kpreg.cli.predict.run``: decoding, cropping, network, mapping back, writing predictions.json / .csv) on the
  first ``--frames`` frames, and the bare forward of the same crops (decoded and cropped beforehand), in batches
  of ``--batch``; on both cores (``--threads 2``) and on one core (the process pinned to CPU 0, one thread).
  Configurations run interleaved, ``--rounds`` times; figures are medians, ratios medians of per-round ratios.
  A batch-size sweep of the bare forward and a serial per-stage profile (ms per frame) come with it.
* **accuracy cost of int8** (with ``--project``): each backend on the project's held-out frames (kpreg's split,
  ``val_every`` 5) cropped to the labelled extent, as ``evaluate.py`` crops them, scored with kpreg's pixel
  metrics (``benchmarks/peers/deeplabcut/score.py``): mean / median / RMSE px and the paired difference.
* **peak memory** (``--memory``): predict.py on the whole video as a fresh process, peak RSS (``VmHWM``).

    python benchmarks/video_speed.py --ckpt CKPT --video m3v1mp4.mp4 --detections boxes.csv --work DIR \\
        --project /path/to/dlc-openfield --memory --skip-speed --json acc.json     # any slot
    cpuslot --exclusive python benchmarks/video_speed.py --ckpt CKPT --video m3v1mp4.mp4 \\
        --detections boxes.csv --work DIR --frames 600 --json speed.json              # the timings
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from rich.console import Console

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from anywhere without installing kpreg
sys.path.insert(0, str(ROOT / "benchmarks" / "peers" / "deeplabcut"))
from _report import write_json  # noqa: E402  benchmarks/ is on sys.path when a script runs
from predict_speed import peak_memory_mb  # noqa: E402
from score import heldout_truth, score  # noqa: E402

from kpreg.cli.export import calibration_crops, export_checkpoint  # noqa: E402
from kpreg.cli.predict import _parser as predict_parser  # noqa: E402
from kpreg.cli.predict import run as predict_run  # noqa: E402
from kpreg.formats.deeplabcut import DLCTableWriter  # noqa: E402
from kpreg.inference.boxes import Box, load_detections  # noqa: E402
from kpreg.inference.predictor import Predictor  # noqa: E402
from kpreg.inference.quantize import quantize_int8  # noqa: E402
from kpreg.inference.writers import PredictionsWriter  # noqa: E402

BACKENDS = ("PyTorch", "ONNX Runtime", "ONNX Runtime int8")


def export_models(ckpt: str, work: Path, video: str, detections: str, calibration_frames: int) -> dict[str, Path]:
    """The float32 ONNX file and the int8 one (calibrated on the video's boxed crops), made once in ``work``."""
    fp32, int8 = work / "model.onnx", work / "model_int8.onnx"
    if not fp32.is_file():
        export_checkpoint(ckpt, "onnx", fp32)
    if not int8.is_file():
        crops = calibration_crops(ckpt, video, detections, calibration_frames)
        quantize_int8(fp32, int8, crops.numpy())
    return {"ONNX Runtime": fp32, "ONNX Runtime int8": int8}


def predictors(ckpt: str, models: dict[str, Path], threads: int, batch: int) -> dict[str, Predictor]:
    return {"PyTorch": Predictor.from_checkpoint(ckpt, "cpu", batch_size=batch),
            **{name: Predictor.from_exported(path, "onnxruntime", "cpu", batch_size=batch, threads=threads)
               for name, path in models.items()}}


def video_crops(predictor: Predictor, video: str, detections: str, frames: int) -> torch.Tensor:
    """(N, 3, H, W) normalised crops of the first ``frames`` frames, one box each, made before any timing."""
    boxes = load_detections(detections, 0.0, None, None)
    capture = cv2.VideoCapture(video)
    batches = []
    for i in range(frames):
        ok, bgr = capture.read()
        if not ok:
            break
        batches.append(predictor.prepare(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), boxes.boxes(i)).batch)
    capture.release()
    return torch.cat(batches)


def bare_forward(predictor: Predictor, crops: torch.Tensor, batch: int) -> float:
    """Frames per second of the network alone (one crop per frame), batches of ``batch``."""
    predictor.run(crops[:batch])  # warm-up
    start = time.perf_counter()
    for i in range(0, len(crops), batch):
        predictor.run(crops[i:i + batch])
    return len(crops) / (time.perf_counter() - start)


def predict_fps(args: list[str]) -> float:
    stats = predict_run(predict_parser().parse_args(args), Console(file=io.StringIO()))
    return stats.frames_per_second


def stage_profile(predictor: Predictor, video: str, detections: str, frames: int, batch: int,
                  work: Path) -> dict[str, float]:
    """ms per frame of each stage run one after the other (no overlap): decode, crop + normalise, network,
    map back, write."""
    boxes = load_detections(detections, 0.0, None, None)
    t = dict.fromkeys(("decode", "crop", "network", "map back", "write"), 0.0)
    capture = cv2.VideoCapture(video)
    images, preps = [], []
    for i in range(frames):
        a = time.perf_counter()
        ok, bgr = capture.read()
        if not ok:
            break
        images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        b = time.perf_counter()
        preps.append(predictor.prepare(images[-1], boxes.boxes(i)))
        t["decode"] += b - a
        t["crop"] += time.perf_counter() - b
    capture.release()
    results = []
    for i in range(0, len(preps), batch):
        group = preps[i:i + batch]
        a = time.perf_counter()
        coords, confidence = predictor.run(torch.cat([p.batch for p in group]))
        b = time.perf_counter()
        results += predictor._finish(group, coords, confidence)
        t["network"] += b - a
        t["map back"] += time.perf_counter() - b
    a = time.perf_counter()
    with PredictionsWriter(work / "profile.json") as js, \
            DLCTableWriter(work / "profile.csv", "kpreg", predictor.keypoint_names) as table:
        for i, p in enumerate(results):
            js.add(i, p.keypoints[0], p.confidence[0], 1.0, "video", i)
            table.add(i, p.keypoints[0], p.confidence[0])
    t["write"] = time.perf_counter() - a
    return {k: 1000 * v / len(preps) for k, v in t.items()}


def extent_box(keypoints: np.ndarray) -> Box:
    """The labelled extent as the DeepLabCut data module crops it (box edges around the pixel centres)."""
    xy = keypoints[np.isfinite(keypoints).all(-1)]  # (L, 2)
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    return Box(float(lo[0] + 0.5), float(lo[1] + 0.5), float(max(hi[0] - lo[0], 1.0)), float(max(hi[1] - lo[1], 1.0)))


def heldout_accuracy(models: dict[str, Predictor], project: str) -> dict[str, dict[str, float]]:
    """Each backend on the held-out frames, cropped to the labelled extent; kpreg's pixel metrics."""
    frames, names, truth, labelled, box = heldout_truth(project, 5)
    images = [cv2.cvtColor(cv2.imread(str(Path(project) / f)), cv2.COLOR_BGR2RGB) for f in frames]
    boxes = [[extent_box(np.where(labelled[i, :, None], truth[i], np.nan))] for i in range(len(frames))]
    out: dict[str, dict[str, float]] = {}
    errors: dict[str, np.ndarray] = {}
    for name, predictor in models.items():
        pred = np.stack([predictor.predict(image, np.array([[b.x, b.y, b.w, b.h]]))
                         .keypoints[0] for image, (b,) in zip(images, boxes)])  # (N, K, 2) image px
        out[name] = {k: float(v) for k, v in score(truth, labelled, box, pred, names).items()}
        errors[name] = np.linalg.norm(pred - truth, axis=-1)[labelled]  # (L,) px
    for name in BACKENDS[1:]:
        diff = errors[name] - errors["PyTorch"]
        out[name]["paired Δ px vs PyTorch, mean"] = float(diff.mean())
        out[name]["paired |Δ keypoint| px vs PyTorch, max"] = float(np.abs(diff).max())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--video", required=True)
    parser.add_argument("--detections", required=True, help="one box per frame: predict.py's CSV")
    parser.add_argument("--work", required=True, help="folder for the exported models and predict.py's outputs")
    parser.add_argument("--frames", type=int, default=600, help="first frames of the video to time")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--calibration-frames", type=int, default=64)
    parser.add_argument("--project", help="DeepLabCut project: held-out accuracy of each backend")
    parser.add_argument("--memory", action="store_true", help="peak RSS of predict.py on the whole video")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--locate-ckpt", help="a model trained with box_source both: predict.py without boxes, the "
                        "coarse-to-fine passes frame by frame against batched across frames")
    parser.add_argument("--whole-video", action="store_true",
                        help="also time predict.py on the whole video, one core, PyTorch and int8 (once)")
    parser.add_argument("--json")
    args = parser.parse_args()
    os.environ["KPREG_PROGRESS"] = "none"
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    models = export_models(args.ckpt, work, args.video, args.detections, args.calibration_frames)
    result: dict[str, object] = {"checkpoint": args.ckpt, "video": args.video, "frames": args.frames,
                                 "batch": args.batch, "rounds": args.rounds}

    if args.project:
        torch.set_num_threads(1)
        accuracy = heldout_accuracy(predictors(args.ckpt, models, 1, args.batch), args.project)
        result["heldout"] = accuracy
        print("| backend (held-out frames) | mean px | median px | RMSE px | paired Δ mean px |\n|---|---|---|---|---|")
        for name, r in accuracy.items():
            print(f"| {name} | {r['MeanError']:.2f} | {r['MedianError']:.2f} | {r['RMSE']:.2f} | "
                  f"{r.get('paired Δ px vs PyTorch, mean', 0.0):+.3f} |")

    if args.memory:
        memory = {}
        for name in BACKENDS:
            base = ["--ckpt", args.ckpt] if name == "PyTorch" else ["--backend", "onnxruntime", "--model",
                                                                    str(models[name])]
            memory[name] = peak_memory_mb([*base, "--input", args.video, "--detections", args.detections,
                                           "--out", str(work / "mem"), "--device", "cpu", "--threads", "1", "--overwrite"], work)
        result["peak_rss_mib_whole_video"] = memory
        print("\n| predict.py, whole video, peak RSS | MiB |\n|---|---|")
        for name, value in memory.items():
            print(f"| {name} | {value:.0f} |")

    if not args.skip_speed:
        result.update(speed(args, models, work))
    write_json(args.json, result)


def speed(args: argparse.Namespace, models: dict[str, Path], work: Path) -> dict[str, object]:
    cores = sorted(os.sched_getaffinity(0))
    settings = {"both cores": (set(cores[:2]), 2), "one core": ({cores[0]}, 1)}
    if len(cores) < 2:  # pinned to one CPU (a cpuslot without --exclusive): only the one-core setting is real
        del settings["both cores"]
    fps: dict[str, list[float]] = {}
    crops = None
    for r in range(args.rounds):
        for where, (cpus, threads) in settings.items():
            os.sched_setaffinity(0, cpus)  # the process and every thread it starts (decoding, cropping)
            torch.set_num_threads(threads)
            runners = predictors(args.ckpt, models, threads, args.batch)
            if crops is None:
                crops = video_crops(runners["PyTorch"], args.video, args.detections, args.frames)
            for name, predictor in runners.items():
                fps.setdefault(f"bare forward, {name}, {where}", []).append(bare_forward(predictor, crops, args.batch))
                base = ["--ckpt", args.ckpt] if name == "PyTorch" else ["--backend", "onnxruntime", "--model",
                                                                        str(models[name])]
                clip = work / f"clip{args.frames}.mp4"
                if not clip.exists():
                    cut_clip(args.video, clip, args.frames)
                fps.setdefault(f"predict.py, {name}, {where}", []).append(predict_fps(
                    [*base, "--input", str(clip), "--detections", args.detections, "--batch-size", str(args.batch),
                     "--threads", str(threads), "--device", "cpu", "--out", str(work / "out"), "--overwrite"]))
            if args.locate_ckpt:
                locate_speed(args, fps, where, threads, work)
            print(f"round {r + 1}, {where}: " + ", ".join(f"{k.split(', ')[0]} {k.split(', ')[1]} {v[-1]:.0f}"
                                                          for k, v in fps.items() if k.endswith(where)), flush=True)
    whole: dict[str, float] = {}
    if args.whole_video:
        os.sched_setaffinity(0, {cores[0]})
        torch.set_num_threads(1)
        for name in ("PyTorch", "ONNX Runtime int8"):
            base = ["--ckpt", args.ckpt] if name == "PyTorch" else ["--backend", "onnxruntime", "--model",
                                                                    str(models[name])]
            whole[f"predict.py, {name}, one core, whole video"] = predict_fps(
                [*base, "--input", args.video, "--detections", args.detections, "--batch-size", str(args.batch),
                 "--threads", "1", "--device", "cpu", "--out", str(work / "out_whole"), "--overwrite"])
            print(f"whole video, one core, {name}: {whole[f'predict.py, {name}, one core, whole video']:.1f} "
                  "frames/s", flush=True)
    os.sched_setaffinity(0, set(cores))
    threads = min(2, len(cores))
    every = "both cores" if threads == 2 else "one core"  # where the sweep and the profile run
    torch.set_num_threads(threads)
    assert crops is not None
    sweep: dict[str, float] = {}
    for name, predictor in predictors(args.ckpt, models, threads, args.batch).items():
        for b in (1, 8, 32, 64):
            sweep[f"{name}, batch {b}"] = bare_forward(predictor, crops, b)
    profiles = {name: stage_profile(p, args.video, args.detections, min(args.frames, 300), args.batch, work)
                for name, p in predictors(args.ckpt, models, threads, args.batch).items()}

    def ratio(a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(fps[a], fps[b]))

    median = {k: statistics.median(v) for k, v in fps.items()}
    ratios = {}
    for where in settings:
        for name in BACKENDS:
            ratios[f"predict.py / bare forward, {name}, {where}"] = ratio(f"predict.py, {name}, {where}",
                                                                        f"bare forward, {name}, {where}")
        for name in BACKENDS[1:]:
            ratios[f"predict.py {name} / PyTorch, {where}"] = ratio(f"predict.py, {name}, {where}",
                                                                   f"predict.py, PyTorch, {where}")
    if args.locate_ckpt:
        for where in settings:
            ratios[f"no boxes, batched / frame by frame, {where}"] = ratio(f"no boxes, batched, {where}",
                                                                          f"no boxes, frame by frame, {where}")
    print(f"\npredict.py on the first {len(crops)} frames of {Path(args.video).name}, batch {args.batch}, "
          f"median of {args.rounds} interleaved round(s)\n\n| configuration | frames/s |\n|---|---|")
    for k, v in {**median, **whole}.items():
        print(f"| {k} | {v:.1f} |")
    print("\n| ratio | value |\n|---|---|")
    for k, v in ratios.items():
        print(f"| {k} | {v:.2f} |")
    print(f"\n| bare forward, {every} | frames/s |\n|---|---|")
    for k, v in sweep.items():
        print(f"| {k} | {v:.1f} |")
    print(f"\n| stage, ms per frame (serial, {every}) | " + " | ".join(profiles) + " |")
    print("|---" * (len(profiles) + 1) + "|")
    for stage in next(iter(profiles.values())):
        print(f"| {stage} | " + " | ".join(f"{p[stage]:.2f}" for p in profiles.values()) + " |")
    return {"fps": fps, "median_fps": median, "whole_video_fps": whole, "ratios": ratios, "batch_sweep_fps": sweep,
            "stage_ms_per_frame": profiles}


def locate_speed(args: argparse.Namespace, fps: dict[str, list[float]], where: str, threads: int,
                 work: Path) -> None:
    """Without boxes (coarse to fine, ``DEFAULT_REFINE`` crops after the whole-frame pass): the loop over the clip
    frame by frame (``Predictor.locate`` per frame) and batched (``Predictor.locate_stream``), and predict.py."""
    from kpreg.inference.locate import DEFAULT_REFINE
    from kpreg.inference.sources import open_source

    clip = str(work / f"clip{args.frames}.mp4")
    predictor = Predictor.from_checkpoint(args.locate_ckpt, "cpu", batch_size=args.batch)
    loops = {"frame by frame": lambda source: ((f, predictor.locate(f.image, DEFAULT_REFINE)) for f in source),
             "batched": lambda source: predictor.locate_stream(source, DEFAULT_REFINE)}
    for name, loop in loops.items():
        source = open_source(clip, prefetch_depth=8)
        start = time.perf_counter()
        count = sum(1 for _ in loop(source))
        fps.setdefault(f"no boxes, {name}, {where}", []).append(count / (time.perf_counter() - start))
    fps.setdefault(f"predict.py, no boxes, {where}", []).append(predict_fps(
        ["--ckpt", args.locate_ckpt, "--input", clip, "--batch-size", str(args.batch), "--threads", str(threads),
         "--device", "cpu", "--out", str(work / "out_locate"), "--overwrite"]))


def cut_clip(video: str, out: Path, frames: int) -> None:
    """The first ``frames`` frames as their own MP4, so that predict.py's loop covers exactly them."""
    capture = cv2.VideoCapture(video)
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    writer = None
    for _ in range(frames):
        ok, bgr = capture.read()
        if not ok:
            break
        if writer is None:
            writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (bgr.shape[1], bgr.shape[0]))
        writer.write(bgr)
    capture.release()
    if writer is not None:
        writer.release()


if __name__ == "__main__":
    main()
