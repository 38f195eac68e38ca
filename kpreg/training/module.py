"""KeypointModule: backbone → head, trained and evaluated head- and dataset-agnostically.

The module only orchestrates: it builds the backbone, builds the head from what the backbone and the data
declare, reduces the head's per-keypoint losses in one place (``kpreg.losses.reduce_keypoint_losses``: visibility,
per-keypoint weights, online hard keypoint mining), asks the head for its decoded coordinates, maps them back to
original pixels and feeds the dataset's metrics (``kpreg.metrics.build_metrics`` of the datamodule's
``EvaluationSpec``). Which head or dataset runs is never tested here.

Confidence: the head's raw score is mapped to P(correct) by a calibration fitted on each validation epoch's
predictions (``kpreg.training.calibration``) and stored in the checkpoint (``checkpoint["kpreg"]["calibration"]``);
evaluation metrics, written predictions and ``predict_keypoints`` use it. Without one, confidences are raw.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from pytorch_lightning.utilities import rank_zero_warn

from kpreg.backbone import Backbone
from kpreg.coords import apply_affine
from kpreg.heads.base import Head, HeadSpec
from kpreg.losses import reduce_keypoint_losses
from kpreg.metrics import KeypointMetrics, build_metrics
from kpreg.metrics.calibration import CalibrationRecord, ConfidenceMap
from kpreg.metrics.uncertainty import UncertaintyMetric
from kpreg.training.calibration import (
    CalibrationOutcome,
    EpochRows,
    EpochTable,
    calibrate_epoch,
    check_calibration_method,
    finite_scores,
    gather_table,
    to_device,
)
from kpreg.training.checkpoint import (
    CheckpointMismatchError,
    check_checkpoint_identity,
    check_state_dict_compatible,
    load_backbone_weights,
)
from kpreg.training.schedules import WarmupCosine


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite and ``nonfinite_loss`` is ``stop``."""


class KeypointModule(pl.LightningModule):
    """Args:
    head: the head (``class_path`` + ``init_args`` in the config).
    backbone: timm model name.
    pretrained / pretrained_file: timm pretrained weights, or a local weights file (no network).
    feature_index: backbone feature level to use (-1 = deepest).
    backbone_kwargs: extra ``timm.create_model`` arguments.
    num_keypoints / input_size / flip_pairs / keypoint_names / skeleton / sigmas: linked from the datamodule by
        the CLI (and stored in every checkpoint, with the head, so that a checkpoint knows its model).
    flip_test: average predictions on the input and its mirror image in validation and test.
    ohkm_topk: online hard keypoint mining: optimise only the ``k`` largest keypoint losses of each sample (CPN /
        HRNet use 8 of 17); ``None`` = every visible keypoint.
    keypoint_weights: per-keypoint loss weights (K,), e.g. mmpose's 1.5 for ankles and wrists; ``None`` = equal.
    optimizer / lr_scheduler: ``class_path`` configs; default AdamW(lr=1e-3, weight_decay=1e-4) with
        ``kpreg.training.schedules.WarmupCosine``. The learning rate is never scaled automatically: it is the rate for
        the total batch ``data.batch_size × devices × num_nodes × accumulate_grad_batches``.
    nonfinite_loss: what a NaN / infinite training loss does: ``stop`` raises ``NonFiniteLossError`` naming
        the step (nothing is saved from the bad state), ``skip`` drops that optimizer step and goes on.
    channels_last: keep weights and inputs in NHWC memory layout (faster convolutions on tensor cores).
    compile: ``torch.compile`` the backbone and the head (in place: checkpoint keys are unchanged).
    compile_kwargs: extra ``torch.compile`` arguments, e.g. ``{mode: max-autotune}``.
    init_backbone_from: a kpreg checkpoint whose ``backbone.*`` tensors initialise the backbone (the head
        stays freshly initialised), e.g. to fine-tune a new head or keypoint set on a trained backbone.
    calibration_method: how the raw confidence is mapped to P(correct) at each validation: ``auto`` (the method
        with the lowest cross-fitted log-loss among ``kpreg.metrics.calibration.default_candidates``), a key of
        ``kpreg.metrics.calibration.CALIBRATORS`` (e.g. ``platt``), or ``none`` (raw scores everywhere).
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
        keypoint_names: Sequence[str] | None = None,
        skeleton: Sequence[Sequence[int]] | None = None,
        sigmas: Sequence[float] | None = None,
        flip_test: bool = True,
        ohkm_topk: int | None = None,
        keypoint_weights: Sequence[float] | None = None,
        optimizer: OptimizerCallable | None = None,
        lr_scheduler: LRSchedulerCallable | None = None,
        nonfinite_loss: Literal["stop", "skip"] = "stop",
        channels_last: bool = False,
        compile: bool = False,
        compile_kwargs: dict[str, Any] | None = None,
        init_backbone_from: str | None = None,
        calibration_method: str = "auto",
    ) -> None:
        super().__init__()
        if nonfinite_loss not in ("stop", "skip"):
            raise ValueError(f"nonfinite_loss must be 'stop' or 'skip', got {nonfinite_loss!r}")
        self.backbone = Backbone(backbone, pretrained, pretrained_file, feature_index, backbone_kwargs)
        if init_backbone_from is not None:
            load_backbone_weights(self.backbone, init_backbone_from)
        self.num_keypoints = num_keypoints
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.flip_pairs = [tuple(int(i) for i in p) for p in (flip_pairs or [])]
        self.keypoint_names = [str(n) for n in keypoint_names] if keypoint_names else [
            f"keypoint_{i}" for i in range(num_keypoints)]
        self.skeleton = [tuple(int(i) for i in e) for e in (skeleton or [])]
        self.sigmas = tuple(float(v) for v in (sigmas or ()))
        if len(self.keypoint_names) != num_keypoints:
            raise ValueError(f"{len(self.keypoint_names)} keypoint names for {num_keypoints} keypoints")
        self.flip_test = flip_test
        if ohkm_topk is not None and ohkm_topk < 1:
            raise ValueError(f"model.ohkm_topk must be >= 1 (or null), got {ohkm_topk}")
        self.ohkm_topk = ohkm_topk
        if keypoint_weights is not None and len(keypoint_weights) != num_keypoints:
            raise ValueError(f"model.keypoint_weights has {len(keypoint_weights)} values for {num_keypoints} keypoints")
        self.register_buffer("keypoint_weights", None if keypoint_weights is None else
                             torch.tensor([float(w) for w in keypoint_weights]), persistent=False)
        self.head = head
        self.head.build(HeadSpec(self.backbone.channels, self.backbone.stride, num_keypoints, self.input_size,
                                 self.sigmas))
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        self.val_metric: KeypointMetrics | None = None
        self.test_metric: KeypointMetrics | None = None
        self.metric_curves: dict[str, dict[str, Any]] = {}  # "val"/"test" → the metrics' PCK curve
        # Head-agnostic like the datamodule's metric, but owned here: it needs the head's confidence and spread.
        self.val_uncertainty = UncertaintyMetric()
        self.test_uncertainty = UncertaintyMetric()
        self.run_config: dict[str, Any] = {}  # the resolved config, set by the CLI; stored in checkpoints
        self.allow_checkpoint_mismatch = False  # set by the CLI's --allow_checkpoint_mismatch
        self._test_predictions: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.calibration_method = check_calibration_method(calibration_method)
        self.calibration: CalibrationRecord | None = None  # the map in use (checkpoint["kpreg"]["calibration"])
        self.confidence_map: ConfidenceMap | None = None  # the same as a module (non-persistent buffers)
        self.calibrate_on_test = False  # evaluate.py --calibrate: fit on the evaluated split
        self.correct_threshold = 0.5  # the dataset's definition of correct (setup)
        self.scale_kind = "head"
        self._epoch_rows = {"val": EpochRows(), "test": EpochRows()}
        self.calibration_outcomes: dict[str, CalibrationOutcome] = {}  # "val"/"test" → the last epoch's
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
        """→ (raw, coords (B, K, 2) x,y input pixels, raw confidence (B, K)), flip-averaged if enabled."""
        raw = self(images)
        if self.flip_test:
            raw_flipped = self(images.flip(-1))
            coords, scores = self.head.flip_merge(raw, raw_flipped, self.flip_pairs)
        else:
            coords, scores = self.head.decode(raw)
        return raw, coords, scores

    def confidence(self, raw_confidence: torch.Tensor, spread: torch.Tensor | None) -> torch.Tensor:
        """(B, K) raw confidence [and the head's (B, K) spread] → P(correct) with the fitted calibration; the raw
        score where there is none."""
        if self.confidence_map is None:
            return raw_confidence
        return self.confidence_map(raw_confidence, spread if self.confidence_map.uses_spread else None)

    def predict_keypoints(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) → (coords (B, K, 2) x,y input pixels, confidence (B, K): calibrated where fitted)."""
        raw, coords, scores = self.predict_coords(images)
        spread = self.head.spread(raw) if self.confidence_map is not None and self.confidence_map.uses_spread else None
        return coords, self.confidence(scores, spread)

    # ---- calibration ---------------------------------------------------------------------------------
    def set_calibration(self, record: CalibrationRecord | None) -> None:
        """Use ``record``'s map from now on (None: raw confidences)."""
        self.calibration = record
        self.confidence_map = None if record is None else ConfidenceMap.from_state(record.map, self.num_keypoints)

    def load_calibration(self, checkpoint: dict[str, Any]) -> None:
        """The calibration a checkpoint carries (``checkpoint["kpreg"]["calibration"]``), or none."""
        saved = (checkpoint.get("kpreg") or {}).get("calibration")
        self.set_calibration(None if saved is None else CalibrationRecord.from_dict(saved, "checkpoint calibration"))

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
        spec = datamodule.evaluation()
        self.val_metric = build_metrics(spec)
        self.test_metric = build_metrics(spec)
        # A keypoint is "correct" within the dataset's threshold of its own scale (0.5 head / 0.1 box sizes).
        self.correct_threshold = float(spec.correct_threshold)
        self.scale_kind = spec.scale
        self.val_uncertainty.threshold = self.test_uncertainty.threshold = self.correct_threshold

    def on_fit_start(self) -> None:
        # A head that learns from the training keypoints (e.g. anchor poses) sees them once, before the first step;
        # a resumed run has them in its checkpoint already.
        if self.head.needs_fit and not self.head.is_fitted():
            keypoints, visibility = self.trainer.datamodule.training_keypoints()
            self.head.fit(torch.as_tensor(keypoints, dtype=torch.float32, device=self.device),
                          torch.as_tensor(visibility, device=self.device))

    def on_train_start(self) -> None:
        # The schedule's length is only known once the training loader exists. It is read here rather than in
        # configure_optimizers, because asking for it there makes Lightning build the loaders before a resumed
        # run's checkpoint (with the loaders' mid-epoch positions, kpreg.data.samplers) is restored.
        for config in self.trainer.lr_scheduler_configs:
            if isinstance(config.scheduler, WarmupCosine) and config.scheduler.max_steps is None:
                config.scheduler.max_steps = int(self.trainer.estimated_stepping_batches)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if not self.allow_checkpoint_mismatch:
            check_checkpoint_identity(checkpoint, self.describe(), "the checkpoint")
        check_state_dict_compatible(self, checkpoint["state_dict"])
        self.load_calibration(checkpoint)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # What a checkpoint needs to be used without its config (plain data: loadable with weights_only=True),
        # with the calibration of the last validation (fitted on these weights' predictions for best.ckpt).
        checkpoint["kpreg"] = self.describe()
        checkpoint["kpreg"]["calibration"] = None if self.calibration is None else self.calibration.to_dict()

    def describe(self) -> dict[str, Any]:
        """The model's identity in plain data: head, keypoints, input size, backbone, the resolved config."""
        head_args = dict(getattr(self.head, "init_args", {}))
        return {
            "format": 1,
            "head": {"class_path": f"{type(self.head).__module__}.{type(self.head).__qualname__}",
                     "init_args": head_args},
            "backbone": self.backbone.name,
            "num_keypoints": self.num_keypoints,
            "keypoint_names": list(self.keypoint_names),
            "skeleton": [list(e) for e in self.skeleton],
            "flip_pairs": [list(p) for p in self.flip_pairs],
            "sigmas": list(self.sigmas),
            "input_size": list(self.input_size),
            "config": self.run_config,
        }

    # ---- losses --------------------------------------------------------------------------------------
    def compute_loss(
        self, raw: torch.Tensor, keypoints: torch.Tensor, visibility: torch.Tensor, scale: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        """``{"loss": the optimised total, <term>: its masked mean (logged)}`` from the head's (B, K) terms."""
        terms = self.head.loss(raw, keypoints, visibility, scale)
        per_keypoint = sum(terms.values())  # (B, K)
        out = {"loss": reduce_keypoint_losses(per_keypoint, visibility, self.keypoint_weights, self.ohkm_topk)}
        for name, term in terms.items():  # each term as a plain masked mean, for the logs
            out[name] = reduce_keypoint_losses(term.detach(), visibility)
        return out

    # ---- steps ---------------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        raw = self(batch["image"])
        losses = self.compute_loss(raw, batch["keypoints"], batch["visibility"], batch.get("scale"))
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
            # produce a non-finite loss, so nothing is saved from them (see kpreg.training.callbacks.LastCheckpoint).
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

    def _evaluate_batch(self, batch: dict[str, Any], metric: KeypointMetrics | None, prefix: str) -> None:
        """Loss of the batch; its predictions are kept for the end of the epoch (``_finish_epoch``)."""
        raw, coords, scores = self.predict_coords(batch["image"])
        meta = batch["meta"]
        padding = meta.get("padding")
        if padding is not None and bool(padding.any()):
            # Distributed evaluation pads shards to equal length (kpreg.data.samplers); pads never count.
            keep = ~padding.bool()
            raw, coords, scores, meta = raw[keep], coords[keep], scores[keep], select_rows(meta, keep)
            keypoints, visibility = batch["keypoints"][keep], batch["visibility"][keep]
            scale = batch["scale"][keep] if "scale" in batch else None
        else:
            keypoints, visibility, scale = batch["keypoints"], batch["visibility"], batch.get("scale")
        if len(raw) == 0:
            return
        if metric is None:
            raise RuntimeError("evaluation without a datamodule: the dataset's metrics are built in setup()")
        losses = self.compute_loss(raw, keypoints, visibility, scale)
        self.log(f"{prefix}/loss", losses["loss"], on_epoch=True, batch_size=len(raw), sync_dist=True)
        coords_orig = apply_affine(coords.double(), meta["affine_inv"])  # (B, K, 2) original px
        # The spread is the unflipped prediction's (flip_merge averages coordinates, not distributions).
        self._epoch_rows[prefix].add(coords_orig, scores, self.head.spread(raw), meta)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate_batch(batch, self.val_metric, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate_batch(batch, self.test_metric, "test")

    def on_validation_epoch_start(self) -> None:
        self._epoch_rows["val"].clear()

    def _finish_epoch(self, prefix: str) -> None:
        """Decide the epoch's confidence (``kpreg.training.calibration``), then feed the metrics with it."""
        rows = self._epoch_rows[prefix]
        metric = self.val_metric if prefix == "val" else self.test_metric
        uncertainty = self.val_uncertainty if prefix == "val" else self.test_uncertainty
        if prefix == "test":
            self._test_predictions = []
        if len(rows) == 0 or metric is None:
            rows.clear()
            return
        enabled = self.calibration_method != "none"
        sanity = self._trainer is not None and self.trainer.sanity_checking  # a sanity check never fits
        fit = enabled and ((prefix == "val" and not sanity) or (prefix == "test" and self.calibrate_on_test))
        table, positions = gather_table(EpochTable.of(rows))
        outcome = calibrate_epoch(
            table, fit=fit, method=self.calibration_method, record=self.calibration if enabled else None,
            threshold=self.correct_threshold, scale=self.scale_kind, flip_test=self.flip_test,
            split="validation" if prefix == "val" else "evaluated", num_keypoints=self.num_keypoints)
        if fit and outcome.mode != "fitted":
            rank_zero_warn(f"{prefix}: too few labelled samples ({len(table.index)}) to cross-fit a calibration "
                           f"({outcome.note})")
        if outcome.mode == "applied" and self.calibration is not None and self.calibration.flip_test != self.flip_test:
            kinds = {True: "flip-tested", False: "single-pass"}
            rank_zero_warn(f"the calibration was fitted on {kinds[self.calibration.flip_test]} confidences and is "
                           f"applied to {kinds[self.flip_test]} ones")
        if outcome.mode == "fitted":
            self.set_calibration(outcome.record)
        self.calibration_outcomes[prefix] = outcome
        confidence = outcome.confidence[positions]  # (S_local, K) this process's rows
        for coords, conf, spread, meta in rows.batches(confidence):
            # Back on the module's device, where the metrics' states live (DDP syncs them there).
            coords, conf, spread, meta = to_device((coords, conf, spread, meta), self.device)
            metric.update(coords, conf, meta)
            uncertainty.update(coords, conf, meta, spread)
            if prefix == "test":
                self._test_predictions.append((meta["index"].cpu(), coords.cpu(), conf.float().cpu()))
        rows.clear()
        self.log_dict({f"{prefix}/{k}": v for k, v in finite_scores(outcome.scores).items()}, sync_dist=False)

    def _log_metric(self, metric: KeypointMetrics | None, prefix: str) -> dict[str, float]:
        if metric is None:
            return {}
        # torchmetrics reduces the states over all processes in compute(): every rank gets the global value.
        values = metric.compute()
        # The PCK-vs-threshold curve, for the run logging callback and evaluate.py's pck_curve.json; read before
        # reset() because it needs the accumulated states.
        curve = metric.curve()
        if curve is not None:
            self.metric_curves[prefix] = curve
        metric.reset()
        self.log_dict({f"{prefix}/{k}": v for k, v in values.items()}, sync_dist=False)
        # val/score: the primary key, whatever its direction (the checkpoint callback's mode follows it).
        self.log(f"{prefix}/score", values[metric.primary], prog_bar=True)
        return values

    def _log_uncertainty(self, metric: UncertaintyMetric, prefix: str) -> dict[str, float]:
        values = metric.compute() if metric.update_count else {}
        metric.reset()
        self.log_dict({f"{prefix}/{k}": v for k, v in values.items()}, sync_dist=False)
        return values

    def on_validation_epoch_end(self) -> None:
        self._finish_epoch("val")
        self._log_metric(self.val_metric, "val")
        self._log_uncertainty(self.val_uncertainty, "val")

    def on_test_epoch_start(self) -> None:
        self._test_predictions = []
        self._epoch_rows["test"].clear()

    def on_test_epoch_end(self) -> None:
        self._finish_epoch("test")
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
