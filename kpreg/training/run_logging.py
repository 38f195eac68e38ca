"""Runs that compare well: what every training run records beyond the ``val/*`` scalars.

``RunLogging`` is added to every ``train.py`` run by the CLI (config section ``run_logging``). Always, on the
main process, it writes ``<run dir>/model_profile.json`` (parameters, FLOPs, CPU latency) and, at the end,
``<run dir>/train_stats.json`` (peak accelerator memory, the labelled frames trained on), which the study runner
reads. When one of the
trainer's loggers is a ``WandbLogger`` it also gives the wandb run

* a flat config (``backbone``, ``head``, ``head.<arg>``, ``output_stride``, ``dataset``, ``seed``, ``budget``,
  ``input_size`` …) so that dashboards can group and filter runs by them, plus the whole resolved CLI
  config under ``cli``;
* after every validation, the PCK-vs-threshold curve (``val/pck_curve``, a line plot of a table: PCKh on
  head-normalised datasets, box-relative PCK on the others);
* every ``image_every_n_val`` validations, one panel (``val/examples``) of the same first validation images
  with predicted and true keypoints and the skeleton, and for heads with maps the summed predicted heatmap;
* the model cost in the run summary (``model/params``, ``model/flops``, ``model/latency_ms``).

With other loggers only the two JSON files are written. The ``val/*`` scalars (per joint, per group,
``MeanError``) are logged by ``KeypointModule`` itself, for every logger.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_warn

from kpreg.classpath import short_name
from kpreg.data.sample import tensor_to_image
from kpreg.training.drawing import add_pose_legend, draw_pose, figure_to_array, new_figure
from kpreg.training.profiling import profile_model


def flat_run_config(config: dict[str, Any]) -> dict[str, Any]:
    """The resolved CLI config (nested dict) → the flat keys a comparison groups and filters by."""
    model = config.get("model") or {}
    data = config.get("data") or {}
    head = model.get("head") or {}
    head_args = dict(head.get("init_args") or {})
    data_args = dict(data.get("init_args") or {})
    optimizer = model.get("optimizer") or {}
    flat: dict[str, Any] = {
        "backbone": model.get("backbone"),
        "feature_index": model.get("feature_index"),
        "head": short_name(head.get("class_path")) or None,
        # Heads without a spatial output (FC) have no output stride: None groups them apart in dashboards.
        "output_stride": head_args.get("output_stride"),
        "dataset": short_name(data.get("class_path")) or None,
        "seed": config.get("seed_everything"),
        "budget": data_args.get("train_budget"),  # labelled training frames (a count or a share); None: all
        "batch_size": data_args.get("batch_size"),
        "max_epochs": (config.get("trainer") or {}).get("max_epochs"),
        "optimizer": (short_name(optimizer.get("class_path")) or None) if isinstance(optimizer, dict) else None,
        "lr": (optimizer.get("init_args") or {}).get("lr") if isinstance(optimizer, dict) else None,
    }
    flat.update({f"head.{k}": v for k, v in head_args.items()})
    flat.update({f"data.{k}": v for k, v in data_args.items()})
    return flat


def _si(value: float, unit: str = "") -> str:
    """``815043`` → ``815 K``, ``(2.57e7, "FLOPs")`` → ``25.7 MFLOPs``: three significant digits."""
    for prefix in ("", "K", "M", "G", "T"):
        if abs(value) < 999.5 or prefix == "T":
            break
        value /= 1000.0
    return f"{value:.3g} {prefix}{unit}".rstrip()


def model_line(pl_module: pl.LightningModule, flops: float | None) -> str:
    """One line on the model being trained: its parameters (backbone and head) and, when measured, its FLOPs per
    image at the input size."""
    params = [sum(p.numel() for p in part.parameters()) for part in (pl_module.backbone, pl_module.head)]
    line = f"model: {_si(sum(params))} parameters (backbone {_si(params[0])}, head {_si(params[1])})"
    if flops:
        h, w = pl_module.input_size
        line += f", {_si(flops, 'FLOPs')} per {h}×{w} image"
    return line


def plain(value: Any) -> Any:
    """A config value as JSON-able plain data (jsonargparse paths and namespaces become strings / dicts)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


class RunLogging(Callback):
    """Args:
    image_every_n_val: log the example panel every this many validations (1 = each; 0 = never).
    num_images: how many validation images (the first ones of the validation set, always the same).
    profile: measure parameters, FLOPs and CPU latency at the start of training.
    """

    def __init__(self, image_every_n_val: int = 1, num_images: int = 8, profile: bool = True) -> None:
        if image_every_n_val < 0 or num_images < 0:
            raise ValueError("image_every_n_val and num_images must be >= 0")
        self.image_every_n_val = image_every_n_val
        self.num_images = num_images
        self.profile = profile
        self._validations = 0

    # ---- helpers -----------------------------------------------------------------------------------
    @staticmethod
    def wandb_logger(trainer: pl.Trainer) -> WandbLogger | None:
        return next((lg for lg in trainer.loggers if isinstance(lg, WandbLogger)), None)

    @staticmethod
    def _write_json(trainer: pl.Trainer, name: str, content: dict[str, Any]) -> None:
        path = Path(trainer.default_root_dir) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content, indent=2))

    @staticmethod
    def steps_per_epoch(trainer: pl.Trainer) -> int | None:
        """Optimizer steps in one training epoch of this process (None when the loader has no length)."""
        if trainer.datamodule is None:
            return None
        loader = trainer.datamodule.train_dataloader()
        # A CombinedLoader (labelled + unlabelled video) has a length only once iterated: its longest loader's.
        loaders = loader.flattened if hasattr(loader, "flattened") else [loader]
        try:
            batches = max(len(one) for one in loaders)
        except TypeError:
            return None
        limit = trainer.limit_train_batches
        batches = min(batches, limit) if isinstance(limit, int) else int(batches * (limit or 1.0))
        return max(1, batches // trainer.accumulate_grad_batches)

    # ---- hooks -------------------------------------------------------------------------------------
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Training scalars are logged every log_every_n_steps steps: an epoch shorter than that would log none of
        # them (Lightning warns when it builds the loader, after this hook), so the interval is bounded by it.
        steps = self.steps_per_epoch(trainer)
        if steps is not None and trainer.log_every_n_steps > steps:
            trainer.log_every_n_steps = steps
        if not trainer.is_global_zero:
            return
        profile: dict[str, Any] = {}
        if self.profile:
            try:
                profile = profile_model(pl_module.backbone, pl_module.head, pl_module.input_size)
            except Exception as err:  # a compiled or exotic model must not stop training over a statistic
                rank_zero_warn(f"model profiling failed, no params/FLOPs/latency recorded: {err}")
            else:
                self._write_json(trainer, "model_profile.json", profile)
        print(model_line(pl_module, profile.get("flops")), flush=True)
        logger = self.wandb_logger(trainer)
        if logger is None:
            return
        run = logger.experiment  # the run's config columns are the CLI's (kpreg.cli.lightning.RunDirConfigSaver)
        run.summary.update({f"model/{k}": v for k, v in profile.items()})
        # The best epoch, not the last, is what a comparison table of runs should show: each summary column's best
        # value in its own direction (the metric contract), val/score in the primary metric's.
        evaluator = getattr(pl_module, "evaluator", None)
        if evaluator is None:
            return
        metrics = evaluator.metrics
        run.define_metric("val/score", summary="max" if metrics.higher_is_better else "min")
        for column in metrics.columns:
            run.define_metric(f"val/{column.key}", summary="max" if column.higher_is_better else "min")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        self._validations += 1
        logger = self.wandb_logger(trainer)
        if logger is None:
            return
        import wandb

        result = getattr(pl_module, "results", {}).get("val")
        curve = None if result is None else result.curve
        if curve is not None:
            table = wandb.Table(columns=["threshold", "PCK"], data=[list(r) for r in zip(curve["thresholds"], curve["pck"])])
            chart = wandb.plot.line(table, "threshold", "PCK",
                                    title=f"{curve.get('metric', 'PCK')} vs {curve.get('label', 'threshold')} (validation)")
            logger.log_metrics({"val/pck_curve": chart}, step=trainer.global_step)  # type: ignore[dict-item]
        if self.image_every_n_val and (self._validations - 1) % self.image_every_n_val == 0:
            panel = self.example_panel(trainer, pl_module)
            if panel is not None:
                logger.log_image("val/examples", [panel], step=trainer.global_step,
                                 caption=[f"epoch {trainer.current_epoch}, step {trainer.global_step}"])

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        device = pl_module.device
        peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
        stats = {"peak_accelerator_memory_mb": None if peak is None else peak / 2**20,
                 "global_step": trainer.global_step, "epochs": trainer.current_epoch,
                 "train_frames": getattr(trainer.datamodule, "train_frames", None)}
        self._write_json(trainer, "train_stats.json", stats)
        logger = self.wandb_logger(trainer)
        if logger is not None and peak is not None:
            logger.experiment.summary["model/peak_accelerator_memory_mb"] = stats["peak_accelerator_memory_mb"]

    # ---- the example panel -------------------------------------------------------------------------
    def example_panel(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> np.ndarray | None:
        """(H, W, 3) uint8: the first ``num_images`` validation images, predictions vs ground truth; a second
        row with the summed predicted heatmap for heads that have maps."""
        dataset = getattr(trainer.datamodule, "datasets", {}).get("val")
        if dataset is None or self.num_images == 0:
            return None
        samples = [dataset[i] for i in range(min(self.num_images, len(dataset)))]
        images = torch.stack([s["image"] for s in samples]).to(pl_module.device)  # (N, 3, H, W)
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            out = pl_module.network.run(images, with_spread=False)
            coords = out.coords  # (N, K, 2) x,y input pixels
            maps = pl_module.head.heatmaps(out.raw)  # (N, K, h, w) or None
            summed = None if maps is None else maps.float().sum(dim=1, keepdim=True)  # (N, 1, h, w)
            if summed is not None:
                summed = F.interpolate(summed, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        pl_module.train(was_training)
        skeleton = trainer.datamodule.describe()["skeleton"]
        rows = 1 if summed is None else 2
        n = len(samples)
        fig = new_figure(1.9 * n, 2.0 * rows + 0.7)
        axes = fig.subplots(rows, n, squeeze=False)
        for i, sample in enumerate(samples):
            image = tensor_to_image(sample["image"])  # (H, W, 3) uint8
            gt = sample["keypoints"].numpy().copy()  # (K, 2) x,y input pixels
            gt[sample["visibility"].numpy() <= 0] = np.nan
            pred = coords[i].float().cpu().numpy()  # (K, 2) x,y input pixels
            draw_pose(axes[0, i], image, skeleton, gt=gt, pred=pred, title=f"val #{i}")
            if summed is not None:
                draw_pose(axes[1, i], image, skeleton, heatmap=summed[i].cpu().numpy())
        fig.suptitle(f"{type(pl_module.head).__name__} — epoch {trainer.current_epoch}", fontsize=11)
        add_pose_legend(fig, heatmap=summed is not None)
        fig.subplots_adjust(left=0.01, right=0.99, top=0.86 if rows == 1 else 0.9, bottom=0.12 if rows == 1 else 0.07,
                            wspace=0.04, hspace=0.08)
        return figure_to_array(fig)
