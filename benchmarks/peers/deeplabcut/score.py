"""Score predictions on a DeepLabCut project's held-out frames with kpreg's pixel metric code (kpreg's venv).

Any tool's predictions as DeepLabCut tables (``x, y, likelihood`` per keypoint, rows named by frame path as in the
labels, e.g. ``labeled-data/m4s1/img0000.png``): DeepLabCut's (``run.py evaluate`` writes them) and kpreg's own
(``predictions.csv`` of ``evaluate.py``). The held-out frames and their ground truth are kpreg's
(``DeepLabCutDataModule`` with the same split rule), so every row is scored by the same code on the same frames:
``kpreg.metrics.pixel.pixel_results`` (mean / median / RMSE px, PCK against the labelled extent's larger side).

    python benchmarks/peers/deeplabcut/score.py --project /path/to/project [--val-every 5] \\
        [--heldout-list heldout_frames.txt] PREDICTIONS.csv [MORE.csv ...] [--label NAME ...] [--json out.json]

``--heldout-list`` (the list ``make_project.py`` wrote) is checked against kpreg's split: a difference is an error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from benchmarks._report import write_json  # noqa: E402
from kpreg.data.deeplabcut import DeepLabCutDataModule  # noqa: E402
from kpreg.data.errors import DataError  # noqa: E402
from kpreg.data.splits import normalise_path  # noqa: E402
from kpreg.formats.deeplabcut import DLCFormatError, read_collected_data  # noqa: E402
from kpreg.metrics.pixel import pixel_results  # noqa: E402

COLUMNS = ("MeanError", "MedianError", "RMSE", "PCK@0.05", "PCK@0.1", "PCK@0.2", "PCK@2px", "PCK@5px", "PCK-AUC")


class ScoreError(ValueError):
    """A predictions file or held-out list that does not fit the project; the message names the file."""


def heldout_truth(project: str, val_every: int) -> tuple[list[str], list[str], np.ndarray, np.ndarray, np.ndarray]:
    """kpreg's validation frames: (frame paths, keypoint names, keypoints (N, K, 2) px, labelled (N, K), box (N,))."""
    dm = DeepLabCutDataModule(project, val_every=val_every, input_size=(128, 128), batch_size=1, num_workers=0)
    dm.setup("validate")
    rows = dm.frames["val"]
    frames = [normalise_path(dm.labels.image_paths[i]) for i in rows]
    records = dm.records["val"]
    keypoints = np.stack([r.keypoints for r in records])  # (N, K, 2) x,y original pixels
    labelled = np.stack([r.visible for r in records]).astype(bool)  # (N, K)
    box = np.array([r.instance_size for r in records], dtype=np.float64)  # (N,) larger side of the labelled extent
    return frames, list(dm.keypoint_names), keypoints, labelled, box


def check_heldout_list(path: Path, frames: list[str]) -> None:
    listed = [normalise_path(line) for line in path.read_text().split() if line.strip()]
    if listed != frames:
        only_list = sorted(set(listed) - set(frames))
        only_kpreg = sorted(set(frames) - set(listed))
        raise ScoreError(f"{path}: {len(listed)} held-out frames, kpreg's split has {len(frames)}; only in the "
                         f"list: {only_list[:3]}, only in kpreg's: {only_kpreg[:3]}"
                         + ("" if only_list or only_kpreg else " (same frames, another order)"))


def predicted(path: Path, frames: list[str], names: list[str]) -> np.ndarray:
    """Predictions (N, K, 2) px for ``frames`` from a DeepLabCut table (its other rows are ignored)."""
    labels = read_collected_data(path)
    if list(labels.bodyparts) != names:
        raise ScoreError(f"{path}: keypoints {list(labels.bodyparts)}, the project has {names}")
    row = {normalise_path(p): i for i, p in enumerate(labels.image_paths)}
    missing = [f for f in frames if f not in row]
    if missing:
        raise ScoreError(f"{path}: no prediction for {len(missing)} held-out frame(s), e.g. {missing[0]!r}")
    idx = [row[f] for f in frames]
    xy = labels.keypoints[idx].copy()  # (N, K, 2) x,y original pixels
    xy[~labels.labelled[idx]] = np.nan  # an empty cell is no prediction
    return xy


def score(truth: np.ndarray, labelled: np.ndarray, box: np.ndarray, pred: np.ndarray,
          names: list[str]) -> dict[str, float]:
    errors = np.linalg.norm(pred - truth, axis=-1)  # (N, K) px, NaN where nothing was predicted
    errors = np.where(np.isnan(errors), np.inf, errors)  # pixel_results: inf = not predicted
    return pixel_results(errors, labelled, box, names)


def table(rows: dict[str, dict[str, float]], frames: int) -> str:
    head = f"| predictions ({frames} held-out frames) | " + " | ".join(COLUMNS) + " |"
    rule = "|---" * (len(COLUMNS) + 1) + "|"
    body = [f"| {label} | " + " | ".join(f"{r[c]:.2f}" for c in COLUMNS) + " |" for label, r in rows.items()]
    return "\n".join([head, rule, *body])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("predictions", nargs="+", type=Path, help="DeepLabCut tables of predictions")
    parser.add_argument("--project", required=True, help="the labelled DeepLabCut project (ground truth)")
    parser.add_argument("--val-every", type=int, default=5, help="kpreg's split rule (configs/data/deeplabcut.yaml)")
    parser.add_argument("--heldout-list", type=Path, help="held-out frames to check against kpreg's split")
    parser.add_argument("--label", action="append", default=[], help="a row name per predictions file")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    if args.label and len(args.label) != len(args.predictions):
        print(f"score.py: {len(args.label)} --label for {len(args.predictions)} predictions files", file=sys.stderr)
        return 2
    labels = args.label or [str(p) for p in args.predictions]
    try:
        frames, names, truth, labelled, box = heldout_truth(args.project, args.val_every)
        if args.heldout_list is not None:
            check_heldout_list(args.heldout_list, frames)
        rows = {label: score(truth, labelled, box, predicted(path, frames, names), names)
                for label, path in zip(labels, args.predictions)}
    except (ScoreError, DataError, DLCFormatError, OSError) as err:
        print(f"score.py: {err}", file=sys.stderr)
        return 2
    print(table(rows, len(frames)))
    write_json(args.json, {"project": args.project, "val_every": args.val_every, "heldout_frames": frames,
                           "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
