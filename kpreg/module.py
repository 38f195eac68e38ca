"""KeypointModule: backbone → head, trained and evaluated head- and dataset-agnostically.

The module only orchestrates: it builds the backbone, builds the head from what the backbone and the data
declare, asks the head for its loss and its decoded coordinates, maps them back to original pixels and
feeds the datamodule's metric. Which head or dataset runs is never tested here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable

from kpreg.backbone import Backbone
from kpreg.coords import apply_affine
from kpreg.heads.base import Head, HeadSpec
from kpreg.schedules import WarmupCosine


class CheckpointMismatchError(ValueError):
    """A checkpoint whose tensors do not fit this model (another head, keypoint count or backbone)."""


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
        ``kpreg.schedules.WarmupCosine``.
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
    ) -> None:
        super().__init__()
        self.backbone = Backbone(backbone, pretrained, pretrained_file, feature_index, backbone_kwargs)
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
        self._test_predictions: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    # ---- forward / predict ---------------------------------------------------------------------------
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) → the head's raw output."""
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

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        check_state_dict_compatible(self, checkpoint["state_dict"])

    # ---- steps ---------------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        raw = self(batch["image"])
        losses = self.head.loss(raw, batch["keypoints"], batch["visibility"])
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, prog_bar=False, batch_size=len(raw))
        return losses["loss"]

    def _evaluate_batch(self, batch: dict[str, Any], metric: Any, prefix: str) -> tuple[torch.Tensor, ...]:
        raw, coords, scores = self.predict_coords(batch["image"])
        losses = self.head.loss(raw, batch["keypoints"], batch["visibility"])
        self.log(f"{prefix}/loss", losses["loss"], on_epoch=True, batch_size=len(raw), sync_dist=True)
        coords_orig = apply_affine(coords.double(), batch["meta"]["affine_inv"])  # (B, K, 2) original px
        metric.update(coords_orig, scores.double(), batch["meta"])
        return coords_orig, scores

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate_batch(batch, self.val_metric, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        coords_orig, scores = self._evaluate_batch(batch, self.test_metric, "test")
        self._test_predictions.append((batch["meta"]["index"].cpu(), coords_orig.cpu(), scores.float().cpu()))

    def _log_metric(self, metric: Any, prefix: str) -> dict[str, float]:
        values = {k: float(v) for k, v in metric.compute().items()}
        metric.reset()
        self.log_dict({f"{prefix}/{k}": v for k, v in values.items()}, sync_dist=False)
        self.log(f"{prefix}/score", values[self.primary_metric], prog_bar=True)
        return values

    def on_validation_epoch_end(self) -> None:
        self._log_metric(self.val_metric, "val")

    def on_test_epoch_start(self) -> None:
        self._test_predictions = []

    def on_test_epoch_end(self) -> None:
        self.test_results = self._log_metric(self.test_metric, "test")

    def test_predictions(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(indices (N,), coords (N, K, 2) original pixels, scores (N, K)) of the last test run, sorted."""
        indices = torch.cat([p[0] for p in self._test_predictions])
        order = torch.argsort(indices)
        coords = torch.cat([p[1] for p in self._test_predictions])[order]
        scores = torch.cat([p[2] for p in self._test_predictions])[order]
        return indices[order], coords, scores

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
