"""DDP on CPU (gloo, 2 processes): exact distributed evaluation, gathered predictions, module switches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from testkit.faults import final_val_metrics, load_checkpoint, run, train_args

from kpreg.data.samplers import (
    PaddedEvalSampler,
    PaddingFlagDataset,
    ResumableTrainSampler,
    padded_eval_length,
)
from kpreg.heads import HeatmapHead
from kpreg.training.callbacks import TimmSyncBatchNorm
from kpreg.training.module import KeypointModule

DDP = ["--trainer.strategy", "ddp", "--trainer.accelerator", "cpu", "--trainer.devices", "2"]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> Path:
    """One epoch on 2 processes: 48 training samples (6 steps of 4 per rank), 13 validation samples (7 + 6,
    so rank 1 gets one padded duplicate)."""
    run_dir = tmp_path_factory.mktemp("ddp")
    result = run("train.py", *train_args(run_dir, *DDP, "--trainer.max_epochs", "1",
                                         "--trainer.gradient_clip_val", "1.0"))
    assert result.returncode == 0, result.stderr[-4000:]
    return run_dir


def _evaluate(run_dir: Path, out: Path, *extra: str) -> dict[str, float]:
    result = run("evaluate.py", "--config", str(run_dir / "config.yaml"),
                 "--ckpt_path", str(run_dir / "checkpoints" / "last.ckpt"), "--json", str(out / "metrics.json"),
                 "--trainer.enable_progress_bar", "false", *extra)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.slow
def test_ddp_validation_and_evaluation_equal_single_process(ddp_run: Path, tmp_path: Path) -> None:
    assert load_checkpoint(ddp_run / "checkpoints" / "last.ckpt")["global_step"] == 6  # 48 / (4 × 2)
    single = _evaluate(ddp_run, tmp_path / "single")
    ddp = _evaluate(ddp_run, tmp_path / "ddp", *DDP, "--trainer.callbacks+=testkit.collectives.CollectiveCounter",
                    "--trainer.callbacks.out", str(tmp_path / "ddp"))

    # Validation during DDP training (logged as float32) == single-process evaluation of the same weights.
    logged = final_val_metrics(ddp_run)
    for key in ("Mean", "Mean@0.1", "AUC", "Head", "Ankle", "joint/pelvis"):
        assert logged[f"val/{key}"] == np.float32(single[key]), key
    assert logged["val/MeanError"] == pytest.approx(single["MeanError"], rel=1e-6)

    # DDP evaluation == single-process evaluation: counts exactly, the float error sum up to summation order.
    assert ddp.keys() == single.keys()
    for key, value in single.items():
        assert ddp[key] == pytest.approx(value, rel=1e-12, nan_ok=True), key

    # The evaluation table travels once: one all_gather of every process's packed rows, nothing pickled.
    for rank in (0, 1):
        counts = json.loads((tmp_path / "ddp" / f"collectives-rank{rank}.json").read_text())
        assert counts.get("all_gather") == 1 and not counts.get("all_gather_object"), counts
        assert not counts.get("all_gather_into_tensor") and not counts.get("gather_object"), counts

    # Predictions: gathered from both ranks, one row per sample, in dataset order, written once.
    p_single = json.loads((tmp_path / "single" / "predictions.json").read_text())
    p_ddp = json.loads((tmp_path / "ddp" / "predictions.json").read_text())
    assert [p["index"] for p in p_ddp] == list(range(13))
    assert p_ddp == p_single


def test_eval_sampler_covers_every_sample_once() -> None:
    for n, world in [(13, 2), (13, 4), (3, 4), (12, 3)]:
        shards = []
        for rank in range(world):
            flagged = PaddingFlagDataset(list(range(n)), padded_eval_length(n, world))  # type: ignore[arg-type]
            shards.append(list(PaddedEvalSampler(flagged, num_replicas=world, rank=rank)))
        assert len({len(s) for s in shards}) == 1  # same number of batches on every rank
        real = sorted(i for s in shards for i in s if i < n)
        assert real == list(range(n))


def test_train_sampler_shards_and_resumes() -> None:
    data = list(range(10))
    full = [list(ResumableTrainSampler(data, 2, rank, seed=3)) for rank in range(2)]  # type: ignore[arg-type]
    assert sorted(full[0] + full[1]) == sorted(set(full[0] + full[1])) and len(full[0]) == 5
    sampler = ResumableTrainSampler(data, 2, 1, seed=3)  # type: ignore[arg-type]
    sampler.start_at(2)
    assert list(sampler) == full[1][2:]
    assert list(sampler) == full[1]  # the skip is one-shot
    sampler.set_epoch(1)
    assert list(sampler) != full[1]


def _module(**kwargs: object) -> KeypointModule:
    return KeypointModule(HeatmapHead(neck_channels=16), backbone="test_resnet", input_size=(32, 32),
                          **kwargs)  # type: ignore[arg-type]


def test_channels_last_and_compile_keep_checkpoint_keys_and_outputs() -> None:
    torch.manual_seed(0)
    plain = _module(flip_test=False).eval()
    fast = _module(flip_test=False, channels_last=True, compile=True,
                   compile_kwargs={"backend": "eager"}).eval()  # eager: no C++ toolchain needed on CPU
    fast.setup("test")
    assert fast.state_dict().keys() == plain.state_dict().keys()
    fast.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), plain(x), rtol=1e-4, atol=1e-5)


def test_init_backbone_from_loads_backbone_only(tmp_path: Path) -> None:
    source = _module()
    path = tmp_path / "source.ckpt"
    torch.save({"state_dict": source.state_dict()}, path)
    target = KeypointModule(HeatmapHead(neck_channels=8), backbone="test_resnet", input_size=(32, 32),
                            num_keypoints=5, init_backbone_from=str(path))
    for name, tensor in source.backbone.state_dict().items():
        assert torch.equal(target.backbone.state_dict()[name], tensor)
    with pytest.raises(ValueError, match="another backbone"):
        KeypointModule(HeatmapHead(neck_channels=8), backbone="test_convnext", input_size=(32, 32),
                       init_backbone_from=str(path))


def test_timm_sync_batchnorm_keeps_fused_activation() -> None:
    from timm.layers import BatchNormAct2d
    from timm.layers.norm_act import SyncBatchNormAct

    model = torch.nn.Sequential(BatchNormAct2d(4, act_layer=torch.nn.ReLU), torch.nn.BatchNorm2d(4))
    synced = TimmSyncBatchNorm().apply(model)
    assert isinstance(synced[0], SyncBatchNormAct) and isinstance(synced[0].act, torch.nn.ReLU)
    assert isinstance(synced[1], torch.nn.SyncBatchNorm)
    assert synced.state_dict().keys() == model.state_dict().keys()
    reverted = TimmSyncBatchNorm().revert(synced)
    assert isinstance(reverted[0], BatchNormAct2d) and isinstance(reverted[0].act, torch.nn.ReLU)
    x = torch.randn(2, 4, 3, 3)
    assert (reverted.eval()[0](x) >= 0).all()  # the activation survived the round trip


@pytest.mark.slow
def test_throughput_benchmark_cpu_smoke() -> None:
    result = run("benchmarks/throughput.py", "--backbone", "test_resnet", "--size", "32", "--batch", "2",
                 "--steps", "2", "--warmup", "1", "--precision", "fp32", "--compile-backend", "eager")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "images/s" in result.stdout and "HeatmapHead" in result.stdout
