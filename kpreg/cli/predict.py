"""``python predict.py --ckpt CKPT --input PATH --out DIR``: a trained model on images, folders, globs and videos.

    python predict.py --ckpt runs/synthetic/heatmap/checkpoints/best.ckpt --input clip.mp4 --out out/ --draw
    python predict.py --ckpt CKPT --input 'frames/*.png' --out out/ --detections dets.json --score-thr 0.5
    python predict.py --backend onnxruntime --model model.onnx --input clip.mp4 --out out/

Boxes: without ``--detections``, the model finds the animal as it was trained to (``kpreg.inference.locate``): a
whole-frame model runs on the whole frame; a model trained with ``box_source: both`` (the DeepLabCut config's
default) runs on the whole frame, then ``--refine`` times (1) on the crop of the keypoints it found, every frame; a
model trained on crops only is refused (exit 2). Or ``--detections`` — a COCO detection JSON (entries keyed by
``file_name``, or by ``image_id`` with ``--images-file``), a COCO file with ``images`` and ``annotations``, or a
CSV ``frame, x, y, w, h, score`` (one row per box; ``frame`` a video frame index or an image file name) — kept above
``--score-thr``. Several boxes of one frame are several instances.

Several ``--ckpt``: an ensemble of models of the same keypoints (seeds, or heads of different kinds;
``kpreg.inference.ensemble_predictor``): each frame is the members' mean position and confidence, and
``disagreement.csv`` holds the members' spread per frame and keypoint (px), which ``--smooth kalman`` adds to its
observation noise and ``suggest.py --disagreement`` ranks frames by.

Outputs in ``--out``:

* ``predictions.json``: every instance in the schema ``evaluate.py`` writes too (``kpreg.formats.predictions``): COCO
  keypoint results ``[{image_id, category_id, keypoints: [x, y, confidence]*K, score, file_name, frame_index,
  index}]``, image pixels; ``evaluate.py score`` reads it. ``image_id`` is the detections file's id, else the id of
  the file name in ``--images-file``, else the frame index.
* ``predictions.csv``: DeepLabCut's table (``scorer`` / ``bodyparts`` / ``coords`` header rows, ``x, y,
  likelihood`` per keypoint), one row per frame (video) or image, indexed by frame number or file name. It
  holds one instance per row — the frame's highest-scoring one — as DeepLabCut's single-animal tables do; a
  frame without a box has empty cells. Every instance is in the JSON.
* with ``--draw``: ``drawn/<image name>`` per image, or ``<video>_drawn.mp4`` for a video (skeleton, boxes when
  detections are used; keypoints with a confidence below ``--min-confidence`` hidden, DeepLabCut's pcutoff).
* for a video, ``residuals.csv`` + ``residuals.json``: per frame, how far each keypoint moved since the previous
  frame and (for one --ckpt trained with the pose-PCA loss) how far the pose lies off the labelled poses' span, px —
  outlier scores for choosing frames to label (``kpreg.inference.residuals``).
* ``disagreement.csv`` (several ``--ckpt``): per row of ``predictions.csv`` the members' standard deviation per
  keypoint, px.
* with ``--smooth kalman|median`` (a video): ``predictions_smoothed.csv`` (+ ``.h5`` with pandas and PyTables), the
  track smoothed over time (``kpreg.cli.smooth_track``); with ``--draw`` also ``<video>_smoothed.mp4`` and
  ``legend.png``. ``--predictions FILE`` smooths an existing table of the ``--input`` video without a model.
* ``summary.json``: the model, backend, flip test, frames read / skipped / converted, the video fault if any,
  detections kept and unmatched, frames per second.

Nothing is lost silently: skipped files, converted images (grayscale, 16-bit, alpha), a video that stops early
and detections naming frames that are not in the input are each reported in one line. The exit code is 2
only when nothing could be predicted (or the command is wrong); ``KPREG_DEBUG=1`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rich.console import Console

from kpreg.cli.errors import USER_ERRORS, CommandParser, fail
from kpreg.cli.outputs import OVERWRITE_HELP, OutputError, check_folder, is_run_directory, remove
from kpreg.cli.smooth_track import (
    DEFAULT_GATE,
    SmoothingSettings,
    draw_smoothed,
    smooth_track,
    write_smoothed,
)
from kpreg.formats.coco import read_images
from kpreg.formats.deeplabcut import DLCTableWriter
from kpreg.formats.files import read_json
from kpreg.inference.boxes import BoxError, BoxSelector, Detections, load_detections
from kpreg.inference.ensemble import write_disagreement
from kpreg.inference.ensemble_predictor import EnsemblePredictor
from kpreg.inference.filtering import DEFAULT_MIN_CONFIDENCE, filter_keypoints
from kpreg.inference.locate import DEFAULT_REFINE, refuse_whole_frames
from kpreg.inference.predictor import Prediction, Predictor
from kpreg.inference.render import DEFAULT_COLORMAP, draw_predictions
from kpreg.inference.residuals import unsupervised_record, write_residuals
from kpreg.inference.runtimes import BACKENDS
from kpreg.inference.smoothing import DEFAULT_WINDOW, SMOOTHERS
from kpreg.inference.sources import Frame, FrameSource, open_source
from kpreg.inference.writers import PredictionsWriter, VideoWriter
from kpreg.validation import check_number

DEFAULT_VIDEO_FPS = 25.0  # for the drawn MP4 of a video whose header has no frame rate


class NothingPredicted(ValueError):
    """The run ended without a single predicted instance."""


def _parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="predict.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    model = parser.add_argument_group("model")
    model.add_argument("--ckpt", action="append",
                       help="a kpreg checkpoint (it carries its model: no config needed); several --ckpt: an ensemble "
                            "of models of the same keypoints (mean, and the members' spread in disagreement.csv)")
    model.add_argument("--model", help="an exported model (export.py): .onnx for onnxruntime, .pt for torchscript")
    model.add_argument("--backend", choices=BACKENDS, default=None,
                       help="torch (the checkpoint, default), onnxruntime or torchscript (an exported --model)")
    model.add_argument("--config", help="a run's config.yaml, checked against the checkpoint (optional)")
    model.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:1, mps")
    model.add_argument("--threads", type=int, default=None,
                       help="CPU threads for the network (default: torch's setting, also given to onnxruntime)")
    flip = model.add_mutually_exclusive_group()
    flip.add_argument("--flip", dest="flip", action="store_true", default=None,
                      help="flip test on (the default where the run evaluated with it)")
    flip.add_argument("--no-flip", dest="flip", action="store_false", help="flip test off (twice as fast)")
    model.add_argument("--batch-size", type=int, default=32, help="crops per forward pass")
    data = parser.add_argument_group("input and boxes")
    data.add_argument("--input", required=True, help="an image, a folder of images, a glob pattern or a video")
    data.add_argument("--detections", help="boxes: COCO detection JSON or CSV (frame, x, y, w, h, score)")
    data.add_argument("--score-thr", type=float, default=0.0, help="drop detections scoring below this")
    data.add_argument("--category-id", type=int, default=None, help="keep detections of this category only")
    data.add_argument("--images-file", help="a COCO JSON whose 'images' map file names to image ids")
    data.add_argument("--padding", type=float, default=1.25, help="growth of a detection box around its centre")
    data.add_argument("--refine", type=int, default=DEFAULT_REFINE,
                      help="without --detections, for a model trained on crops and whole frames (box_source both): "
                           "passes on the crop of the keypoints found, after the whole-frame pass")
    out = parser.add_argument_group("output")
    out.add_argument("--out", required=True, help="output folder (not a training run's folder)")
    out.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    out.add_argument("--draw", action="store_true", help="draw predictions: drawn/ images, or an annotated MP4")
    out.add_argument("--min-confidence", type=float, default=DEFAULT_MIN_CONFIDENCE,
                     help="drawing hides keypoints below this confidence (DeepLabCut's pcutoff; 0.5: more likely "
                          "right than wrong for a calibrated model)")
    out.add_argument("--filter-output", action="store_true",
                     help="also blank keypoints below --min-confidence in predictions.json (COCO's absent 0,0,0) "
                          "and predictions.csv (empty cells); by default the files keep every keypoint")
    out.add_argument("--scorer", default=None, help="the CSV's scorer row (default kpreg_<head>_<backbone>)")
    out.add_argument("--prefetch", type=int, default=8, help="frames decoded and cropped ahead of the network")
    video = parser.add_argument_group("video: smoothing and drawing (kpreg.cli.smooth_track)")
    video.add_argument("--smooth", choices=SMOOTHERS, default="none",
                       help="smooth the video's track over time into predictions_smoothed.csv (+ .h5): kalman (noise "
                            "from the calibrated confidence; the most accurate) or a moving median")
    video.add_argument("--smooth-gate", type=float, default=DEFAULT_GATE,
                       help="keypoints below this confidence are gaps the smoother bridges (low: gating at 0.5 "
                            "raises the error of a calibrated model)")
    video.add_argument("--smooth-window", type=int, default=DEFAULT_WINDOW, help="the median's window (odd frames)")
    video.add_argument("--predictions", metavar="FILE",
                       help="smooth this predictions table of the --input video (predict.py's or DeepLabCut's .csv "
                            "/ .h5) instead of running a model")
    video.add_argument("--trail", type=int, default=0, help="draw the last N frames' positions of the smoothed track")
    video.add_argument("--colormap", default=DEFAULT_COLORMAP, help="matplotlib colormap of the keypoint colours")
    return parser


# ---- the run ---------------------------------------------------------------------------------------------
@dataclass
class RunStats:
    frames: int = 0
    instances: int = 0
    frames_without_box: int = 0
    ids_not_in_images_file: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def check_arguments(args: argparse.Namespace) -> list[Path]:
    """Every argument's range, and the ``--out`` folder (``kpreg.cli.outputs``), before any work; returns the earlier
    outputs that ``--overwrite`` replaces."""
    check_number(args.batch_size, "--batch-size", minimum=1)
    check_number(args.prefetch, "--prefetch", minimum=1)
    if args.threads is not None:
        check_number(args.threads, "--threads", minimum=1)
    check_number(args.min_confidence, "--min-confidence", 0.0, 1.0)
    check_number(args.score_thr, "--score-thr", 0.0, 1.0)
    check_number(args.padding, "--padding", minimum=0.0, above=True)
    check_number(args.refine, "--refine", minimum=0)
    out = Path(args.out)
    if is_run_directory(out):
        raise OutputError(f"--out {out} is a training run's folder (config.yaml, checkpoints/), where evaluate.py "
                          f"writes files of the same names: predict into a folder of its own, e.g. {out / 'predict'}")
    return check_folder(out, "--out", _outputs(out), args.overwrite)


def _outputs(out: Path) -> list[str]:
    """The names predict.py writes in its ``--out`` folder (those there now, for the drawn videos)."""
    drawn_videos = [p.name for p in out.glob("*_drawn.mp4")] if out.is_dir() else []
    return ["predictions.json", "predictions.json.partial", "predictions.csv", "summary.json", "drawn",
            "disagreement.csv", *drawn_videos, *_smoothed_outputs(out)]


def _smoothed_outputs(out: Path) -> list[str]:
    """The names ``--smooth`` writes in the ``--out`` folder (those there now, for the drawn videos)."""
    drawn_videos = [p.name for p in out.glob("*_smoothed.mp4")] if out.is_dir() else []
    return ["predictions_smoothed.csv", "predictions_smoothed.h5", "legend.png", *drawn_videos]


def build_predictor(args: argparse.Namespace) -> Predictor | EnsemblePredictor:
    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    ckpts = args.ckpt or []
    if len(ckpts) > 1:
        if args.model or args.backend not in (None, "torch") or args.config:
            raise ValueError("several --ckpt are an ensemble run by the torch backend from the checkpoints alone: "
                             "give no --model / --backend / --config")
        members = [Predictor.from_checkpoint(c, args.device, args.flip, None, args.batch_size, args.padding)
                   for c in ckpts]
        return EnsemblePredictor(members, ckpts)
    ckpt = ckpts[0] if ckpts else None
    backend = args.backend or ("torch" if ckpt else None)
    if backend in (None, "torch"):
        if not ckpt:
            raise ValueError("give --ckpt CKPT (a checkpoint), or --model FILE with --backend onnxruntime|torchscript")
        if args.model:
            raise ValueError("--model is an exported file for --backend onnxruntime|torchscript; with the torch "
                             "backend give only --ckpt")
        return Predictor.from_checkpoint(ckpt, args.device, args.flip, args.config, args.batch_size, args.padding)
    if not args.model:
        raise ValueError(f"--backend {backend} runs an exported model: give --model FILE (python export.py --ckpt "
                         f"CKPT --format {'onnx' if backend == 'onnxruntime' else 'torchscript'} --out FILE)")
    if args.config:
        raise ValueError("--config is checked against a checkpoint; an exported model carries its own description")
    predictor = Predictor.from_exported(args.model, backend, args.device, args.flip, args.batch_size, args.padding,
                                        threads=torch.get_num_threads() if args.threads is None else args.threads)
    if ckpt:  # both given: they must describe the same model
        from kpreg.inference.rebuild import rebuild

        ckpt_info = rebuild(ckpt).info
        for name in ("keypoint_names", "input_size"):
            if getattr(ckpt_info, name) != getattr(predictor.info, name):
                raise ValueError(f"{args.model} and {ckpt} are different models ({name}: "
                                              f"{getattr(predictor.info, name)} vs {getattr(ckpt_info, name)})")
    return predictor


def image_ids_by_name(path: str | None) -> dict[str, int]:
    """file name → image id of ``--images-file`` (a COCO file's ``images``); empty without one."""
    if path is None:
        return {}
    images = read_images(read_json(path, "--images-file", BoxError), path, BoxError)
    return {img.file_name: image_id for image_id, img in images.items()}


def _drawn_path(out_dir: Path, name: str) -> Path:
    path = out_dir / "drawn" / name
    if not cv2.haveImageWriter(str(path)):
        path = path.with_suffix(".png")
    return path


def _smoothing(args: argparse.Namespace, source: FrameSource) -> SmoothingSettings | None:
    """The smoothing asked for, checked against the input before anything runs; None without ``--smooth``."""
    if args.smooth == "none":
        if args.predictions:
            raise ValueError("--predictions FILE is smoothed: give --smooth kalman or --smooth median")
        return None
    if source.video is None:
        raise ValueError(f"--smooth smooths a video's track over time; {args.input} is not a video")
    if not 0.0 <= args.smooth_gate <= 1.0:
        raise ValueError(f"--smooth-gate is a confidence in [0, 1], got {args.smooth_gate}")
    if args.trail < 0:
        raise ValueError(f"--trail must be 0 or more, got {args.trail}")
    frames = source.video.frame_count
    if args.smooth == "median" and frames is not None and frames < args.smooth_window:
        raise ValueError(f"{args.input} has {frames} frame(s), fewer than the median window of {args.smooth_window}: "
                         "give a smaller --smooth-window, or --smooth kalman (no window)")
    return SmoothingSettings(args.smooth, args.smooth_gate, args.smooth_window)


def _smooth_outputs(args: argparse.Namespace, settings: SmoothingSettings, table: Path, frame_count: int | None,
                    skeleton: tuple[tuple[int, int], ...], console: Console,
                    ensemble_variance: np.ndarray | None = None) -> list[Path]:
    """The track in ``table`` smoothed into ``args.out`` (and drawn with ``--draw``) → the files written;
    ``ensemble_variance`` (T, K) px²: an ensemble's, added to the Kalman observation noise."""
    from kpreg.inference.tracks import read_track

    out_dir = Path(args.out)
    track = read_track(table, frame_count)
    start = time.monotonic()
    smoothed = smooth_track(track, settings, ensemble_variance)
    seconds = time.monotonic() - start
    written = write_smoothed(out_dir, track, smoothed)
    if args.draw:
        source = open_source(args.input)
        fps = source.video.fps or DEFAULT_VIDEO_FPS  # type: ignore[union-attr]
        written.append(draw_smoothed(source, out_dir / f"{Path(args.input).stem}_smoothed.mp4", fps, track, smoothed,
                                     skeleton, args.min_confidence, args.colormap, args.trail))
    bridged = int((~smoothed.observed & np.isfinite(smoothed.keypoints).all(-1)).sum())
    console.print(f"smoothed ({settings.method}, gate {settings.gate:g}) {track.num_frames} frame(s) in {seconds:.2f} "
                  f"s, {bridged} keypoint(s) bridged → " + ", ".join(p.name for p in written), highlight=False)
    return written


def smooth_file(args: argparse.Namespace, console: Console) -> list[Path]:
    """``--predictions FILE``: smooth an existing predictions table of the ``--input`` video; no model runs."""
    if args.ckpt or args.model:
        raise ValueError("--predictions FILE smooths a table that exists: give no --ckpt / --model")
    if args.draw:
        raise ValueError("--draw with --predictions needs the model's skeleton: predict the video with --ckpt, "
                         "--smooth and --draw instead")
    out = Path(args.out)
    earlier = check_folder(out, "--out", _smoothed_outputs(out), args.overwrite)
    source = open_source(args.input)
    settings = _smoothing(args, source)
    assert settings is not None and source.video is not None
    remove(earlier)  # --overwrite: the earlier smoothed outputs go, so that old and new never mix
    out.mkdir(parents=True, exist_ok=True)
    return _smooth_outputs(args, settings, Path(args.predictions), source.video.frame_count, (), console)


def run(args: argparse.Namespace, console: Console) -> RunStats:
    """Predict every frame of ``args.input`` into ``args.out``; returns what happened."""
    earlier = check_arguments(args)
    source = open_source(args.input, prefetch_depth=args.prefetch)
    detections: Detections | None = None
    if args.detections:
        detections = load_detections(args.detections, args.score_thr, args.category_id, args.images_file)
    smoothing = _smoothing(args, source)
    selector = BoxSelector(source, detections)  # an image source's detections are matched here, up front
    ids = image_ids_by_name(args.images_file)
    predictor = build_predictor(args)
    if detections is None and predictor.crop_mode == "crop":
        raise refuse_whole_frames(" and ".join(args.ckpt or [args.model]))
    boxes = _boxes_line(args, predictor, detections is not None)
    console.print(predictor.describe(), highlight=False)
    console.print(_source_line(source), highlight=False)
    console.print(f"boxes: {boxes}", highlight=False)

    out_dir = Path(args.out)
    remove(earlier)  # --overwrite: the earlier outputs go, so that old and new never mix
    out_dir.mkdir(parents=True, exist_ok=True)
    video = source.video is not None
    source_name = Path(args.input).name
    ensemble = isinstance(predictor, EnsemblePredictor)
    scorer = args.scorer or (f"kpreg_ensemble{len(predictor.members)}" if isinstance(predictor, EnsemblePredictor)
                             else f"kpreg_{predictor.info.head or 'model'}_{predictor.info.backbone or 'net'}")
    spread_rows: list[str | int] = []  # an ensemble's disagreement: the rows of predictions.csv …
    spread: list[np.ndarray] = []  # … and the best instance's (K,) variance per coordinate, px²
    stats = RunStats()
    drawn: VideoWriter | None = None
    if args.draw and video:
        fps = source.video.fps or DEFAULT_VIDEO_FPS  # type: ignore[union-attr]
        drawn = VideoWriter(out_dir / f"{Path(args.input).stem}_drawn.mp4", fps)
    from kpreg.cli.progress import FrameProgress

    start = time.monotonic()
    min_confidence = args.min_confidence if args.filter_output else None
    track: list[np.ndarray] | None = [] if video else None  # the best instance's keypoints per frame
    with PredictionsWriter(out_dir / "predictions.json", min_confidence=min_confidence) as results, \
            DLCTableWriter(out_dir / "predictions.csv", scorer, predictor.keypoint_names) as table, \
            FrameProgress(len(source) or None) as progress:
        try:
            if detections or predictor.crop_mode == "image":
                pairs = predictor.stream(source, selector if detections else None, args.prefetch)
            elif isinstance(predictor, EnsemblePredictor):  # no boxes: each frame coarse to fine, frame by frame
                pairs = ((frame, predictor.locate(frame.image, args.refine)) for frame in source)
            else:  # no boxes: coarse to fine, the passes of batch-size frames batched together
                pairs = predictor.locate_stream(source, args.refine, args.prefetch)
            for frame, prediction in pairs:
                _write(frame, prediction, video, source_name, ids, results, table, stats, min_confidence)
                if track is not None:
                    track.append(prediction.keypoints[int(np.argmax(prediction.scores))] if len(prediction)
                                 else np.full((len(predictor.keypoint_names), 2), np.nan))
                if ensemble:
                    spread_rows.append(frame.index if video else frame.name)
                    spread.append(np.full(len(predictor.keypoint_names), np.nan) if len(prediction) == 0
                                  else prediction.variance[int(np.argmax(prediction.scores))])  # type: ignore[index]
                if args.draw:
                    image = draw_predictions(frame.image, prediction.keypoints, prediction.confidence,
                                             predictor.skeleton, args.min_confidence,
                                             boxes=list(prediction.boxes) if detections else None,
                                             colormap=args.colormap)
                    if drawn is not None:
                        drawn.write(image)
                    else:
                        path = _drawn_path(out_dir, frame.name)
                        path.parent.mkdir(parents=True, exist_ok=True)
                        cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
                progress.update()
        finally:
            stats.seconds = time.monotonic() - start
            if drawn is not None:
                drawn.close()
    if track:
        record = None
        if args.ckpt and len(args.ckpt) == 1:  # the checkpoint's unsupervised record: its pose PCA and ε
            from kpreg.training.checkpoint import read_checkpoint

            record = unsupervised_record(read_checkpoint(args.ckpt[0]))
        write_residuals(out_dir, np.stack(track), predictor.keypoint_names, record)
    detections_report = selector.finish()  # a video's detections are matched against the frames read
    _report(source, detections_report, stats, console)
    variance = np.array(spread).reshape(len(spread), len(predictor.keypoint_names)) if ensemble else None  # (T, K)
    if variance is not None:
        write_disagreement(out_dir / "disagreement.csv", predictor.keypoint_names, spread_rows, variance)
    if smoothing is not None and stats.instances:
        _smooth_outputs(args, smoothing, out_dir / "predictions.csv", stats.frames, predictor.skeleton, console,
                        variance)
    summary = {
        "model": predictor.describe(), "backend": predictor.backend, "device": predictor.device,
        "flip_test": predictor.flip_test, "calibrated": predictor.calibrated,
        "input": str(args.input), "kind": source.kind, "boxes": boxes, "frames": stats.frames, "instances": stats.instances,
        "frames_without_box": stats.frames_without_box, "skipped": source.report.skipped,
        "converted": source.report.notes, "fault": source.report.fault,
        "detections": None if detections_report is None else detections_report.summary(),
        "seconds": round(stats.seconds, 3), "frames_per_second": round(stats.frames_per_second, 2),
        "outputs": sorted(p.name for p in out_dir.iterdir() if p.name != "summary.json"),
    }
    if stats.instances == 0:  # the empty files go too: a corrected run into the same --out is not refused
        remove(p for p in out_dir.iterdir() if p.name in _outputs(out_dir))
        skipped = "; ".join(f"{n}: {r}" for n, r in list(source.report.skipped.items())[:3])
        why = source.report.fault or (_one_line(detections_report.summary()) if detections_report else "") \
            or skipped
        raise NothingPredicted(f"nothing was predicted from {args.input}" + (f": {why}" if why else ""))
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    console.print(f"{stats.frames} frame(s), {stats.instances} instance(s) in {stats.seconds:.1f} s "
                  f"({stats.frames_per_second:.1f} frames/s) → {out_dir}/predictions.json, predictions.csv"
                  + (", drawn" if args.draw else ""), highlight=False)
    return stats


def _boxes_line(args: argparse.Namespace, predictor: Predictor | EnsemblePredictor, detections: bool) -> str:
    if detections:
        return f"detections from {args.detections}"
    if predictor.crop_mode == "image":
        return "the whole frame (the model was trained on whole frames)"
    return (f"found by the model: the whole frame, then {args.refine} crop(s) of the keypoints found (trained on "
            "crops and whole frames)")


def _source_line(source: FrameSource) -> str:
    if source.video is not None:
        v = source.video
        count = f"{v.frame_count} frames" if v.frame_count else "frame count unknown"
        fps = f", {v.fps:g} fps" if v.fps else ""
        return f"input: video {source.path} ({v.width}x{v.height}, {count}{fps})"
    return f"input: {source.kind} {source.path} ({len(source)} file(s))"


def _write(
    frame: Frame,
    prediction: Prediction,
    video: bool,
    source_name: str,
    ids: dict[str, int],
    results: PredictionsWriter,
    table: DLCTableWriter,
    stats: RunStats,
    min_confidence: float | None = None,
) -> None:
    """One frame's instances into the JSON (all) and the CSV (the best one); with ``min_confidence`` the CSV's
    keypoints below it are empty cells (the JSON writer blanks its own)."""
    stats.frames += 1
    k = len(table.bodyparts)
    if len(prediction) == 0:
        stats.frames_without_box += 1
        table.add(frame.index if video else frame.name, np.full((k, 2), np.nan), np.full(k, np.nan))
        return
    scores = prediction.scores  # (N,) instance scores
    for n, box in enumerate(prediction.boxes):
        if box.image_id is not None:
            image_id = box.image_id
        elif ids:
            image_id = ids.get(frame.name, frame.index)
            stats.ids_not_in_images_file += frame.name not in ids
        else:
            image_id = frame.index
        results.add(image_id, prediction.keypoints[n], prediction.confidence[n], float(scores[n]),
                    source_name if video else frame.name, frame.index)
        stats.instances += 1
    best = int(np.argmax(scores))
    xy = prediction.keypoints[best]  # (K, 2) image px
    if min_confidence is not None:
        xy = filter_keypoints(xy[None], prediction.confidence[best][None], min_confidence)[0]
    table.add(frame.index if video else frame.name, xy, prediction.confidence[best])


def _one_line(text: str) -> str:
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def _report(source: FrameSource, detections: Any, stats: RunStats, console: Console) -> None:
    """One line per thing that did not go as plainly as it could (skips, conversions, faults, unmatched)."""
    report = source.report
    err = Console(stderr=True, soft_wrap=True, markup=False)  # file names may hold brackets: printed as they are
    if report.skipped:
        shown = ", ".join(f"{n} ({r})" for n, r in list(report.skipped.items())[:5])
        more = f", … {len(report.skipped) - 5} more" if len(report.skipped) > 5 else ""
        err.print(f"warning: skipped {len(report.skipped)} file(s) that cannot be predicted on: "
                  f"{shown}{more}", highlight=False)
    if report.notes:
        shown = ", ".join(f"{n} ({'; '.join(r)})" for n, r in list(report.notes.items())[:5])
        more = f", … {len(report.notes) - 5} more" if len(report.notes) > 5 else ""
        console.print(f"note: converted {len(report.notes)} image(s) to 8-bit RGB: {shown}{more}", highlight=False)
    if report.fault:
        err.print(f"warning: {report.fault}; the {stats.frames} frame(s) before it are predicted",
                  highlight=False)
    if detections is not None and (detections.not_in_input or detections.dropped):
        err.print("warning: " + _one_line(detections.summary()), highlight=False)
    if stats.frames_without_box:
        console.print(f"note: {stats.frames_without_box} frame(s) had no box (empty CSV rows, nothing in the JSON)",
                      highlight=False)
    if stats.ids_not_in_images_file:
        err.print(f"warning: {stats.ids_not_in_images_file} instance(s) of images missing from "
                  "--images-file got their frame index as image_id", highlight=False)


# ---- entry point -----------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    console = Console(soft_wrap=True, markup=False)  # paths and names may hold brackets: printed as they are
    try:
        if args.predictions:
            smooth_file(args, console)
        else:
            run(args, console)
    except USER_ERRORS as err:  # the user's input (kpreg.cli.errors): one line, exit code 2
        fail(err)
