"""End to end on a user's own COCO-format dataset, driven by the shipped parts configs/data/animal_coco.yaml and
configs/heads/heatmap.yaml: train.py → evaluate.py (metrics JSON + results.json) → 'evaluate.py score' gives the same
AP numbers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from testkit.coco import make_coco_fixture

from kpreg.cli import evaluate_main, train_main
from kpreg.metrics.oks import STAT_NAMES

pytestmark = pytest.mark.slow  # runs the entry points as a user would (subprocesses, training)

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
CONFIG = CONFIGS / "data" / "animal_coco.yaml"
HEAD = CONFIGS / "heads" / "heatmap.yaml"
ANIMAL = ("nose", "left_ear", "right_ear", "left_front_paw", "right_front_paw", "tail_base")  # K = 6


def test_custom_dataset_train_evaluate_score(tmp_path: Path) -> None:
    fx = make_coco_fixture(tmp_path / "my_animals", ANIMAL, category_name="dog", category_id=3)
    run = tmp_path / "run"
    train_main([
        "--config", str(CONFIG),
        "--config", str(HEAD),
        "--data.init_args.train_ann", str(fx.train_ann),
        "--data.init_args.val_ann", str(fx.val_ann),
        "--data.init_args.train_images", str(fx.images),
        "--data.init_args.input_size", "[96, 64]",  # H, W: both divisible by the backbone's stride 32
        "--data.init_args.batch_size", "2",
        "--data.init_args.num_workers", "0",
        "--model.backbone", "test_resnet",
        "--model.pretrained", "false",
        "--model.head.init_args.neck_channels", "16",
        "--trainer.max_epochs", "1",
        "--trainer.accelerator", "cpu",
        "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(run),
        "--trainer.logger.class_path", "pytorch_lightning.loggers.CSVLogger",
        "--trainer.logger.init_args.save_dir", str(run),
    ])  # fmt: skip
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["data"]["init_args"]["flip_pairs"] == [[1, 2], [3, 4]]
    ckpt = run / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()

    out = tmp_path / "eval"
    evaluate_main(["--config", str(run / "config.yaml"), "--ckpt_path", str(ckpt), "--json", str(out / "metrics.json")])
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(STAT_NAMES) <= set(metrics) and {"MeanError", "PCK@0.1", "PCK@5px"} <= set(metrics)
    results = json.loads((out / "results.json").read_text())
    assert results and all(r["category_id"] == 3 and len(r["keypoints"]) == 3 * 6 for r in results)  # K = 6

    sigmas = [str(s) for s in yaml.safe_load(CONFIG.read_text())["data"]["init_args"]["sigmas"]]
    evaluate_main(["score", "--dataset", "coco", "--gt", str(fx.val_ann), "--pred", str(out / "results.json"),
                   "--json", str(out / "scored.json"), "--sigmas", *sigmas])
    scored = json.loads((out / "scored.json").read_text())
    assert scored == pytest.approx({k: metrics[k] for k in STAT_NAMES}, abs=1e-12)


def test_shipped_coco_config_runs_on_the_standard_layout(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """configs/data/coco.yaml + configs/protocols/simplebaseline_coco.yaml + a head part, with `root` in the
    cocodataset.org layout and detected boxes."""
    fx = make_coco_fixture(tmp_path / "fixture")
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    (root / "person_detection_results").mkdir()
    shutil.copy(fx.train_ann, root / "annotations" / "person_keypoints_train2017.json")
    shutil.copy(fx.val_ann, root / "annotations" / "person_keypoints_val2017.json")
    dets = root / "person_detection_results" / "COCO_val2017_detections_AP_H_56_person.json"
    shutil.copy(fx.bbox_file, dets)
    for split in ("train2017", "val2017"):
        shutil.copytree(fx.images, root / split)
    train_main([
        "--config", str(CONFIGS / "data" / "coco.yaml"),
        "--config", str(CONFIGS / "protocols" / "simplebaseline_coco.yaml"),
        "--config", str(HEAD),
        "--data.init_args.root", str(root),
        "--data.init_args.bbox_file", str(dets),
        "--data.init_args.batch_size", "2",
        "--data.init_args.num_workers", "0",
        "--model.backbone", "test_resnet",
        "--model.pretrained", "false",
        "--model.head.init_args.neck_channels", "16",
        "--trainer.fast_dev_run", "true",
        "--trainer.accelerator", "cpu",
        "--trainer.devices", "1",
        "--trainer.strategy", "auto",
        "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(tmp_path / "run"),
        "--trainer.logger.class_path", "pytorch_lightning.loggers.CSVLogger",
        "--trainer.logger.init_args.save_dir", str(tmp_path / "run"),
    ])  # fmt: skip
    out = capsys.readouterr().out
    assert "COCO train: 5 samples from 4 images" in out
    assert "COCO val/test (detected boxes): 6 samples from 4 images" in out


def test_flip_test_on_data_without_flip_pairs_or_flip_augmentation_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Frames that are not mirror-symmetric (no left/right pairs, trained without flips): a flip test would average
    a prediction on an image the model never learned. Refused with one message, unless forced."""
    fx = make_coco_fixture(tmp_path / "data", ANIMAL, category_name="dog", category_id=3)
    args = [
        "--config", str(CONFIG), "--config", str(HEAD),
        "--data.init_args.train_ann", str(fx.train_ann), "--data.init_args.val_ann", str(fx.val_ann),
        "--data.init_args.train_images", str(fx.images), "--data.init_args.input_size", "[64, 64]",
        "--data.init_args.flip_pairs", "[]", "--data.init_args.augmentation.flip_prob", "0.0",
        "--data.init_args.num_workers", "0", "--data.init_args.batch_size", "4",
        "--model.backbone", "test_resnet", "--model.pretrained", "false",
        "--trainer.fast_dev_run", "true", "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path / "r"),
    ]
    with pytest.raises(SystemExit) as exit_info:
        train_main([*args, "--model.flip_test", "true"])
    assert exit_info.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "model.flip_test: a flip test on a model without left/right flip pairs that was trained without flip " \
           "augmentation" in err and "model.flip_test: false" in err
    train_main([*args, "--model.flip_test", "false"])  # the same data without a flip test trains
