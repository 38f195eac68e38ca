"""What unlabelled video costs a training step: the step time with and without the unlabelled loader, in one run.

Three settings of the same model and labelled data, each trained for ``--steps`` steps by a Lightning ``Trainer``,
run in turn ``--repeats`` times (A B C A B C …) so that a change of the machine's load hits all of them:

  A  supervised:        the labelled loader only;
  B  + video, inline:   + ``clips_per_batch`` clips of ``frames`` frames per step, decoded in the training process;
  C  + video, worker:   the same clips decoded in a loader process (``unlabelled_clips.num_workers: 1``).

A step's time is the interval between the ends of consecutive steps (data loading included); the first
``--warmup`` steps of each fit are left out. Ratios B/A and C/A are the cost; B/A over the share of extra images is
how much of it is the network's work on the clips. It also times reading clips alone: runs of consecutive clips
(``run_length`` 16, one seek per run) against a seek for every clip (``run_length`` 1).

By default the data is generated (a synthetic video project, 64 × 64); ``--project`` and ``--video`` measure a real
DeepLabCut project, e.g. the openfield example at its protocol's 128 × 128:

    python benchmarks/unlabelled_step.py --project /path/dlc-openfield \
        --video /path/dlc-openfield/videos/m3v1mp4.mp4 --input 128 --batch 8 [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing kpreg
from kpreg.data.deeplabcut import DeepLabCutDataModule  # noqa: E402
from kpreg.data.synthetic_video import VideoSpec, write_clip, write_labelled_frames  # noqa: E402
from kpreg.data.unlabelled import ClipOptions, ClipSampler  # noqa: E402
from kpreg.heads import DSNTHead  # noqa: E402
from kpreg.training.module import KeypointModule  # noqa: E402
from kpreg.training.unsupervised import UnsupervisedLosses  # noqa: E402


class StepTimer(pl.Callback):
    """Seconds between the ends of consecutive training steps (loading included)."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_train_batch_end(self, *args: Any) -> None:
        self.ends.append(time.perf_counter())


def generated_data(folder: Path) -> tuple[Path, Path]:
    spec = VideoSpec(size=(64, 64), frames=120, joint_markers=True)
    for clip in range(4):
        write_labelled_frames(folder / "project", 0, clip, list(range(0, spec.frames, 8)), spec)
    return folder / "project", write_clip(folder / "videos", 0, 0, spec).video


def fit(args: argparse.Namespace, video: str | None, clip_workers: int) -> list[float]:
    """Step times (s) of one fit: supervised without ``video``, else with the unsupervised losses on its clips."""
    clips = ClipOptions(frames=args.frames, clips_per_batch=args.clips, num_workers=clip_workers)
    dm = DeepLabCutDataModule(str(args.project), box_source="both", input_size=(args.input, args.input),
                              batch_size=args.batch, num_workers=args.workers, val_every=5,
                              unlabelled_videos=[video] if video else None, unlabelled_clips=clips)
    losses = UnsupervisedLosses(temporal_weight=1.0, temporal_epsilon=1.0, pca_weight=1.0) if video else None
    model = KeypointModule(DSNTHead(), backbone="resnet18", feature_index=2, channels_last=True,
                           num_keypoints=dm.num_keypoints, input_size=dm.input_size, flip_pairs=dm.flip_pairs,
                           keypoint_names=dm.keypoint_names, flip_test=False, unsupervised=losses,
                           calibration_method="none")
    timer = StepTimer()
    trainer = pl.Trainer(max_steps=args.steps + args.warmup, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                         num_sanity_val_steps=0, callbacks=[timer], accelerator="cpu", devices=1)
    trainer.fit(model, datamodule=dm)
    return np.diff(timer.ends)[args.warmup:].tolist()


def clip_reading(args: argparse.Namespace, run_length: int) -> float:
    """Seconds per clip read (decode + warp) in this process, clips drawn in runs of ``run_length``."""
    dm = DeepLabCutDataModule(str(args.project), box_source="both", input_size=(args.input, args.input),
                              num_workers=0, val_every=5, unlabelled_videos=[str(args.video)],
                              unlabelled_clips=ClipOptions(frames=args.frames, run_length=run_length))
    dm.setup("fit")
    dataset = dm.datasets["unlabelled"]
    order = list(ClipSampler(dataset, num_samples=args.read_clips, seed=0))  # type: ignore[arg-type]
    dataset[order[0]]
    start = time.perf_counter()
    for i in order:
        dataset[i]
    return (time.perf_counter() - start) / len(order)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, help="a DeepLabCut project (default: generated)")
    parser.add_argument("--video", type=Path, help="its unlabelled video (default: generated)")
    parser.add_argument("--input", type=int, default=64, help="input side, px")
    parser.add_argument("--batch", type=int, default=16, help="labelled samples per step")
    parser.add_argument("--workers", type=int, default=1, help="labelled loader processes")
    parser.add_argument("--clips", type=int, default=2, help="clips per step")
    parser.add_argument("--frames", type=int, default=4, help="frames per clip")
    parser.add_argument("--steps", type=int, default=40, help="timed steps per fit")
    parser.add_argument("--warmup", type=int, default=5, help="steps left out at the start of each fit")
    parser.add_argument("--repeats", type=int, default=3, help="A B C rounds")
    parser.add_argument("--read-clips", type=int, default=64, help="clips read to time reading alone")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 4 steps, one round")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.warmup, args.repeats, args.read_clips = 4, 1, 1, 8
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        if args.project is None or args.video is None:
            args.project, args.video = generated_data(Path(tmp))
        settings = {"A supervised": (None, 0), "B + video, inline": (str(args.video), 0),
                    "C + video, worker": (str(args.video), 1)}
        times: dict[str, list[float]] = {name: [] for name in settings}
        for _ in range(args.repeats):
            for name, (video, workers) in settings.items():
                times[name] += fit(args, video, workers)
        reading = {"runs of 16": clip_reading(args, 16), "a seek per clip": clip_reading(args, 1)}
    base = float(np.median(times["A supervised"]))
    extra = args.clips * args.frames / args.batch
    print(f"labelled batch {args.batch}, + {args.clips} clips × {args.frames} frames = {extra:.2f}× the images, "
          f"input {args.input}×{args.input}, {args.steps} steps × {args.repeats} rounds\n")
    print("| setting | median step (ms) | ratio to A |\n|---|---:|---:|")
    result: dict[str, Any] = {"extra_images": extra, "settings": {}}
    for name, values in times.items():
        median = float(np.median(values))
        print(f"| {name} | {1000 * median:.1f} | {median / base:.2f} |")
        result["settings"][name] = {"median_ms": 1000 * median, "ratio": median / base, "steps": len(values)}
    print("\n| reading clips | ms per clip |\n|---|---:|")
    for name, seconds in reading.items():
        print(f"| {name} | {1000 * seconds:.1f} |")
    result["reading_ms_per_clip"] = {k: 1000 * v for k, v in reading.items()}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
