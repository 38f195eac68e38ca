"""Build a DeepLabCut 3 project (PyTorch engine) from a labelled DeepLabCut project, with kpreg's split and model.

Runs in the peer virtualenv (``setup.sh``), never in kpreg's::

    $DLC_VENV/bin/python benchmarks/peers/deeplabcut/make_project.py SOURCE OUT [--val-every 5] [--epochs 120]

SOURCE is a single-animal DeepLabCut project (``config.yaml``, ``labeled-data/<video>/CollectedData_<scorer>.csv``
and ``.h5`` with the frames, ``videos/``); OUT is created (it must not exist) as a copy with DeepLabCut's paths set,
one shuffle (1) whose train / test frames are kpreg's ``val_every`` split, and a ``pytorch_config.yaml`` edited to
the model closest to kpreg's openfield protocol (``configs/protocols/from_scratch_cpu.yaml``):

* split: frame 0, n, 2n … of each video folder, in table order, is held out (``kpreg.data.splits``); the held-out
  frames are written to ``OUT/heldout_frames.txt`` (one project-relative path a line);
* model: DeepLabCut's single-animal ResNet (``net_type: resnet_50``: backbone + heatmap / location-refinement
  head) with the backbone switched to timm's ``resnet18`` (512 output channels; the heads' input channels follow);
* weights: no ImageNet weights. DeepLabCut 3.0 loads timm's pretrained backbone whenever training starts with no
  ``weight_init`` and no snapshot (``apis/training.py``: ``pretrained = True``), which downloads; so a randomly
  initialised model (the same constructor, ``pretrained_backbone=False``, seed 0) is saved as
  ``random_init.pt`` and named as ``train_settings.weight_init`` (backbone only, ``with_decoder: false``:
  the heads keep DeepLabCut's own initialisation);
* training: ``train_settings.epochs`` and ``batch_size`` as kpreg (120, 8); training crops of 128 × 128 input
  pixels (``data.train.crop_sampling``, at the frames' own scale); everything else DeepLabCut's default.

The settings applied are printed and written to ``OUT/peer_settings.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path, PurePosixPath

import deeplabcut
import pandas as pd
import torch
from deeplabcut.core.engine import Engine
from deeplabcut.core.weight_init import WeightInitialization
from deeplabcut.generate_training_dataset.trainingsetmanipulation import merge_annotateddatasets
from deeplabcut.pose_estimation_pytorch.models.model import PoseModel
from deeplabcut.utils import auxiliaryfunctions

SHUFFLE = 1


def fail(message: str) -> None:
    print(f"make_project: {message}", file=sys.stderr)
    sys.exit(2)


def label_tables(project: Path) -> list[Path]:
    """The label tables in kpreg's order: ``labeled-data/*/CollectedData_*.csv`` sorted, ``.h5`` where no CSV."""
    found = sorted(project.glob("labeled-data/*/CollectedData_*.csv"))
    have_csv = {p.with_suffix("") for p in found}
    found += [p for p in project.glob("labeled-data/*/CollectedData_*.h5") if p.with_suffix("") not in have_csv]
    return sorted(found)


def read_table(path: Path) -> pd.DataFrame:
    """One CollectedData table: rows = frames (index: the frame path), columns (scorer, bodyparts, coords)."""
    if path.suffix == ".csv":
        return pd.read_csv(path, header=[0, 1, 2], index_col=0)
    frame = pd.read_hdf(path)
    if isinstance(frame.index, pd.MultiIndex):
        frame.index = ["/".join(str(p) for p in key) for key in frame.index]
    return frame


def normalise(path: str) -> str:
    return str(PurePosixPath(str(path).strip().replace("\\", "/")))


def kpreg_frames(project: Path) -> list[str]:
    """Every labelled frame (a row with at least one keypoint), in kpreg's table order."""
    frames: list[str] = []
    for table in label_tables(project):
        data = read_table(table)
        labelled = data.notna().any(axis=1)
        frames += [normalise(f) for f, keep in zip(data.index, labelled) if keep]
    return frames


def val_every_split(frames: list[str], every: int) -> tuple[list[str], list[str]]:
    """kpreg's ``val_every`` rule: frame 0, n, 2n … of each folder (in table order) to validation."""
    position: dict[str, int] = {}
    train, val = [], []
    for f in frames:
        folder = str(PurePosixPath(f).parent)
        k = position.get(folder, 0)
        position[folder] = k + 1
        (val if k % every == 0 else train).append(f)
    return train, val


def copy_project(source: Path, out: Path, video_stems: list[str]) -> Path:
    """Copy the labelled frames, videos and config.yaml; point DeepLabCut's paths at the copy."""
    out.mkdir(parents=True)
    shutil.copytree(source / "labeled-data", out / "labeled-data")
    if (source / "videos").is_dir():
        shutil.copytree(source / "videos", out / "videos")
    config_path = out / "config.yaml"
    shutil.copyfile(source / "config.yaml", config_path)
    for path in [out, *out.rglob("*")]:  # a read-only source (a shared data folder) gives a read-only copy
        path.chmod(path.stat().st_mode | 0o200)
    cfg = auxiliaryfunctions.read_config(config_path)
    cfg["project_path"] = str(out)
    # DeepLabCut finds labeled-data/<stem> through video_sets; a labelled video need not be on disk (the openfield
    # frames come from m4s1.mp4, which the example does not ship; DeepLabCut's own demo loader does the same).
    cfg["video_sets"] = {str(out / "videos" / f"{stem}.mp4"): {"crop": "0, 640, 0, 480"} for stem in video_stems}
    cfg["engine"] = "pytorch"
    auxiliaryfunctions.write_config(config_path, cfg)
    return config_path


def dlc_indices(cfg: dict, train: list[str], val: list[str]) -> tuple[list[int], list[int]]:
    """Positions of the frames in DeepLabCut's merged label table (the rows create_training_dataset indexes)."""
    folder = Path(cfg["project_path"]) / auxiliaryfunctions.get_training_set_folder(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    data = merge_annotateddatasets(cfg, folder)
    if data is None:
        fail(f"DeepLabCut found no labelled data under {cfg['project_path']}/labeled-data")
    names = ["/".join(str(p) for p in key) if isinstance(key, tuple) else normalise(key) for key in data.index]
    where = {n: i for i, n in enumerate(names)}
    missing = [f for f in train + val if f not in where]
    if missing:
        fail(f"{len(missing)} frame(s) are not in DeepLabCut's merged table, e.g. {missing[0]!r}")
    return [where[f] for f in train], [where[f] for f in val]


def edit_pose_config(path: Path, model_name: str, channels: int, epochs: int, batch_size: int, crop: int,
                     init_path: Path) -> dict:
    """Apply the peer settings to pytorch_config.yaml; returns the dotted keys set and their values."""
    cfg = auxiliaryfunctions.read_plainconfig(path)
    settings: dict[str, object] = {
        "model.backbone.model_name": model_name,
        "model.backbone_output_channels": channels,
        "train_settings.epochs": epochs,
        "train_settings.batch_size": batch_size,
        "data.train.crop_sampling.width": crop,
        "data.train.crop_sampling.height": crop,
    }
    for key, value in settings.items():
        node = cfg
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    for head in cfg["model"]["heads"].values():  # the heads read the backbone's channels (filled in at creation)
        for part in ("heatmap_config", "locref_config"):
            if part in head:
                head[part]["channels"][0] = channels
                settings[f"model.heads.bodypart.{part}.channels"] = list(head[part]["channels"])

    torch.manual_seed(0)
    model = PoseModel.build(cfg["model"], pretrained_backbone=False)  # cfg["model"]["backbone"]["pretrained"]: set
    torch.save({"model": model.state_dict()}, init_path)
    weight_init = WeightInitialization(snapshot_path=init_path, with_decoder=False).to_dict(normalize=True)
    cfg["train_settings"]["weight_init"] = weight_init
    settings["train_settings.weight_init"] = weight_init
    cfg["model"]["backbone"]["pretrained"] = False  # informative only: PoseModel.build overwrites it
    auxiliaryfunctions.write_plainconfig(path, cfg)
    return settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="a labelled single-animal DeepLabCut project")
    parser.add_argument("out", type=Path, help="the project to create (must not exist)")
    parser.add_argument("--val-every", type=int, default=5, help="kpreg's val_every (configs/data/deeplabcut.yaml)")
    parser.add_argument("--net-type", default="resnet_50", help="DeepLabCut's net_type (the model template)")
    parser.add_argument("--backbone", default="resnet18", help="timm model_name of the ResNet backbone")
    parser.add_argument("--backbone-channels", type=int, default=512, help="its output channels")
    parser.add_argument("--epochs", type=int, default=120)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop", type=int, default=128, help="training crop side, input pixels")
    args = parser.parse_args()

    source, out = args.source.resolve(), args.out.resolve()
    if not (source / "config.yaml").is_file():
        fail(f"{source}: no config.yaml (a DeepLabCut project folder is expected)")
    if out.exists():
        fail(f"{out} exists; give a new folder")
    if args.val_every < 2:
        fail(f"--val-every must be at least 2, got {args.val_every}")
    frames = kpreg_frames(source)
    if not frames:
        fail(f"{source}: no labelled frames under labeled-data/*/CollectedData_*.csv")
    train, val = val_every_split(frames, args.val_every)
    stems = sorted({PurePosixPath(f).parent.name for f in frames})

    config_path = copy_project(source, out, stems)
    (out / "heldout_frames.txt").write_text("\n".join(val) + "\n")
    cfg = auxiliaryfunctions.read_config(config_path)
    train_idx, test_idx = dlc_indices(cfg, train, val)
    fraction = round(len(train) / len(frames), 2)  # how create_training_dataset names the split
    cfg["TrainingFraction"] = [fraction]
    auxiliaryfunctions.write_config(config_path, cfg)

    deeplabcut.create_training_dataset(
        str(config_path), Shuffles=[SHUFFLE], trainIndices=[train_idx], testIndices=[test_idx],
        net_type=args.net_type, engine=Engine.PYTORCH, userfeedback=False,
    )
    pose_config = Path(deeplabcut.return_train_network_path(str(config_path), shuffle=SHUFFLE,
                                                            trainingsetindex=0, engine=Engine.PYTORCH)[0])
    settings = edit_pose_config(pose_config, args.backbone, args.backbone_channels, args.epochs,
                                args.batch_size, args.crop, pose_config.parent / "random_init.pt")
    summary = {
        "deeplabcut": deeplabcut.__version__,
        "config": str(config_path),
        "pytorch_config": str(pose_config),
        "net_type": args.net_type,
        "shuffle": SHUFFLE,
        "TrainingFraction": fraction,
        "frames": len(frames),
        "train": len(train),
        "heldout": len(val),
        "heldout_rule": f"frames 0, {args.val_every}, {2 * args.val_every} … of each folder, table order",
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in settings.items()},
    }
    (out / "peer_settings.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
    main()
