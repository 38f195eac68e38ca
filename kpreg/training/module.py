"""KeypointModule: trains a ``KeypointNetwork`` head- and dataset-agnostically.

The module builds the network (timm backbone → head, ``kpreg.network``), reduces the head's per-keypoint losses in
one place (``kpreg.losses.reduce_keypoint_losses``: visibility, per-keypoint weights, online hard keypoint mining),
optimises, and logs what evaluation computed. Evaluation batches become rows of the evaluation table
(``kpreg.metrics.table``); at the end of an epoch the table is gathered once and handed to the dataset's
``Evaluator`` (``kpreg.training.evaluation``), which calibrates the confidence (``Calibration``: fitted at every
validation, stored in the checkpoint) and scores it. Which head or dataset runs is never tested here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from pytorch_lightning.utilities import rank_zero_warn

from kpreg.backbone import Backbone
from kpreg.coords import apply_affine
from kpreg.heads.base import Head, HeadSpec
from kpreg.losses import reduce_keypoint_losses
from kpreg.metrics.calibration.evaluation import Calibration
from kpreg.metrics.table import EvaluationTable, TableRows
from kpreg.network import KeypointNetwork
from kpreg.training.checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointMismatchError,
    check_state_dict_compatible,
    load_backbone_weights,
    upgrade_checkpoint,
)
from kpreg.training.evaluation import EvaluationResult, Evaluator, gather_table
from kpreg.training.schedules import WarmupCosine
from kpreg.training.unsupervised import UnsupervisedLosses, UnsupervisedTerms, refuse_head


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
    flip_test: average predictions on the input and its mirror image in validation, evaluation and prediction.
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
    init_backbone_from: a kpreg checkpoint whose backbone tensors initialise the backbone (the head stays freshly
        initialised), e.g. to fine-tune a new head or keypoint set on a trained backbone.
    calibration_method: how the raw confidence is mapped to P(correct) at each validation: ``auto`` (the method
        with the lowest cross-fitted log-loss among ``kpreg.metrics.calibration.default_candidates``), a key of
        ``kpreg.metrics.calibration.CALIBRATORS`` (e.g. ``platt``), or ``none`` (raw scores everywhere).
    unsupervised: losses on the unlabelled video of the data part (``data.init_args.unlabelled_videos``): temporal
        difference and pose PCA, with their weights and ε (``kpreg.training.unsupervised``); null: none.
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
        unsupervised: UnsupervisedLosses | None = None,
    ) -> None:
        super().__init__()
        if nonfinite_loss not in ("stop", "skip"):
            raise ValueError(f"nonfinite_loss must be 'stop' or 'skip', got {nonfinite_loss!r}")
        if ohkm_topk is not None and ohkm_topk < 1:
            raise ValueError(f"model.ohkm_topk must be >= 1 (or null), got {ohkm_topk}")
        if keypoint_weights is not None and len(keypoint_weights) != num_keypoints:
            raise ValueError(f"model.keypoint_weights has {len(keypoint_weights)} values for {num_keypoints} keypoints")
        self.num_keypoints = num_keypoints
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.keypoint_names = [str(n) for n in keypoint_names] if keypoint_names else [
            f"keypoint_{i}" for i in range(num_keypoints)]
        if len(self.keypoint_names) != num_keypoints:
            raise ValueError(f"{len(self.keypoint_names)} keypoint names for {num_keypoints} keypoints")
        self.skeleton = [tuple(int(i) for i in e) for e in (skeleton or [])]
        self.sigmas = tuple(float(v) for v in (sigmas or ()))
        self.feature_index = feature_index
        self.backbone_kwargs = dict(backbone_kwargs or {})

        body = Backbone(backbone, pretrained, pretrained_file, feature_index, backbone_kwargs)
        if init_backbone_from is not None:
            load_backbone_weights(body, init_backbone_from)
        head.build(HeadSpec(body.channels, body.stride, num_keypoints, self.input_size, self.sigmas))
        self.network = KeypointNetwork(body, head, flip_pairs or (), flip_test, channels_last=channels_last)
        if channels_last:
            # Parameters keep this layout through .to(device) and load_state_dict (copy_ keeps the destination's).
            self.network.to(memory_format=torch.channels_last)
        self.calibration = Calibration(calibration_method, num_keypoints)
        self.unsupervised: UnsupervisedTerms | None = None
        if unsupervised is not None and unsupervised.active:
            refuse_head(head)
            self.unsupervised = UnsupervisedTerms(unsupervised, num_keypoints, flip_pairs or ())

        self.ohkm_topk = ohkm_topk
        self.register_buffer("keypoint_weights", None if keypoint_weights is None else
                             torch.tensor([float(w) for w in keypoint_weights]), persistent=False)
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        self.nonfinite_loss = nonfinite_loss
        self.compile = compile
        self.compile_kwargs = dict(compile_kwargs or {})
        self._compiled = False
        self._skip_optimizer_step = False
        self.skipped_steps = 0
        self.evaluator: Evaluator | None = None  # the dataset's evaluation, built in setup()
        self._rows = {"val": TableRows(), "test": TableRows()}
        self.results: dict[str, EvaluationResult] = {}  # "val" / "test" → the last evaluated epoch

    # ---- the network's parts -------------------------------------------------------------------------
    @property
    def backbone(self) -> Backbone:
        return self.network.backbone  # type: ignore[return-value]

    @property
    def head(self) -> Head:
        return self.network.head

    @property
    def flip_test(self) -> bool:
        return self.network.flip_test

    @property
    def flip_pairs(self) -> list[tuple[int, int]]:
        return self.network.flip_pairs

    @property
    def channels_last(self) -> bool:
        return self.network.channels_last

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) → the head's raw output."""
        return self.network.raw(images)

    def _use_calibration(self) -> None:
        """The network applies the current calibration map from now on."""
        self.network.confidence_map = self.calibration.confidence_map()
        if self.network.confidence_map is not None:
            self.network.confidence_map.to(self.device)

    def load_calibration(self, checkpoint: dict[str, Any]) -> None:
        """Use the calibration a checkpoint carries (``checkpoint["kpreg"]["calibration"]``), or none."""
        self.calibration.load(checkpoint)
        self._use_calibration()

    # ---- lifecycle -----------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if self.compile and not self._compiled:
            # nn.Module.compile compiles in place: state_dict keys stay "network.backbone.*" (no "_orig_mod.").
            self.network.backbone.compile(**self.compile_kwargs)
            self.network.head.compile(**self.compile_kwargs)
            self._compiled = True
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        if datamodule is None:
            return
        if datamodule.num_keypoints != self.num_keypoints:
            raise CheckpointMismatchError(
                f"the data has {datamodule.num_keypoints} keypoints but the model was built for "
                f"{self.num_keypoints}"
            )
        self.evaluator = Evaluator(datamodule.evaluation())
        if stage == "fit":
            videos = bool(getattr(datamodule, "unlabelled_videos", None))
            if videos and self.unsupervised is None:
                raise ValueError("data.init_args.unlabelled_videos are given but no unsupervised loss is on: set "
                                 "model.unsupervised.temporal_weight and/or pca_weight (or drop the videos)")
            if self.unsupervised is not None and not videos:
                raise ValueError("model.unsupervised has a loss on but the data part has no unlabelled video: set "
                                 "data.init_args.unlabelled_videos (paths or glob patterns)")

    def on_fit_start(self) -> None:
        # A head that learns from the training keypoints (e.g. anchor poses) sees them once, before the first step;
        # a resumed run has them in its checkpoint already.
        if self.head.needs_fit and not self.head.is_fitted():
            keypoints, visibility = self.trainer.datamodule.training_keypoints()
            self.head.fit(torch.as_tensor(keypoints, dtype=torch.float32, device=self.device),
                          torch.as_tensor(visibility, device=self.device))
        if self.unsupervised is not None and self.unsupervised.needs_fit:
            self.unsupervised.fit(*self.trainer.datamodule.labelled_poses())

    def on_train_start(self) -> None:
        # The schedule's length is only known once the training loader exists. It is read here rather than in
        # configure_optimizers, because asking for it there makes Lightning build the loaders before a resumed
        # run's checkpoint (with the loaders' mid-epoch positions, kpreg.data.samplers) is restored.
        for config in self.trainer.lr_scheduler_configs:
            if isinstance(config.scheduler, WarmupCosine) and config.scheduler.max_steps is None:
                config.scheduler.max_steps = int(self.trainer.estimated_stepping_batches)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Whether the checkpoint is this model is checked before training resumes (kpreg.cli.commands); here the
        # tensors must fit. Called before Lightning loads the weights, so the upgrade of an older layout applies.
        upgrade_checkpoint(checkpoint)
        check_state_dict_compatible(self, checkpoint["state_dict"])
        self.load_calibration(checkpoint)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # What a checkpoint needs to be used without its config (plain data: loadable with weights_only=True),
        # with the calibration of the last validation (fitted on these weights' predictions for best.ckpt). The
        # resolved config is added by the CLI's config callback.
        checkpoint.setdefault("kpreg", {}).update(self.describe())
        checkpoint["kpreg"]["calibration"] = self.calibration.state()
        if self.unsupervised is not None:
            checkpoint["kpreg"]["unsupervised"] = self.unsupervised.state()

    def describe(self) -> dict[str, Any]:
        """The model's identity in plain data: head, backbone, keypoints, input size, how the network runs."""
        return {
            "format": CHECKPOINT_FORMAT,
            "head": {"class_path": f"{type(self.head).__module__}.{type(self.head).__qualname__}",
                     "init_args": dict(getattr(self.head, "init_args", {}))},
            "backbone": self.backbone.name,
            "num_keypoints": self.num_keypoints,
            "keypoint_names": list(self.keypoint_names),
            "skeleton": [list(e) for e in self.skeleton],
            "flip_pairs": [list(p) for p in self.flip_pairs],
            "sigmas": list(self.sigmas),
            "input_size": list(self.input_size),
            "network": {"feature_index": self.feature_index, "backbone_kwargs": self.backbone_kwargs,
                        "flip_test": self.flip_test, "channels_last": self.channels_last},
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

    # ---- training ------------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        # With unlabelled video the loader combines a labelled batch and N clips of T frames (kpreg.data.unlabelled);
        # both go through the network as one batch.
        labelled, clips = (batch["labelled"], batch["unlabelled"]) if "labelled" in batch else (batch, None)
        images = labelled["image"]  # (B, 3, H, W)
        b = images.shape[0]
        if clips is not None and self.unsupervised is not None:
            images = torch.cat((images, clips["images"].flatten(0, 1)))  # (B + N·T, 3, H, W)
        raw = self.network.raw(images)
        losses = self.compute_loss(raw[:b], labelled["keypoints"], labelled["visibility"], labelled.get("scale"))
        if len(raw) > b:
            keypoints = self.unsupervised.video_keypoints(self.head, raw[b:], clips)  # (N, T, K, 2) video px
            extra = self.unsupervised(keypoints)
            losses["supervised"] = losses["loss"].detach()
            losses["loss"] = losses["loss"] + extra.pop("loss")
            losses.update({k: v.detach() for k, v in extra.items()})
        loss = losses["loss"]
        if self._any_rank(not bool(torch.isfinite(loss.detach()).all())):
            return self._nonfinite(loss, batch_idx)
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, prog_bar=False, batch_size=b)
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

    # ---- evaluation ----------------------------------------------------------------------------------
    def _evaluate_batch(self, batch: dict[str, Any], prefix: str) -> None:
        """The batch's loss (logged) and its rows of the evaluation table."""
        out = self.network.run(batch["image"])
        meta = batch["meta"]
        # Distributed evaluation pads shards to equal length (kpreg.data.samplers): pads stay in the table's rows
        # (flagged, dropped after the gather) but never count in the loss.
        keep = ~meta["padding"].bool().to(self.device) if "padding" in meta else None
        rows = slice(None) if keep is None else keep
        if keep is None or bool(keep.any()):
            losses = self.compute_loss(out.raw[rows], batch["keypoints"][rows], batch["visibility"][rows],
                                       batch["scale"][rows] if "scale" in batch else None)
            self.log(f"{prefix}/loss", losses["loss"], on_epoch=True, batch_size=int(out.raw[rows].shape[0]),
                     sync_dist=True)
        coords_orig = apply_affine(out.coords.double(), meta["affine_inv"])  # (B, K, 2) original px
        self._rows[prefix].add(coords_orig, out.raw_confidence, out.spread, meta)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate_batch(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate_batch(batch, "test")

    def on_validation_epoch_start(self) -> None:
        self._rows["val"].clear()

    def on_test_epoch_start(self) -> None:
        self._rows["test"].clear()

    def on_validation_epoch_end(self) -> None:
        sanity = self._trainer is not None and self.trainer.sanity_checking  # a sanity check never fits
        self._finish_epoch("val", fit=not sanity, split="validation")

    def on_test_epoch_end(self) -> None:
        self._finish_epoch("test", fit=False, split="evaluated")

    def _finish_epoch(self, prefix: str, fit: bool, split: str) -> None:
        rows = self._rows[prefix]
        if len(rows) == 0 or self.evaluator is None:
            rows.clear()
            return
        table = gather_table(rows)
        rows.clear()
        result = self.evaluate_table(table, fit=fit, split=split)
        self.results[prefix] = result
        values = {**result.metrics, **result.uncertainty, **result.calibration.finite_scores()}
        self.log_dict({f"{prefix}/{k}": v for k, v in values.items()}, sync_dist=False)
        # val/score: the primary key, whatever its direction (the checkpoint callback's mode follows it).
        self.log(f"{prefix}/score", result.metrics[self.evaluator.metrics.primary], prog_bar=True)

    def evaluate_table(self, table: EvaluationTable, fit: bool, split: str) -> EvaluationResult:
        """Calibrate (fitting a new map when ``fit``) and score an evaluation table with the dataset's metrics."""
        if self.evaluator is None:
            raise RuntimeError("evaluation without a datamodule: the dataset's metrics are built in setup()")
        stored = self.calibration.record
        result = self.evaluator.evaluate(table, self.calibration, fit=fit, flip_test=self.flip_test, split=split)
        outcome = result.calibration
        if fit and self.calibration.enabled and outcome.mode != "fitted":
            rank_zero_warn(f"{split}: {outcome.note}")
        if outcome.mode == "fitted":
            self._use_calibration()
        elif outcome.mode == "applied" and stored is not None and stored.flip_test != self.flip_test:
            kinds = {True: "flip-tested", False: "single-pass"}
            rank_zero_warn(f"the calibration was fitted on {kinds[stored.flip_test]} confidences and is "
                           f"applied to {kinds[self.flip_test]} ones")
        return result

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
