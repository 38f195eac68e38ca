"""RunLogging's parts that need no training: the flat config dashboards group by, the bounded logging interval and
the one line on the model."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from torch import nn

from kpreg.training.run_logging import RunLogging, flat_run_config, model_line, plain


def test_flat_run_config() -> None:
    config = {
        "seed_everything": 3,
        "trainer": {"max_epochs": 4},
        "model": {"backbone": "resnet18", "feature_index": 2,
                  "head": {"class_path": "kpreg.heads.HeatmapHead", "init_args": {"output_stride": 8, "sigma": 2.0}},
                  "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.006}}},
        "data": {"class_path": "kpreg.data.mpii.MPIIDataModule", "init_args": {"batch_size": 32}},
    }
    assert flat_run_config(config) == {
        "backbone": "resnet18", "feature_index": 2, "head": "HeatmapHead", "output_stride": 8,
        "dataset": "MPIIDataModule", "seed": 3, "budget": None, "batch_size": 32, "max_epochs": 4, "optimizer": "AdamW",
        "lr": 0.006, "head.output_stride": 8, "head.sigma": 2.0, "data.batch_size": 32,
    }
    config["data"]["init_args"]["train_budget"] = "25%"  # a label budget is a column to group by
    assert flat_run_config(config)["budget"] == "25%"
    fc = flat_run_config({"model": {"head": {"class_path": "kpreg.heads.FCHead"}}})
    assert fc["head"] == "FCHead" and fc["output_stride"] is None and fc["dataset"] is None and fc["optimizer"] is None
    assert plain({"a": (1, None), 2: {"b": SimpleNamespace}}) == {"a": [1, None], "2": {"b": str(SimpleNamespace)}}


def _trainer(batches: int, log_every_n_steps: int, limit: int | float = 1.0, accumulate: int = 1) -> SimpleNamespace:
    datamodule = SimpleNamespace(train_dataloader=lambda: list(range(batches)))
    return SimpleNamespace(datamodule=datamodule, limit_train_batches=limit, accumulate_grad_batches=accumulate,
                           log_every_n_steps=log_every_n_steps, is_global_zero=False)


@pytest.mark.parametrize(("batches", "every", "limit", "accumulate", "expected"), [
    (4, 25, 1.0, 1, 4),     # a short epoch: every epoch logs
    (100, 25, 1.0, 1, 25),  # a long one keeps the configured interval
    (100, 25, 10, 1, 10),   # limit_train_batches as a count
    (100, 25, 0.1, 1, 10),  # ... and as a fraction
    (12, 25, 1.0, 4, 3),    # steps, not batches, with gradient accumulation
    (1, 25, 1.0, 4, 1),
])
def test_the_logging_interval_is_bounded_by_the_epoch(batches: int, every: int, limit: int | float, accumulate: int,
                                                      expected: int) -> None:
    trainer = _trainer(batches, every, limit, accumulate)
    RunLogging().on_fit_start(trainer, None)  # type: ignore[arg-type]
    assert trainer.log_every_n_steps == expected


def test_one_line_on_the_model() -> None:
    module = SimpleNamespace(backbone=nn.Linear(2, 3), head=nn.Linear(3, 1), input_size=(64, 48))  # 9 + 4 parameters
    assert model_line(module, None) == "model: 13 parameters (backbone 9, head 4)"  # type: ignore[arg-type]
    module.backbone = nn.Linear(1000, 815)  # 815 815 parameters
    assert model_line(module, 2.57e7) == (  # type: ignore[arg-type]
        "model: 816 K parameters (backbone 816 K, head 4), 25.7 MFLOPs per 64×48 image")
