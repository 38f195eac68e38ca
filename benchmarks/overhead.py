#!/usr/bin/env python
"""Framework overhead: kpreg's Lightning training loop against a minimal hand-written PyTorch loop.

Both run the same ``KeypointModule`` (identical initial weights), the same optimizer and schedule (the
config's AdamW + ``WarmupCosine``), the same batches (preloaded in memory, no data loading work) and the same
number of steps. They alternate in rounds (``--rounds`` × ``--steps`` steps each, after one warm-up round of
each) so that the machine's load drifts over both alike. The per-step time is the time between the ends of
consecutive batches (Lightning: ``on_train_batch_end``; so it includes everything the loop does per step:
fetching the batch, hooks, ``training_step`` with its non-finite check and ``self.log_dict``, backward,
optimizer and scheduler, logger, progress bar); the figure is the median over all rounds. The ratio
``kpreg / raw`` is the overhead (target: ≤ 1.05 on the CPU). Both wall-clock time and the process's CPU time
are reported: on a shared machine a process may get only part of a core, and the CPU time is then the far
steadier measure of what each loop costs.

Lightning runs as the configs set it up (``configs/data/synthetic.yaml``): ``log_every_n_steps: 25``, the
progress bar on, 32-bit precision. The configs log to W&B; here the logger is Lightning's ``CSVLogger`` by
default (``--logger wandb`` uses ``WandbLogger(offline=True)``, ``--logger none`` turns logging off; the
``self.log`` calls run either way). Checkpointing is off by default (``--checkpointing`` adds the CLI's
``ModelCheckpoint`` and ``LastCheckpoint(every_n_train_steps=100)``; a checkpoint write is a rare step that
the median ignores anyway). No validation.

Default model: the synthetic heatmap config (ResNet-18 up to layer2, 64 × 64 inputs, batch 32, heatmap head
at stride 4 with a 64-channel neck), the job kpreg runs by default, on one CPU thread:

    python benchmarks/overhead.py
    python benchmarks/overhead.py --backbone resnet50 --feature-index -1 --input 256 --batch 2 --neck-channels 256
    python benchmarks/overhead.py --quick        # smoke run (seconds), tests/test_benchmarks.py
"""

from __future__ import annotations

import argparse
import copy
import logging
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere without installing kpreg
from _report import write_json  # benchmarks/ is on sys.path when a script runs

import kpreg.heads as heads  # noqa: E402
from kpreg.training.module import KeypointModule  # noqa: E402
from kpreg.training.schedules import WarmupCosine  # noqa: E402

Batch = dict[str, torch.Tensor]


Stamp = tuple[float, float]  # (wall clock, CPU time of the process), seconds


def stamp(device: torch.device) -> Stamp:
    """Now, after the device's queued work (so a step's time is its own on a GPU too)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter(), time.process_time()


def step_times(stamps: list[Stamp]) -> dict[str, list[float]]:
    """Per-step wall and CPU seconds from consecutive stamps."""
    pairs = list(zip(stamps, stamps[1:], strict=False))
    return {"wall": [b[0] - a[0] for a, b in pairs], "cpu": [b[1] - a[1] for a, b in pairs]}


class StepClock(pl.Callback):
    """Records the time at the end of every training batch."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.stamps: list[Stamp] = []

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.stamps.append(stamp(self.device))


def make_optimizer(model: torch.nn.Module, args: argparse.Namespace) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)


def make_scheduler(optimizer: torch.optim.Optimizer) -> WarmupCosine:
    return WarmupCosine(optimizer, warmup_steps=100)


def build_model(args: argparse.Namespace) -> KeypointModule:
    torch.manual_seed(0)
    cls = getattr(heads, args.head)
    head = cls(**({"output_stride": args.output_stride, "neck_channels": args.neck_channels}
                  if cls.has_output_stride else {}))
    return KeypointModule(
        head, backbone=args.backbone, feature_index=args.feature_index, num_keypoints=args.keypoints,
        input_size=(args.input, args.input), flip_test=False,
        # The same optimizer and schedule as the raw loop (the configs' AdamW + WarmupCosine).
        optimizer=lambda params: torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-4),
        lr_scheduler=make_scheduler,
    )


class NoStepLogModule(KeypointModule):
    """Ablation only (``--ablations``): kpreg's training step without its ``self.log_dict`` (and without the
    non-finite check), to measure what per-step logging costs."""

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self.compute_loss(self(batch["image"]), batch["keypoints"], batch["visibility"], batch.get("scale"))["loss"]


def lightning_round(model: KeypointModule, batches: list[Batch], args: argparse.Namespace, device: torch.device,
                    root: Path, progress_bar: bool = True) -> dict[str, list[float]]:
    from pytorch_lightning.loggers import CSVLogger, WandbLogger

    clock = StepClock(device)
    logger: Any
    if args.logger == "csv":
        logger = CSVLogger(root, name="csv")
    elif args.logger == "wandb":
        logger = WandbLogger(project="kpreg-overhead", save_dir=str(root), offline=True)
    else:
        logger = False
    callbacks: list[pl.Callback] = [clock]
    if args.checkpointing:
        from pytorch_lightning.callbacks import ModelCheckpoint

        from kpreg.training.callbacks import LastCheckpoint

        callbacks += [ModelCheckpoint(dirpath=root / "ckpt", filename="best", monitor="train/loss", mode="min"),
                      LastCheckpoint(every_n_train_steps=100, dirpath=str(root / "ckpt"))]
    trainer = pl.Trainer(
        accelerator=device.type, devices=1, precision="32-true", max_steps=len(batches), max_epochs=1,
        log_every_n_steps=25, logger=logger, callbacks=callbacks, enable_checkpointing=args.checkpointing,
        enable_progress_bar=progress_bar and not args.no_progress_bar, enable_model_summary=False, num_sanity_val_steps=0,
        limit_val_batches=0, default_root_dir=str(root),
    )
    # batch_size=None: the loader hands out the preloaded batch dicts as they are (no collation, no copies).
    trainer.fit(model, train_dataloaders=DataLoader(batches, batch_size=None, shuffle=False))
    return step_times(clock.stamps)


def raw_round(model: KeypointModule, batches: list[Batch], args: argparse.Namespace,
              device: torch.device) -> dict[str, list[float]]:
    """The minimal loop: forward, the head's loss, backward, optimizer, scheduler, nothing else."""
    optimizer = make_optimizer(model, args)
    scheduler = make_scheduler(optimizer)
    scheduler.max_steps = len(batches)
    model.train()
    stamps = []
    for batch in batches:
        raw = model(batch["image"])
        loss = model.compute_loss(raw, batch["keypoints"], batch["visibility"], batch.get("scale"))["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        stamps.append(stamp(device))
    return step_times(stamps)


def make_batches(args: argparse.Namespace, device: torch.device) -> list[Batch]:
    g = torch.Generator().manual_seed(1)
    distinct = []
    for _ in range(min(args.steps, 8)):
        distinct.append({
            "image": torch.randn(args.batch, 3, args.input, args.input, generator=g).to(device),
            "keypoints": (torch.rand(args.batch, args.keypoints, 2, generator=g) * (args.input - 1)).to(device),
            "visibility": (torch.rand(args.batch, args.keypoints, generator=g) > 0.1).float().to(device),
        })
    return [distinct[i % len(distinct)] for i in range(args.steps)]  # references, not copies


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--feature-index", type=int, default=2)
    parser.add_argument("--input", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--keypoints", type=int, default=16)
    parser.add_argument("--head", default="HeatmapHead", choices=list(heads.__all__))
    parser.add_argument("--output-stride", type=int, default=4)
    parser.add_argument("--neck-channels", type=int, default=64)
    parser.add_argument("--lr", type=float, default=6e-3)
    parser.add_argument("--steps", type=int, default=30, help="steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds of each loop")
    parser.add_argument("--logger", choices=["csv", "wandb", "none"], default="csv")
    parser.add_argument("--checkpointing", action="store_true")
    parser.add_argument("--no-progress-bar", action="store_true")
    parser.add_argument("--ablations", action="store_true",
                        help="also time kpreg without its per-step self.log_dict, and without the progress bar")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--json", default="runs/benchmarks/overhead.json", help="where the JSON goes ('' = not written)")
    parser.add_argument("--quick", action="store_true", help="smoke run: test_resnet, 32 px, batch 4, 8 steps, 1 round")
    args = parser.parse_args(argv)
    if args.quick:  # smoke-run values for whatever was left at its default
        quick = {"backbone": "test_resnet", "feature_index": -1, "input": 32, "batch": 4, "steps": 8, "rounds": 1,
                 "neck_channels": 16}
        for key, value in quick.items():
            if getattr(args, key) == parser.get_default(key):
                setattr(args, key, value)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    # Lightning's one-off notices (no workers, GPU available …) are not what is measured.
    warnings.filterwarnings("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    batches = make_batches(args, device)
    kpreg_model = build_model(args).to(device)
    raw_model = copy.deepcopy(kpreg_model)
    contenders: dict[str, Any] = {
        "kpreg": lambda r: lightning_round(kpreg_model, batches, args, device, Path(tmp) / f"kpreg{r}"),
        "raw": lambda r: raw_round(raw_model, batches, args, device),
    }
    if args.ablations:
        nolog_model, nobar_model = copy.deepcopy(kpreg_model), copy.deepcopy(kpreg_model)
        nolog_model.__class__ = NoStepLogModule  # same weights and settings, another training_step
        contenders["kpreg, no per-step log"] = lambda r: lightning_round(nolog_model, batches, args, device,
                                                                         Path(tmp) / f"nolog{r}")
        contenders["kpreg, no progress bar"] = lambda r: lightning_round(nobar_model, batches, args, device,
                                                                         Path(tmp) / f"nobar{r}", progress_bar=False)
    names = list(contenders)
    # times[clock][loop]: per-step seconds over all timed rounds; clock "wall" (what the issue asks for) or "cpu"
    # (the process's CPU time, all threads: what the loop costs, much less disturbed by other processes on a
    # shared machine, where a process may get only part of a core).
    times: dict[str, dict[str, list[float]]] = {c: {n: [] for n in names} for c in ("wall", "cpu")}
    per_round: dict[str, list[float]] = {"wall": [], "cpu": []}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kpreg-overhead-") as tmp:
        for r in range(args.rounds + 1):  # round 0 warms every loop up and is discarded
            # Rotate the order, so that no loop always follows the same one.
            order = names[r % len(names):] + names[:r % len(names)]
            got = {name: contenders[name](r) for name in order}
            if r == 0:
                continue
            for clock in ("wall", "cpu"):
                for name in got:
                    times[clock][name] += got[name][clock]
                per_round[clock].append(statistics.median(got["kpreg"][clock]) / statistics.median(got["raw"][clock]))
    ms = {c: {k: 1000.0 * statistics.median(v) for k, v in times[c].items()} for c in times}
    ratio = {c: ms[c]["kpreg"] / ms[c]["raw"] for c in ms}
    threads = f", {torch.get_num_threads()} thread(s)" if device.type == "cpu" else ""
    ckpt = "on" if args.checkpointing else "off"
    print(f"Framework overhead: {args.backbone} (feature {args.feature_index}), {args.head} stride "
          f"{args.output_stride}, {args.input}×{args.input}, batch {args.batch}, {device.type}{threads}; "
          f"{args.rounds} rounds × {args.steps} steps each, interleaved; logger {args.logger}, log_every_n_steps 25, "
          f"progress bar {'off' if args.no_progress_bar else 'on'}, checkpointing {ckpt}\n")
    print("| loop | median step ms (wall) | ratio (wall) | median step ms (CPU) | ratio (CPU) |")
    print("|---|---:|---:|---:|---:|")
    for name in ["raw", *[n for n in names if n != "raw"]]:
        label = {"raw": "raw PyTorch", "kpreg": "kpreg (Lightning)"}.get(name, name)
        print(f"| {label} | {ms['wall'][name]:.2f} | {ms['wall'][name] / ms['wall']['raw']:.3f} | "
              f"{ms['cpu'][name]:.2f} | {ms['cpu'][name] / ms['cpu']['raw']:.3f} |")
    print(f"\noverhead {ms['wall']['kpreg'] - ms['wall']['raw']:+.2f} ms/step wall, "
          f"{ms['cpu']['kpreg'] - ms['cpu']['raw']:+.2f} ms/step CPU; per-round ratios wall "
          + ", ".join(f"{x:.3f}" for x in per_round["wall"]) + "; CPU " + ", ".join(f"{x:.3f}" for x in per_round["cpu"]))
    result = {"setting": {k: v for k, v in vars(args).items() if k != "json"}, "torch": torch.__version__,
              "lightning": pl.__version__, "median_ms": ms, "ratio": ratio, "per_round_ratio": per_round,
              "wall_s": time.perf_counter() - start, "times_s": times}
    write_json(args.json, result)


if __name__ == "__main__":
    main()
