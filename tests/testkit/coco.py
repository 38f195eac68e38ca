"""A tiny COCO-format keypoint dataset written to a temporary folder.

Each split has four 96×128 JPEG images with coloured dots at the keypoints and these annotations::

    image 1   two instances (left and right half) + a crowd annotation (iscrowd=1, no keypoints)
    image 2   one instance + an annotation without labelled keypoints (num_keypoints=0)
    image 3   one instance with two unlabelled keypoints (v=0)
    image 4   one instance

so 5 instances per split become samples, and the crowd and the zero-keypoint annotations do not. The val
split also gets a detection results file: one box per annotated instance (jittered, score 0.9), one on
the zero-keypoint person (0.8), one of another category and one with a zero-size box.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from kpreg.formats.coco import COCO_KEYPOINT_NAMES, COCO_SKELETON

IMAGE_H, IMAGE_W = 96, 128
# (image number, box [x, y, w, h] edges in original pixels) of the annotated instances, in file order.
INSTANCE_BOXES: tuple[tuple[int, tuple[float, float, float, float]], ...] = (
    (1, (6.0, 10.0, 40.0, 70.0)),
    (1, (74.0, 14.0, 44.0, 66.0)),
    (2, (30.0, 8.0, 60.0, 80.0)),
    (3, (20.0, 20.0, 56.0, 50.0)),
    (4, (40.0, 6.0, 36.0, 84.0)),
)
UNLABELLED_IN_IMAGE_3 = (0, 2)  # keypoint indices with v = 0 in the image-3 instance


@dataclass
class CocoFixture:
    root: Path
    images: Path
    train_ann: Path
    val_ann: Path
    bbox_file: Path
    keypoint_names: tuple[str, ...]
    image_ids: dict[str, list[int]]  # split → image ids

    def load(self, split: str = "val") -> dict[str, Any]:
        return json.loads((self.val_ann if split == "val" else self.train_ann).read_text())

    def write(self, split: str, data: dict[str, Any]) -> Path:
        path = self.val_ann if split == "val" else self.train_ann
        path.write_text(json.dumps(data))
        return path


def _keypoints(box: tuple[float, float, float, float], k: int, rng: np.random.Generator) -> np.ndarray:
    """(K, 2) x,y inside the box, away from its border; a fixed layout per instance."""
    x, y, w, h = box
    unit = rng.uniform(0.15, 0.85, size=(k, 2))  # (K, 2) in box units
    return np.round(np.array([x, y]) + unit * np.array([w, h]), 2)


def _split(
    root: Path, images: Path, split: str, first_image_id: int, first_ann_id: int, names: tuple[str, ...],
    category: dict[str, Any], seed: int,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    rng = np.random.default_rng(seed)
    k = len(names)
    colours = rng.integers(60, 255, size=(k, 3))
    image_entries, anns = [], []
    canvases: dict[int, np.ndarray] = {}
    for n in range(1, 5):
        iid = first_image_id + n - 1
        image_entries.append({"id": iid, "file_name": f"{split}_{n:03d}.jpg", "width": IMAGE_W, "height": IMAGE_H})
        canvases[n] = rng.integers(0, 40, size=(IMAGE_H, IMAGE_W, 3), dtype=np.uint8)
    ann_id = first_ann_id
    for number, box in INSTANCE_BOXES:
        xy = _keypoints(box, k, rng)  # (K, 2)
        v = np.full(k, 2)
        if number == 3:
            v[list(UNLABELLED_IN_IMAGE_3)] = 0
        kp = np.concatenate([np.where(v[:, None] > 0, xy, 0.0), v[:, None]], axis=1)  # (K, 3)
        for j in np.flatnonzero(v):
            cv2.circle(canvases[number], (int(round(xy[j, 0])), int(round(xy[j, 1]))), 2,
                       tuple(int(c) for c in colours[j]), -1)
        anns.append({
            "id": ann_id, "image_id": first_image_id + number - 1, "category_id": category["id"], "iscrowd": 0,
            "bbox": list(box), "area": box[2] * box[3] * 0.6, "num_keypoints": int((v > 0).sum()),
            "keypoints": kp.reshape(-1).tolist(),
        })  # fmt: skip
        ann_id += 1
    zeros = [0] * (3 * k)
    anns.append({"id": ann_id, "image_id": first_image_id, "category_id": category["id"], "iscrowd": 1,
                 "bbox": [50.0, 40.0, 30.0, 30.0], "area": 500.0, "num_keypoints": 0, "keypoints": zeros})
    anns.append({"id": ann_id + 1, "image_id": first_image_id + 1, "category_id": category["id"], "iscrowd": 0,
                 "bbox": [2.0, 50.0, 20.0, 40.0], "area": 600.0, "num_keypoints": 0, "keypoints": zeros})
    for n, canvas in canvases.items():
        cv2.imwrite(str(images / f"{split}_{n:03d}.jpg"), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
    data = {"info": {"description": f"kpreg test fixture ({split})"}, "images": image_entries,
            "annotations": anns, "categories": [category]}
    return data, image_entries


def make_coco_fixture(
    root: Path,
    keypoint_names: tuple[str, ...] = COCO_KEYPOINT_NAMES,
    skeleton: tuple[tuple[int, int], ...] | None = None,
    category_name: str = "person",
    category_id: int = 1,
) -> CocoFixture:
    """Write ``annotations/{train,val}.json``, ``images/*.jpg`` and ``detections.json`` under ``root``."""
    root = Path(root)
    images, ann_dir = root / "images", root / "annotations"
    images.mkdir(parents=True, exist_ok=True)
    ann_dir.mkdir(parents=True, exist_ok=True)
    if skeleton is None:
        skeleton = COCO_SKELETON if keypoint_names == COCO_KEYPOINT_NAMES else tuple(
            (i, i + 1) for i in range(len(keypoint_names) - 1)
        )
    category = {"id": category_id, "name": category_name, "supercategory": category_name,
                "keypoints": list(keypoint_names), "skeleton": [[a + 1, b + 1] for a, b in skeleton]}
    train, _ = _split(root, images, "train", 1, 1, keypoint_names, category, seed=0)
    val, _ = _split(root, images, "val", 101, 1001, keypoint_names, category, seed=1)
    (ann_dir / "train.json").write_text(json.dumps(train))
    (ann_dir / "val.json").write_text(json.dumps(val))

    dets = []
    for ann in val["annotations"]:
        if ann["iscrowd"]:
            continue
        x, y, w, h = ann["bbox"]
        score = 0.9 if ann["num_keypoints"] > 0 else 0.8
        dets.append({"image_id": ann["image_id"], "category_id": category_id,
                     "bbox": [x + 1.0, y - 1.0, w + 2.0, h], "score": score})
    dets.append({"image_id": 101, "category_id": category_id + 1, "bbox": [0.0, 0.0, 20.0, 20.0], "score": 0.99})
    dets.append({"image_id": 102, "category_id": category_id, "bbox": [5.0, 5.0, 0.0, 20.0], "score": 0.7})
    bbox_file = root / "detections.json"
    bbox_file.write_text(json.dumps(dets))
    return CocoFixture(
        root=root, images=images, train_ann=ann_dir / "train.json", val_ann=ann_dir / "val.json",
        bbox_file=bbox_file, keypoint_names=tuple(keypoint_names),
        image_ids={"train": [1, 2, 3, 4], "val": [101, 102, 103, 104]},
    )
