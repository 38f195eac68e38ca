"""``study.py``: run a grid of ``train.py`` + ``evaluate.py`` runs (``kpreg.compare.study``), or report one."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="study.py",
        description="Run a grid of train.py + evaluate.py runs (heads × strides × seeds × --grid keys); "
                    "'study.py report --out DIR' writes DIR/report.md and plots.")
    parser.add_argument("--config", action="append",
                        help="a base config part (repeatable, merged in order by train.py's parser): the data "
                             "part, then optionally a protocol part")
    parser.add_argument("--heads", help="comma-separated heads: names of configs/heads/NAME.yaml, or paths to head "
                                        "parts, e.g. heatmap,dsnt,fc")
    parser.add_argument("--configs", nargs="+", help="complete configs to compare instead (name = file stem)")
    parser.add_argument("--strides", help="comma-separated output strides (heads without one run once)")
    parser.add_argument("--seeds", help="comma-separated seeds (seed_everything)")
    parser.add_argument("--grid", action="append", metavar="KEY=V1,V2",
                        help="another grid axis over a dotted config key (repeatable)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override a dotted config key in every run, value as YAML (repeatable)")
    parser.add_argument("--name", default="study", help="the study name: wandb group and report title")
    parser.add_argument("--out", required=True, help="the study directory (one folder per run)")
    parser.add_argument("--max-runs", type=int, default=None, help="run at most this many runs, then stop")
    parser.add_argument("--sweep-yaml", help="also write a wandb sweep definition of the grid here")
    parser.add_argument("--dry-run", action="store_true", help="list the runs and exit")
    parser.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["report"]:
        from kpreg.compare.report import report_main

        return report_main(argv[1:])
    from kpreg.cli.lightning import train_parser
    from kpreg.compare.study import Study, write_sweep

    args = build_parser().parse_args(argv)
    try:
        study = Study(args, train_parser())
        if args.dry_run:
            runs = study.runs()
            for spec, _ in runs:
                print(spec.name)
            if args.sweep_yaml:
                study.out.mkdir(parents=True, exist_ok=True)
                print(f"wrote {write_sweep(study, runs, Path(args.sweep_yaml))}")
            return 0
        code = study.run()
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not args.no_report:
        from kpreg.compare.report import write_report

        path = write_report(study.out)
        study.log(f"report: {path}")
    return code
