"""``python evaluate.py score``: score a saved predictions file against ground truth, without a model.

    python evaluate.py score --dataset mpii --gt PATH/gt_valid.mat --pred PATH/pred.mat --json OUT.json
    python evaluate.py score --dataset coco --gt PATH/person_keypoints_val2017.json --pred PATH/results.json

MPII: ``pred`` is a ``.mat`` or ``.h5`` file with ``preds`` (N×16×2 or 2×16×N, 1-based MATLAB pixels as
the community's files are; ``--zero_based`` for 0-based files), or the ``predictions.json`` of an MPII evaluation
(``kpreg.formats.predictions``: 0-based, in ``index`` order). The JSON holds the MPII table's keys, percent
(``kpreg.metrics.mpii_score.SUMMARY_KEYS``).
COCO: ``pred`` is a COCO keypoint results JSON (the ``predictions.json`` of ``predict.py`` and ``evaluate.py`` is
one); the JSON holds pycocotools' ten keypoint stats, fractions (``kpreg.metrics.oks.STAT_NAMES``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from kpreg.cli.errors import USER_ERRORS, CommandParser, fail
from kpreg.cli.outputs import OVERWRITE_HELP, check_file


def _parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="evaluate.py score", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, choices=["mpii", "coco"])
    parser.add_argument("--gt", required=True, help="gt_valid.mat (MPII) or a COCO keypoints JSON")
    parser.add_argument("--pred", required=True,
                        help="pred.mat / .h5 / predictions.json (MPII) or a results JSON, e.g. predictions.json (COCO)")
    parser.add_argument("--json", default=None, help="write the metrics to this JSON file")
    parser.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    parser.add_argument("--zero_based", action="store_true", help="MPII: predictions are 0-based pixels")
    parser.add_argument("--sigmas", type=float, nargs="+", default=None,
                        help="COCO-format datasets other than COCO: per-keypoint OKS sigmas")
    return parser


def score_main(argv: Sequence[str]) -> None:
    args = _parser().parse_args(list(argv))
    console = Console()
    try:
        if args.json:
            check_file(args.json, "--json", args.overwrite)
        for path in (args.gt, args.pred):
            if not Path(path).is_file():
                raise FileNotFoundError(f"file not found: {path}")
        if args.dataset == "mpii":
            from kpreg.metrics.mpii_score import mpii_table, score_mpii_files

            metrics = score_mpii_files(args.gt, args.pred, one_based=not args.zero_based)
            console.print(mpii_table(metrics, name=Path(args.pred).name))
        else:
            from kpreg.metrics.coco_score import coco_table, score_coco_files

            metrics = score_coco_files(args.gt, args.pred, sigmas=args.sigmas)
            console.print(coco_table(metrics))
    except USER_ERRORS as err:  # the user's input (kpreg.cli.errors): one line, exit code 2
        fail(err)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({k: float(v) for k, v in metrics.items()}, indent=2))
        console.print(f"wrote {args.json}")
