"""Every shipped config part composes: every data part (with its protocol part, where it has one) × every head part
trains a step and validates (``fast_dev_run``) on fixtures the tests generate. Adding a head part or a data part
adds its row here; a data part needs a fixture below.

The backbone is timm's tiny ``test_resnet`` without weights and the input small; everything else is the shipped
config.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from testkit.coco import make_coco_fixture
from testkit.dlc import make_dlc_project
from testkit.mpii import make_mpii_root

from kpreg.cli.lightning import make_cli

pytestmark = pytest.mark.slow  # runs the entry points as a user would (subprocesses, training)

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
DATA_PARTS = sorted((CONFIGS / "data").glob("*.yaml"))
HEAD_PARTS = sorted((CONFIGS / "heads").glob("*.yaml"))
# The protocol part each data part is documented with (none: the data part carries its protocol).
PROTOCOLS = {"mpii": "simplebaseline_mpii", "coco": "simplebaseline_coco", "animal_coco": "finetune_resnet50",
             "deeplabcut": "from_scratch_cpu"}
ANIMAL = ("nose", "left_ear", "right_ear", "left_front_paw", "right_front_paw", "tail_base")


def _synthetic(tmp: Path) -> list[str]:
    return ["--data.init_args.image_size", "32", "--data.init_args.num_train", "8", "--data.init_args.num_val", "4"]


def _mpii(tmp: Path) -> list[str]:
    root = make_mpii_root(tmp / "mpii", num_train=2, num_valid=2).root
    return ["--data.init_args.root", str(root), "--data.init_args.input_size", "[64, 64]"]


def _coco(tmp: Path) -> list[str]:
    fx = make_coco_fixture(tmp / "coco")
    return ["--data.init_args.train_ann", str(fx.train_ann), "--data.init_args.val_ann", str(fx.val_ann),
            "--data.init_args.train_images", str(fx.images), "--data.init_args.val_images", str(fx.images),
            "--data.init_args.bbox_file", str(fx.bbox_file), "--data.init_args.input_size", "[64, 48]"]


def _animal(tmp: Path) -> list[str]:
    fx = make_coco_fixture(tmp / "animal", ANIMAL, category_name="dog", category_id=3)
    return ["--data.init_args.train_ann", str(fx.train_ann), "--data.init_args.val_ann", str(fx.val_ann),
            "--data.init_args.train_images", str(fx.images), "--data.init_args.input_size", "[64, 64]"]


def _deeplabcut(tmp: Path) -> list[str]:
    project = make_dlc_project(tmp / "my_project", frames=5)  # two videos × 5 frames, every 5th to validation
    return ["--data.init_args.project", str(project.root), "--data.init_args.input_size", "[64, 64]"]


FIXTURES: dict[str, Callable[[Path], list[str]]] = {
    "synthetic": _synthetic, "mpii": _mpii, "coco": _coco, "animal_coco": _animal, "deeplabcut": _deeplabcut,
}


def test_every_data_part_has_a_fixture_and_every_protocol_part_is_used() -> None:
    assert {p.stem for p in DATA_PARTS} == set(FIXTURES), "a new data part needs a fixture in this test"
    assert {p.stem for p in (CONFIGS / "protocols").glob("*.yaml")} == set(PROTOCOLS.values())


def _cli(data: Path, head: Path | None, tmp: Path, *extra: str):  # noqa: ANN202 - KpregCLI
    parts = ["--config", str(data)]
    if data.stem in PROTOCOLS:
        parts += ["--config", str(CONFIGS / "protocols" / f"{PROTOCOLS[data.stem]}.yaml")]
    if head is not None:
        parts += ["--config", str(head)]
    return make_cli([
        *parts, *FIXTURES[data.stem](tmp),
        "--model.backbone", "test_resnet", "--model.pretrained", "false",
        "--data.init_args.batch_size", "2", "--data.init_args.num_workers", "0",
        "--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.strategy", "auto",
        "--trainer.fast_dev_run", "true", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(tmp / "run"), *extra,
    ], evaluate=False)


@pytest.mark.parametrize("head", HEAD_PARTS, ids=[p.stem for p in HEAD_PARTS])
@pytest.mark.parametrize("data", DATA_PARTS, ids=[p.stem for p in DATA_PARTS])
def test_data_part_x_head_part_trains_and_validates(data: Path, head: Path, tmp_path: Path) -> None:
    cli = _cli(data, head, tmp_path)
    assert cli.model.head.name == head.stem  # the head part chose the head
    assert cli.model.num_keypoints == cli.datamodule.num_keypoints  # linked from the data
    assert cli.model.keypoint_names == cli.datamodule.keypoint_names
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert torch.isfinite(cli.trainer.callback_metrics["train/loss"])
    assert "val/score" in cli.trainer.callback_metrics


def test_protocol_parts_set_the_published_protocols(tmp_path: Path) -> None:
    mpii = _cli(CONFIGS / "data" / "mpii.yaml", CONFIGS / "heads" / "heatmap.yaml", tmp_path / "m")
    assert mpii.config.model.optimizer.class_path == "torch.optim.Adam"
    assert mpii.config.model.lr_scheduler.init_args.milestones == [90, 120]
    assert mpii.config.trainer.max_epochs == 140 and mpii.model.flip_test
    coco = _cli(CONFIGS / "data" / "coco.yaml", CONFIGS / "heads" / "simcc.yaml", tmp_path / "c")
    assert coco.config.model.lr_scheduler.init_args.milestones == [170, 200]
    assert coco.config.model.head.init_args.sigma == 6.0  # the head part's own argument, untouched by the others


def test_run_directory_and_checkpoint_mode_follow_the_parts(tmp_path: Path) -> None:
    args = [
        "--config", str(CONFIGS / "data" / "synthetic.yaml"), "--config", str(CONFIGS / "heads" / "dsnt.yaml"),
        "--model.backbone", "test_resnet", "--trainer.logger", "false",
        "--model.head.init_args.output_stride", "8",
    ]
    cli = make_cli(args, evaluate=False)
    assert cli.config.trainer.default_root_dir == str(Path("runs") / "synthetic" / "dsnt-s8")
    assert cli.config.checkpoint.mode == "max"  # PCKh: higher is better
    by_error = make_cli([*args, "--data.init_args.primary_metric", "MeanError"], evaluate=False)
    assert by_error.config.checkpoint.mode == "min"  # pixel error: lower is better
    with pytest.raises(ValueError, match="unknown metric key 'Meen'"):
        make_cli([*args, "--data.init_args.primary_metric", "Meen"], evaluate=False)


# The regression options (OKS loss, FreeAnchor, OHKM …), through the real batch (its ``scale``) and the linked OKS sigmas, on the synthetic part.
OPTIONS = {
    "fc-oks": ("fc", ["--model.head.init_args.loss", "oks"]),
    "softargmax-oks": ("softargmax", ["--model.head.init_args.loss", "oks"]),
    "dsnt-oks": ("dsnt", ["--model.head.init_args.loss", "oks"]),
    "rle-oks-mean": ("rle", ["--model.head.init_args.mean_loss", "oks"]),
    "offset-free-anchor": ("offset", ["--model.head.init_args.assignment", "free_anchor"]),
    "heatmap-ohkm": ("heatmap", ["--model.ohkm_topk", "8"]),
}


@pytest.mark.parametrize("option", list(OPTIONS))
def test_regression_options_train_and_validate(option: str, tmp_path: Path) -> None:
    head, extra = OPTIONS[option]
    cli = _cli(CONFIGS / "data" / "synthetic.yaml", CONFIGS / "heads" / f"{head}.yaml", tmp_path, *extra)
    assert len(cli.model.head.spec.sigmas) == cli.datamodule.num_keypoints  # linked from the data
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    metrics = cli.trainer.callback_metrics
    assert torch.isfinite(metrics["train/loss"]) and "val/score" in metrics
    if "oks" in option:
        assert 0.0 <= float(metrics["train/oks"]) < 1.0  # the OKS term is what was optimised, and was logged
    if "ohkm" in option:
        assert cli.model.ohkm_topk == 8
