"""What a DeepLabCut project asks of a head, measured from its labels alone (no training): the spread of the animal's
heading, and the error of the trivial predictor that always answers the mean training pose in the crop.

A head whose error is close to the mean-pose error has learned next to nothing about the image; the heading spread
says how far the poses in the crop are from one mean pose (a top-view animal faces every way: its mean pose is a
blob in the middle of the crop).

    python benchmarks/own_data_baselines.py --project /path/to/my_project --head-keypoint snout \\
        --tail-keypoint tailbase [--val-every 5] [--input-size 128] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kpreg.coords import apply_affine  # noqa: E402
from kpreg.data.deeplabcut import DeepLabCutDataModule  # noqa: E402


def heading_histogram(labels_xy: np.ndarray, labelled: np.ndarray, head: int, tail: int, bins: int = 8) -> list[int]:
    """Frames per heading sector (tail → head direction, image axes, ``bins`` equal sectors from +x)."""
    ok = labelled[:, head] & labelled[:, tail]  # (N,)
    d = labels_xy[ok, head] - labels_xy[ok, tail]  # (M, 2)
    angle = np.degrees(np.arctan2(d[:, 1], d[:, 0])) % 360.0  # (M,) degrees
    return np.histogram(angle, bins=bins, range=(0.0, 360.0))[0].tolist()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", required=True)
    parser.add_argument("--head-keypoint", required=True, help="the keypoint at the front (e.g. snout)")
    parser.add_argument("--tail-keypoint", required=True, help="the keypoint at the back (e.g. tailbase)")
    parser.add_argument("--val-every", type=int, default=5)
    parser.add_argument("--input-size", type=int, default=128)
    parser.add_argument("--box-source", default="keypoints", choices=["keypoints", "image"])
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    dm = DeepLabCutDataModule(args.project, val_every=args.val_every, input_size=(args.input_size,) * 2,
                              box_source=args.box_source, num_workers=0)
    dm.setup("fit")
    names = dm.keypoint_names
    head, tail = names.index(args.head_keypoint), names.index(args.tail_keypoint)
    sectors = heading_histogram(dm.labels.keypoints, dm.labels.labelled, head, tail)

    keypoints, visible = dm.training_keypoints()  # (N, K, 2) input px of the evaluation crop, (N, K)
    weights = visible[..., None].astype(np.float64)  # (N, K, 1)
    mean_pose = (keypoints * weights).sum(0) / np.maximum(weights.sum(0), 1.0)  # (K, 2) input px
    errors = []
    for i in range(len(dm.datasets["val"])):
        meta = dm.datasets["val"][i]["meta"]
        pred = apply_affine(mean_pose, meta["affine_inv"].numpy())  # (K, 2) original px
        err = np.linalg.norm(pred - meta["keypoints_orig"].numpy(), axis=1)  # (K,)
        errors.append(np.where(meta["visible_orig"].numpy(), err, np.nan))
    err = np.array(errors)  # (V, K)
    result = {
        "frames": int(dm.labels.num_images),
        "heading_sectors_45deg": sectors,
        "mean_pose_error_px": {"mean": float(np.nanmean(err)), "median": float(np.nanmedian(err)),
                               **{f"mean/{n}": float(np.nanmean(err[:, k])) for k, n in enumerate(names)}},
        "crop_spread_px": {n: [float(v) for v in keypoints[visible[:, k], k].std(0)] for k, n in enumerate(names)},
    }
    print(f"{result['frames']} labelled frames; heading ({args.tail_keypoint} → {args.head_keypoint}) per 45° sector "
          f"from +x: {sectors}")
    print(f"mean training pose as the prediction, on the {err.shape[0]} validation frames: mean "
          f"{result['mean_pose_error_px']['mean']:.2f} px, median {result['mean_pose_error_px']['median']:.2f} px")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
