"""Score a saved MPII prediction file against ``gt_valid.mat`` and print the usual table.

API
---
* :func:`score_mpii_files` returns a ``dict[str, float]`` with exactly the keys
  ``Head, Shoulder, Elbow, Wrist, Hip, Knee, Ankle, Mean, Mean@0.1, AUC`` (percent, full precision).
* :func:`score_mpii_files_detailed` returns :class:`MPIIScore` with that summary plus the
  per-joint PCKh@0.5, the mean pixel error and the unweighted 14-joint mean that bearpaw's
  README (and some papers) print as "Mean".
* :func:`mpii_table` renders a summary (``kpreg.metrics.contract.metric_table``).

Usage: ``python -m kpreg.metrics.mpii_score GT.mat PRED.{mat,h5} [--zero-based]``.
Both files are read through :mod:`kpreg.formats.mpii`, i.e. converted to 0-based once.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console, Group

from kpreg.formats.mpii import (
    MPII_GROUPS,
    MPII_JOINT_NAMES,
    MPII_MEAN_JOINTS,
    NUM_JOINTS,
    load_gt_mat,
    load_predictions,
)
from kpreg.metrics.contract import metric_table
from kpreg.metrics.pckh import JOINT_PREFIX, pckh_columns, pckh_results

SUMMARY_KEYS: tuple[str, ...] = (*MPII_GROUPS, "Mean", "Mean@0.1", "AUC")


@dataclass(frozen=True)
class MPIIScore:
    summary: dict[str, float]  # exactly SUMMARY_KEYS, percent
    per_joint: dict[str, float]  # MPII joint name -> PCKh@0.5 percent (pelvis/thorax included)
    mean_error_px: float  # mean Euclidean error over visible joints (all 16), pixels
    unweighted_mean: float  # plain mean of the 14 per-joint PCKh@0.5 (bearpaw's "Mean")


def score_mpii_files_detailed(
    gt_path: str | Path,
    pred_path: str | Path,
    *,
    one_based: bool = True,
    thresholds: Sequence[float] = (0.5, 0.1),
    auc_max: float = 0.5,
    auc_step: float = 0.01,
) -> MPIIScore:
    """Score ``pred_path`` (``preds``; 1-based unless ``one_based=False``) against ``gt_path``."""
    gt = load_gt_mat(gt_path)
    try:
        preds = load_predictions(pred_path, one_based=one_based, num_joints=NUM_JOINTS)  # (N, 16, 2) 0-based
    except ValueError as e:
        raise ValueError(f"{e}; ground truth {gt_path} has joints of shape {gt.joints.shape}") from None
    if preds.shape != gt.joints.shape:
        raise ValueError(
            f"predictions {pred_path} have shape {preds.shape} but ground truth {gt_path} has {gt.joints.shape}"
        )
    res = pckh_results(
        preds, gt.joints, gt.visible, gt.head_size, thresholds, MPII_JOINT_NAMES, auc_max, auc_step
    )
    per_joint = {name: res[f"{JOINT_PREFIX}/{name}"] for name in MPII_JOINT_NAMES}
    unweighted = float(np.mean([per_joint[MPII_JOINT_NAMES[i]] for i in MPII_MEAN_JOINTS]))
    return MPIIScore(
        summary={k: res[k] for k in SUMMARY_KEYS},
        per_joint=per_joint,
        mean_error_px=res["MeanError"],
        unweighted_mean=unweighted,
    )


def score_mpii_files(gt_path: str | Path, pred_path: str | Path, **opts) -> dict[str, float]:
    """Summary dict with exactly :data:`SUMMARY_KEYS`; ``opts`` as in :func:`score_mpii_files_detailed`."""
    return score_mpii_files_detailed(gt_path, pred_path, **opts).summary


def mpii_table(summary: Mapping[str, float], name: str = "", title: str = "MPII PCKh") -> Group:
    """Head ... Ankle, Mean, Mean@0.1, AUC with two decimals (the one renderer, ``metric_table``)."""
    return metric_table(dict(summary), pckh_columns(MPII_GROUPS), f"{title}: {name}" if name else title)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("gt", type=Path, help="gt_valid.mat (pos_gt_src, jnt_missing, headboxes_src)")
    parser.add_argument("pred", type=Path, help="predictions .mat/.h5 with 'preds'")
    parser.add_argument("--zero-based", action="store_true", help="predictions are 0-based (not MATLAB)")
    args = parser.parse_args(argv)
    score = score_mpii_files_detailed(args.gt, args.pred, one_based=not args.zero_based)
    console = Console()
    console.print(mpii_table(score.summary, name=args.pred.name))
    console.print(
        f"mean error {score.mean_error_px:.2f} px; unweighted 14-joint mean {score.unweighted_mean:.2f}"
    )


if __name__ == "__main__":
    main()
