"""A tiny MPII root in the community layout (annot/{train,valid}.json, annot/gt_valid.mat, images/).

Each image is a synthetic figure (``kpreg.data.synthetic.render_figure``) pasted into a larger, non-square
canvas, so crops really zoom and shift. Files are written MATLAB 1-based, like the real ones. Labels are
rounded to 1/16 px so that the ±1 shifts of the file I/O are exact in float64 (a perfect prediction then
scores exactly 100, even at PCKh threshold 0).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import scipy.io

from kpreg.data.synthetic import render_figure

# MPII's joint abbreviations as stored in gt_valid.mat's dataset_joints (kpreg order).
DATASET_JOINTS = ("rank", "rkne", "rhip", "lhip", "lkne", "lank", "pelv", "thor", "neck", "head",
                  "rwri", "relb", "rsho", "lsho", "lelb", "lwri")


@dataclass
class MPIIFixture:
    root: Path
    valid_joints: np.ndarray  # (N, 16, 2) 0-based original pixels (gt_valid.mat rows)
    valid_visible: np.ndarray  # (N, 16) bool
    valid_head_size: np.ndarray  # (N,)
    train_joints: np.ndarray  # (M, 16, 2) 0-based


def _person(seed: int, index: int, canvas_hw: tuple[int, int], figure: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(canvas (H, W, 3) RGB, joints (16, 2) 0-based, head box (2, 2) 0-based) for one figure."""
    fig = render_figure(seed, index, figure)
    h, w = canvas_hw
    rng = np.random.default_rng([seed, index, 7])
    canvas = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    ox, oy = int(rng.integers(0, w - figure + 1)), int(rng.integers(0, h - figure + 1))
    canvas[oy : oy + figure, ox : ox + figure] = fig.image
    offset = np.array([ox, oy], dtype=np.float64)
    joints = np.round((fig.keypoints + offset) * 16) / 16  # (16, 2) exact in binary
    head_box = np.round((fig.head_box + offset) * 16) / 16  # (2, 2)
    return canvas, joints, head_box


def _entry(image: str, joints: np.ndarray, visible: np.ndarray) -> dict:
    lo, hi = joints[visible].min(axis=0), joints[visible].max(axis=0)
    center = (lo + hi) / 2 + 1.0  # 1-based, like the community files
    one_based = np.where(visible[:, None], joints + 1.0, -1.0)  # unlabelled joints: placeholder [-1, -1]
    return {
        "image": image,
        "center": center.tolist(),
        "scale": float((hi - lo).max() / 200.0),  # person height / 200 px
        "joints": one_based.tolist(),
        "joints_vis": visible.astype(int).tolist(),
    }


def make_mpii_root(
    root: Path, num_train: int = 6, num_valid: int = 4, canvas_hw: tuple[int, int] = (120, 160), figure: int = 96
) -> MPIIFixture:
    """Write the fixture under ``root`` and return its 0-based ground truth."""
    root = Path(root)
    (root / "annot").mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    splits: dict[str, list[dict]] = {"train": [], "valid": []}
    valid_joints, valid_visible, valid_boxes, train_joints = [], [], [], []
    for split, count, seed in (("train", num_train, 0), ("valid", num_valid, 1)):
        for i in range(count):
            canvas, joints, head_box = _person(seed, i, canvas_hw, figure)
            name = f"{split}_{i:04d}.jpg"
            cv2.imwrite(str(root / "images" / name), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
            visible = np.ones(16, dtype=bool)
            if i % 2 == 1:  # some persons miss a joint, as in MPII (jnt_missing / joints_vis = 0)
                visible[(3 * i) % 16] = False
            splits[split].append(_entry(name, joints, visible))
            if split == "valid":
                valid_joints.append(joints)
                valid_visible.append(visible)
                valid_boxes.append(head_box)
            else:
                train_joints.append(joints)
    for split, entries in splits.items():
        (root / "annot" / f"{split}.json").write_text(json.dumps(entries))
    joints = np.stack(valid_joints)  # (N, 16, 2) 0-based
    visible = np.stack(valid_visible)  # (N, 16)
    boxes = np.stack(valid_boxes)  # (N, 2, 2) [corner, xy] 0-based
    scipy.io.savemat(
        str(root / "annot" / "gt_valid.mat"),
        {
            "pos_gt_src": (joints + 1.0).transpose(1, 2, 0),  # 16 × 2 × N, 1-based
            "jnt_missing": (~visible).astype(np.float64).T,  # 16 × N
            "headboxes_src": (boxes + 1.0).transpose(1, 2, 0),  # 2 × 2 × N, 1-based
            "dataset_joints": np.array([list(DATASET_JOINTS)], dtype=object),  # 1 × 16 cell
        },
    )
    head_size = 0.6 * np.linalg.norm(boxes[:, 1] - boxes[:, 0], axis=-1)
    return MPIIFixture(root, joints, visible, head_size, np.stack(train_joints))
