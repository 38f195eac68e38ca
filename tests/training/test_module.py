from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch

from kpreg.data.synthetic_datamodule import SyntheticPoseDataModule
from kpreg.heads import HeatmapHead
from kpreg.training.checkpoint import (
    CheckpointMismatchError,
    check_state_dict_compatible,
    identity_differences,
)
from kpreg.training.module import KeypointModule
from kpreg.training.schedules import WarmupCosine


def _module(**kwargs) -> KeypointModule:
    args = dict(backbone="test_resnet", num_keypoints=16, input_size=(32, 32), flip_pairs=[(0, 5)])
    return KeypointModule(HeatmapHead(output_stride=4, neck_channels=8), **{**args, **kwargs})


def test_bf16_mixed_training_steps() -> None:
    dm = SyntheticPoseDataModule(image_size=32, num_train=8, num_val=4, batch_size=4, num_workers=0)
    trainer = pl.Trainer(
        accelerator="cpu", precision="bf16-mixed", max_steps=2, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=1, num_sanity_val_steps=0,
    )
    model = _module()
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 2
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert trainer.callback_metrics["val/score"] >= 0


def test_keypoint_count_mismatch_between_data_and_model() -> None:
    model = _module(num_keypoints=17)
    model.trainer = SimpleNamespace(datamodule=SyntheticPoseDataModule(image_size=32))  # type: ignore[assignment]
    with pytest.raises(CheckpointMismatchError, match="data has 16 keypoints but the model was built for 17"):
        model.setup("fit")


def test_state_dict_check_names_mismatched_tensors() -> None:
    state = _module(num_keypoints=17).state_dict()
    with pytest.raises(CheckpointMismatchError, match=r"head\.final\.weight': checkpoint \(17, 8, 1, 1\) vs model \(16, 8, 1, 1\)"):
        check_state_dict_compatible(_module(), state)


def test_an_argument_a_head_gained_later_is_its_default_in_an_older_checkpoint() -> None:
    """A checkpoint written before DSNTHead had ``loss`` ran with its default: no mismatch; another value is one."""
    dsnt = "kpreg.heads.dsnt.DSNTHead"
    old = {"head": {"class_path": dsnt, "init_args": {"output_stride": 4}}}
    now = {"head": {"class_path": dsnt, "init_args": {"output_stride": 4, "loss": "euclidean"}}}
    assert identity_differences(old, now) == [] and identity_differences(now, old) == []
    other = {"head": {"class_path": dsnt, "init_args": {"output_stride": 4, "loss": "oks"}}}
    assert identity_differences(old, other) == ["head arguments: checkpoint vs config: loss='euclidean' vs 'oks'"]
    assert identity_differences(other, now) == ["head arguments: checkpoint vs config: loss='oks' vs 'euclidean'"]


def test_warmup_cosine_schedule() -> None:
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = WarmupCosine(opt, warmup_steps=10, max_steps=110, warmup_start_factor=0.0)
    assert sched.factor(0) == 0.0
    assert sched.factor(5) == pytest.approx(0.5)
    assert sched.factor(10) == pytest.approx(1.0)
    assert sched.factor(60) == pytest.approx(0.5)
    assert sched.factor(110) == pytest.approx(0.0, abs=1e-12)


def test_a_format_1_checkpoint_reads_into_the_current_layout(tmp_path) -> None:
    """Format 1 named the tensors backbone.* / head.* and kept the network's settings only in the config."""
    from kpreg.training.checkpoint import CHECKPOINT_FORMAT, read_checkpoint

    module = KeypointModule(HeatmapHead(neck_channels=8), backbone="test_resnet", input_size=(32, 32))
    state = {k.removeprefix("network."): v for k, v in module.state_dict().items()}
    record = {**module.describe(), "format": 1, "config": {"model": {"flip_test": False, "feature_index": 2}}}
    del record["network"]
    torch.save({"state_dict": state, "kpreg": record}, tmp_path / "old.ckpt")
    checkpoint = read_checkpoint(tmp_path / "old.ckpt")
    assert checkpoint["kpreg"]["format"] == CHECKPOINT_FORMAT
    assert checkpoint["kpreg"]["network"] == {"feature_index": 2, "backbone_kwargs": {}, "flip_test": False,
                                              "channels_last": False}
    assert set(checkpoint["state_dict"]) == set(module.state_dict())
    module.load_state_dict(checkpoint["state_dict"])
