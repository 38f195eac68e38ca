"""A DeepLabCut project's labelled frames as COCO-format keypoint files, and a CPU config part that trains on them:
how the calibration figures on DeepLabCut's openfield example (docs/calibration.md) were made.

(Until kpreg has a DeepLabCut datamodule, the COCO datamodule reads the converted files; the images stay where
they are.) Frames are split by position: every ``--val-every``-th labelled frame is validation (and test), the rest
training (the rule of ``val_every`` in DeepLabCut projects: frames 0, 5, 10 … of the one folder). A frame's box is
its labelled keypoints' extent (``box_source: keypoints``; padded by 1.25 for the crop) and its OKS area 0.53 × box
area. The config part (``openfield.yaml``) holds the data and a CPU protocol: ResNet-18 from scratch up to layer2
(stride 8), 128 × 128 inputs, AdamW 2e-3 with warm-up + cosine; its data section also evaluates checkpoints
trained on the same split by another datamodule.

    python benchmarks/openfield_to_coco.py --project ../shared/extdata/dlc-openfield --out /work/runs/conf/openfield
    python study.py --config /work/runs/conf/openfield/openfield.yaml --heads heatmap,simcc,... --strides 4 \\
        --seeds 0 --out /work/runs/conf/openfield/study
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere without installing kpreg
from kpreg.data.sample import BOX_AREA_FACTOR  # noqa: E402
from kpreg.formats.deeplabcut import read_image_sizes, read_project  # noqa: E402


def coco_files(project: Path, out: Path, val_every: int) -> dict[str, Path]:
    labels = read_project(project)
    sizes = read_image_sizes(labels, project)  # (N, 2) height, width
    names = list(labels.bodyparts)
    flips = [[i, j] for i, a in enumerate(names) for j, b in enumerate(names)
             if i < j and a.replace("left", "") == b.replace("right", "") and a.startswith("left")]
    category = {"id": 1, "name": "animal", "keypoints": names, "skeleton": []}
    splits: dict[str, dict] = {s: {"images": [], "annotations": [], "categories": [category]} for s in ("train", "val")}
    for i, path in enumerate(labels.image_paths):
        split = "val" if i % val_every == 0 else "train"
        xy = labels.keypoints[i]  # (K, 2) original px
        seen = labels.labelled[i]  # (K,)
        lo, hi = xy[seen].min(0), xy[seen].max(0)
        w, h = (hi - lo).tolist()
        keypoints = np.concatenate([xy, np.where(seen, 2.0, 0.0)[:, None]], 1)
        keypoints[~seen] = 0.0
        splits[split]["images"].append({"id": i + 1, "file_name": path.replace("\\", "/"),
                                        "height": int(sizes[i][0]), "width": int(sizes[i][1])})
        splits[split]["annotations"].append({
            "id": i + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0, "bbox": [*lo.tolist(), w, h],
            "area": BOX_AREA_FACTOR * w * h, "num_keypoints": int(seen.sum()),
            "keypoints": keypoints.reshape(-1).tolist()})
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for split, data in splits.items():
        files[split] = out / f"annotations_{split}.json"
        files[split].write_text(json.dumps(data))
    part = {
        "seed_everything": 0,
        "trainer": {"max_steps": 900, "max_epochs": -1, "check_val_every_n_epoch": 15, "accelerator": "auto",
                    "devices": 1, "precision": "32-true", "log_every_n_steps": 20},
        "model": {"backbone": "resnet18", "feature_index": 2, "channels_last": True,
                  "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.002, "weight_decay": 0.0001}},
                  "lr_scheduler": {"class_path": "kpreg.training.schedules.WarmupCosine",
                                   "init_args": {"warmup_steps": 50}}},
        "data": {"class_path": "kpreg.data.coco.COCODataModule", "init_args": {
            "train_ann": str(files["train"]), "val_ann": str(files["val"]), "train_images": str(project.resolve()),
            "input_size": [128, 128], "box_source": "keypoints", "flip_pairs": flips, "default_sigma": 0.05,
            "augmentation": {"scale_factor": 0.25, "rotation": 180.0, "flip_prob": 0.5, "photometric": True},
            "batch_size": 16, "num_workers": 0}},
    }
    files["config"] = out / "openfield.yaml"
    files["config"].write_text(yaml.safe_dump(part, sort_keys=False))
    counts = {s: len(d["images"]) for s, d in splits.items()}
    print(f"{labels.num_images} labelled frames of {project}: {counts['train']} train, {counts['val']} val; "
          f"keypoints {names}, flip pairs {flips}")
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", required=True, help="the DeepLabCut project folder (config.yaml, labeled-data/)")
    parser.add_argument("--out", required=True, help="where the COCO files and the config part go")
    parser.add_argument("--val-every", type=int, default=5, help="every n-th labelled frame is validation")
    args = parser.parse_args()
    for name, path in coco_files(Path(args.project), Path(args.out), args.val_every).items():
        print(f"wrote {name}: {path}")


if __name__ == "__main__":
    main()
