"""Every configs/mpii/*.yaml parses and instantiates (model + datamodule) on a tiny fixture root.

The ResNet-50 is swapped for timm's ``test_resnet`` without weights; everything else is the shipped
config. A config whose head class does not exist yet is skipped, naming the class (nothing else is).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import torch
import yaml

from kpreg.cli import _make_cli
from kpreg.data.mpii import MPIIDataModule
from tests.mpii_fixture import make_mpii_root

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs" / "mpii").glob("*.yaml"))


def _head_class_missing(config: Path) -> str | None:
    class_path = yaml.safe_load(config.read_text())["model"]["head"]["class_path"]
    module, _, name = class_path.rpartition(".")
    try:
        getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return class_path
    return None


def test_there_are_seven_mpii_configs() -> None:
    assert {c.stem for c in CONFIGS} == {f"{h}_resnet50" for h in ("fc", "heatmap", "softargmax", "dsnt", "offset", "simcc", "multibin")}


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_config_instantiates(config: Path, tmp_path) -> None:
    missing = _head_class_missing(config)
    if missing is not None:
        pytest.skip(f"head class {missing} does not exist yet (written on another branch)")
    root = make_mpii_root(tmp_path / "mpii", num_train=2, num_valid=2).root
    cli = _make_cli(
        [
            "--config", str(config),
            "--model.backbone", "test_resnet",
            "--model.pretrained", "false",
            "--data.init_args.root", str(root),
            "--trainer.logger", "false",
            "--trainer.default_root_dir", str(tmp_path / "run"),
        ],
        evaluate=False,
    )
    assert isinstance(cli.datamodule, MPIIDataModule)
    assert cli.datamodule.input_size == (256, 256) and cli.model.input_size == (256, 256)
    assert cli.model.flip_test and cli.model.num_keypoints == 16
    assert cli.config.model.optimizer.class_path == "torch.optim.Adam"
    assert cli.config.model.lr_scheduler.init_args.milestones == [90, 120]
    assert cli.trainer.max_epochs == 140
    cli.datamodule.setup("test")
    batch = next(iter(cli.datamodule.test_dataloader()))
    cli.model.eval()
    with torch.no_grad():
        _, coords, scores = cli.model.predict_coords(batch["image"])
    assert coords.shape == (2, 16, 2) and scores.shape == (2, 16)
