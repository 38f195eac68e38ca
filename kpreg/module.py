"""KeypointModule: backbone → head, trained and evaluated head- and dataset-agnostically.

The module only orchestrates: it builds the backbone, builds the head from what the backbone and the data
declare, asks the head for its loss and its decoded coordinates, maps them back to original pixels and
feeds the datamodule's metric. Which head or dataset runs is never tested here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from pytorch_lightning.utilities import rank_zero_warn

from kpreg.backbone import Backbone
from kpreg.coords import apply_affine
from kpreg.heads.base import Head, HeadSpec
from kpreg.metrics.uncertainty import UncertaintyMetric
from kpreg.schedules import WarmupCosine


class CheckpointMismatchError(ValueError):
    """A checkpoint whose tensors do not fit this model (another head, keypoint count or backbone)."""


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite and ``nonfinite_loss`` is ``stop``."""


class KeypointModule(pl.LightningModule):
    """Args:
    head: the head (``class_path`` + ``init_args`` in the config).
    backbone: timm model name.
    pretrained / pretrained_file: timm pretrained weights, or a local weights file (no network).
    feature_index: backbone feature level to use (-1 = deepest).
    backbone_kwargs: extra ``timm.create_model`` arguments.
    num_keypoints / input_size / flip_pairs: linked from the datamodule by the CLI.
    flip_test: average predictions on the input and its mirror image in validation and test.
    optimizer / lr_scheduler: ``class_path`` configs; default AdamW(lr=1e-3, weight_decay=1e-4) with
        ``kpreg.schedules.WarmupCosine``. The learning rate is never scaled automatically: it is the rate for
        the total batch ``data.batch_size × devices × num_nodes × accumulate_grad_batches``.
    nonfinite_loss: what a NaN / infinite training loss does: ``stop`` raises ``NonFiniteLossError`` naming
        the step (nothing is saved from the bad state), ``skip`` drops that optimizer step and goes on.
    channels_last: keep weights and inputs in NHWC memory layout (faster convolutions on tensor cores).
    compile: ``torch.compile`` the backbone and the head (in place: checkpoint keys are unchanged).
    compile_kwargs: extra ``torch.compile`` arguments, e.g. ``{mode: max-autotune}``.
    init_backbone_from: a kpreg checkpoint whose ``backbone.*`` tensors initialise the backbone (the head
        stays freshly initialised), e.g. to fine-tune a new head or keypoint set on a trained backbone.
    """

    def __init__(
        self,
        head: Head,
        backbone: str = "resnet18",
        pretrained: bool = False,
        pretrained_file: str | None = None,
        feature_index: int = -1,
        backbone_kwargs: dict[str, Any] | None = None,
        num_keypoints: int = 16,
        input_size: tuple[int, int] = (256, 256),
        flip_pairs: Sequence[Sequence[int]] | None = None,
        flip_test: bool = True,
        optimizer: OptimizerCallable | None = None,
        lr_scheduler: LRSchedulerCallable | None = None,
        nonfinite_loss: Literal["stop", "skip"] = "stop",
        channels_last: bool = False,
        compile: bool = False,
        compile_kwargs: dict[str, Any] | None = None,
        init_backbone_from: str | None = None,
    ) -> None:
        super().__init__()
        if nonfinite_loss not in ("stop", "skip"):
            raise ValueError(f"nonfinite_loss must be 'stop' or 'skip', got {nonfinite_loss!r}")
        self.backbone = Backbone(backbone, pretrained, pretrained_file, feature_index, backbone_kwargs)
        if init_backbone_from is not None:
            load_backbone_weights(self.backbone, init_backbone_from)
        self.num_keypoints = num_keypoints
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.flip_pairs = [tuple(p) for p in (flip_pairs or [])]
        self.flip_test = flip_test
        self.head = head
        self.head.build(HeadSpec(self.backbone.channels, self.backbone.stride, num_keypoints, self.input_size))
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        self.val_metric: Any = None
        self.test_metric: Any = None
        self.primary_metric = "Mean"
        self.metric_curves: dict[str, dict[str, list[float]]] = {}  # "val"/"test" → the metric's curve()
        # Head-agnostic like the datamodule's metric, but owned here: it needs the head's confidence and spread.
        self.val_uncertainty = UncertaintyMetric()
        self.test_uncertainty = UncertaintyMetric()
        self._test_predictions: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.nonfinite_loss = nonfinite_loss
        self.channels_last = channels_last
        self.compile = compile
        self.compile_kwargs = dict(compile_kwargs or {})
        self._compiled = False
        self._skip_optimizer_step = False
        self.skipped_steps = 0
        if channels_last:
            # Parameters keep this layout through .to(device) and load_state_dict (copy_ keeps the destination's).
            self.backbone.to(memory_format=torch.channels_last)
            self.head.to(memory_format=torch.channels_last)

    # ---- forward / predict ---------------------------------------------------------------------------
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) → the head's raw output."""
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.head(self.backbone(images))

    def predict_coords(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """→ (raw, coords (B, K, 2) x,y input pixels, confidence (B, K)), flip-averaged if enabled."""
        raw = self(images)
        if self.flip_test:
            raw_flipped = self(images.flip(-1))
            coords, scores = self.head.flip_merge(raw, raw_flipped, self.flip_pairs)
        else:
            coords, scores = self.head.decode(raw)
        return raw, coords, scores

    # ---- lifecycle -----------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if self.compile and not self._compiled:
            # nn.Module.compile compiles in place: state_dict keys stay "backbone.*" / "head.*" (no "_orig_mod.").
            self.backbone.compile(**self.compile_kwargs)
            self.head.compile(**self.compile_kwargs)
            self._compiled = True
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        if datamodule is None:
            return
        if datamodule.num_keypoints != self.num_keypoints:
            raise CheckpointMismatchError(
                f"the data has {datamodule.num_keypoints} keypoints but the model was built for "
                f"{self.num_keypoints}"
            )
        self.val_metric = datamodule.build_metric()
        self.test_metric = datamodule.build_metric()
        self.primary_metric = datamodule.primary_metric

    def on_train_start(self) -> None:
        # Lightning hands a resumed run's saved loader positions (kpreg.samplers.ResumableDataLoader) to the
        # loaders in fit_loop.setup_data, but configure_optimizers' estimated_stepping_batches has already run
        # setup_data before the checkpoint was restored, so they would be dropped: apply them here, before
        # the first batch is drawn (the loader's iterator is lazy). A no-op when nothing is pending.
        fit_loop = self.trainer.fit_loop
        if getattr(fit_loop, "_combined_loader_states_to_load", None):
            fit_loop._load_combined_loader_states()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        check_state_dict_compatible(self, checkpoint["state_dict"])

    # ---- steps ---------------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        raw = self(batch["image"])
        losses = self.head.loss(raw, batch["keypoints"], batch["visibility"])
        loss = losses["loss"]
        if self._any_rank(not bool(torch.isfinite(loss.detach()).all())):
            return self._nonfinite(loss, batch_idx)
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, prog_bar=False, batch_size=len(raw))
        return loss

    def _any_rank(self, flag: bool) -> bool:
        """``flag`` OR-ed over all processes: every rank must take the same branch or DDP would hang."""
        if self._trainer is None or self.trainer.world_size == 1:
            return flag
        return bool(self.trainer.strategy.reduce_boolean_decision(flag, all=False))

    def _nonfinite(self, loss: torch.Tensor, batch_idx: int) -> torch.Tensor:
        step, epoch = self.trainer.global_step, self.trainer.current_epoch
        where = f"global step {step} (epoch {epoch}, batch {batch_idx})"
        if self.nonfinite_loss == "stop":
            # Raised before backward: the weights are still those of the previous step, but they already
            # produce a non-finite loss, so nothing is saved from them (see kpreg.callbacks.LastCheckpoint).
            raise NonFiniteLossError(
                f"non-finite training loss ({loss.item()}) at {where}: training stopped. "
                "Resume from the last good checkpoint with --ckpt_path last, with a lower learning rate or "
                "gradient clipping (--trainer.gradient_clip_val), or set --model.nonfinite_loss skip."
            )
        # skip: backward must still run on every rank (DDP's gradient all-reduce), so return a zero loss that
        # touches every parameter; on_before_optimizer_step then drops the gradients and the step is not taken.
        self._skip_optimizer_step = True
        self.skipped_steps += 1
        rank_zero_warn(f"non-finite training loss at {where}: skipping this optimizer step "
                       f"({self.skipped_steps} skipped so far)")
        return sum((p.sum() * 0.0 for p in self.parameters() if p.requires_grad), torch.zeros((), device=self.device))

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self._skip_optimizer_step:
            # Parameters without a gradient are left alone by torch optimizers: no update, no weight decay, no
            # moment update. With gradient accumulation the whole accumulated step is dropped.
            optimizer.zero_grad(set_to_none=True)
            self._skip_optimizer_step = False

    def _evaluate_batch(
        self, batch: dict[str, Any], metric: Any, prefix: str
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]] | None:
        raw, coords, scores = self.predict_coords(batch["image"])
        meta = batch["meta"]
        padding = meta.get("padding")
        if padding is not None and bool(padding.any()):
            # Distributed evaluation pads shards to equal length (kpreg.samplers); pads never count.
            keep = ~padding.bool()
            raw, coords, scores, meta = raw[keep], coords[keep], scores[keep], select_rows(meta, keep)
            keypoints, visibility = batch["keypoints"][keep], batch["visibility"][keep]
        else:
            keypoints, visibility = batch["keypoints"], batch["visibility"]
        if len(raw) == 0:
            return None
        losses = self.head.loss(raw, keypoints, visibility)
        self.log(f"{prefix}/loss", losses["loss"], on_epoch=True, batch_size=len(raw), sync_dist=True)
        coords_orig = apply_affine(coords.double(), meta["affine_inv"])  # (B, K, 2) original px
        metric.update(coords_orig, scores.double(), meta)
        # The spread is the unflipped prediction's (flip_merge averages coordinates, not distributions).
        uncertainty = self.val_uncertainty if prefix == "val" else self.test_uncertainty
        uncertainty.update(coords_orig, scores, meta, self.head.spread(raw))
        return coords_orig, scores, meta

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate_batch(batch, self.val_metric, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        result = self._evaluate_batch(batch, self.test_metric, "test")
        if result is not None:
            coords_orig, scores, meta = result
            self._test_predictions.append((meta["index"].cpu(), coords_orig.cpu(), scores.float().cpu()))

    def _log_metric(self, metric: Any, prefix: str) -> dict[str, float]:
        # torchmetrics reduces the states over all processes in compute(): every rank gets the global value.
        values = {k: float(v) for k, v in metric.compute().items()}
        # Metrics with a threshold curve (PCKh) keep it for the run logging callback and evaluate.py's
        # pck_curve.json; it is read before reset() because the curve needs the accumulated counts.
        if hasattr(metric, "curve"):
            self.metric_curves[prefix] = metric.curve()
        metric.reset()
        self.log_dict({f"{prefix}/{k}": v for k, v in values.items()}, sync_dist=False)
        self.log(f"{prefix}/score", values[self.primary_metric], prog_bar=True)
        return values

    def _log_uncertainty(self, metric: UncertaintyMetric, prefix: str) -> dict[str, float]:
        values = metric.compute() if metric.update_count else {}
        metric.reset()
        self.log_dict({f"{prefix}/{k}": v for k, v in values.items()}, sync_dist=False)
        return values

    def on_validation_epoch_end(self) -> None:
        self._log_metric(self.val_metric, "val")
        self._log_uncertainty(self.val_uncertainty, "val")

    def on_test_epoch_start(self) -> None:
        self._test_predictions = []

    def on_test_epoch_end(self) -> None:
        self.test_results = self._log_metric(self.test_metric, "test")
        # Kept apart from test_results, whose keys are the dataset metric's (the --json file's contract).
        self.test_uncertainty_results = self._log_uncertainty(self.test_uncertainty, "test")
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            # Every rank holds the predictions of its shard; gather them so that rank 0 can write the file.
            gathered: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, self._test_predictions)
            self._test_predictions = [p for rank_predictions in gathered for p in rank_predictions]

    def test_predictions(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(indices (N,), coords (N, K, 2) original pixels, scores (N, K)) of the last test run (all processes),
        in dataset order, one row per sample index."""
        indices = torch.cat([p[0] for p in self._test_predictions])
        coords = torch.cat([p[1] for p in self._test_predictions])
        scores = torch.cat([p[2] for p in self._test_predictions])
        # Padding is already dropped per batch; de-duplicating by index as well costs nothing and guarantees
        # one row per sample whatever sampler a datamodule uses.
        order = torch.argsort(indices, stable=True)
        indices, coords, scores = indices[order], coords[order], scores[order]
        first = torch.ones_like(indices, dtype=torch.bool)
        first[1:] = indices[1:] != indices[:-1]
        return indices[first], coords[first], scores[first]

    # ---- optimisation --------------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        if self.optimizer_factory is not None:
            optimizer = self.optimizer_factory(self.parameters())
        else:
            optimizer = torch.optim.AdamW(self.parameters(), lr=1e-3, weight_decay=1e-4)
        scheduler = (
            self.lr_scheduler_factory(optimizer) if self.lr_scheduler_factory is not None else WarmupCosine(optimizer)
        )
        if isinstance(scheduler, WarmupCosine) and scheduler.max_steps is None:
            scheduler.max_steps = int(self.trainer.estimated_stepping_batches)
        interval = getattr(scheduler, "interval", "epoch")
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": interval}}


def select_rows(meta: dict[str, Any], keep: torch.Tensor) -> dict[str, Any]:
    """The rows ``keep`` (B,) bool of every per-sample entry of a collated ``meta`` (tensors, lists, dicts)."""
    batch = len(keep)
    rows = keep.nonzero().flatten().tolist()
    out: dict[str, Any] = {}
    for key, value in meta.items():
        if isinstance(value, torch.Tensor) and value.ndim > 0 and len(value) == batch:
            out[key] = value[keep.to(value.device)]
        elif isinstance(value, dict):
            out[key] = select_rows(value, keep)
        elif isinstance(value, (list, tuple)) and len(value) == batch:
            out[key] = [value[i] for i in rows]
        else:
            out[key] = value
    return out


def load_backbone_weights(backbone: torch.nn.Module, ckpt_path: str) -> None:
    """Load the ``backbone.*`` tensors of a kpreg checkpoint (``weights_only=True``) into ``backbone``."""
    if not Path(ckpt_path).is_file():
        raise FileNotFoundError(f"init_backbone_from: checkpoint not found: {ckpt_path}")
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    state_dict = checkpoint.get("state_dict", checkpoint)
    prefix = "backbone."
    backbone_state = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    if not backbone_state:
        raise CheckpointMismatchError(f"init_backbone_from: {ckpt_path} has no 'backbone.*' tensors")
    try:
        check_state_dict_compatible(backbone, backbone_state)
    except CheckpointMismatchError as err:
        raise CheckpointMismatchError(f"init_backbone_from {ckpt_path}: {err} (another backbone?)") from None
    backbone.load_state_dict(backbone_state)


def check_state_dict_compatible(model: torch.nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
    """Raise ``CheckpointMismatchError`` naming every tensor that is missing, unexpected or mis-shaped."""
    own = model.state_dict()
    problems = []
    for name, tensor in state_dict.items():
        if name not in own:
            problems.append(f"unexpected tensor '{name}' {tuple(tensor.shape)}")
        elif own[name].shape != tensor.shape:
            problems.append(f"'{name}': checkpoint {tuple(tensor.shape)} vs model {tuple(own[name].shape)}")
    problems += [f"missing tensor '{name}'" for name in own if name not in state_dict]
    if problems:
        shown = "\n  ".join(problems[:12]) + (f"\n  … and {len(problems) - 12} more" if len(problems) > 12 else "")
        raise CheckpointMismatchError(
            "the checkpoint does not fit this model (another head, keypoint count or backbone?):\n  " + shown
        )
