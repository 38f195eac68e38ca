"""``study.py``: run a grid of ``train.py`` + ``evaluate.py`` runs (``kpreg.compare.study``), or report one."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from kpreg.compare.launch import LAUNCHERS


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
    parser.add_argument("--budgets", help="label budgets: numbers of labelled training frames (10,25,50) or shares "
                                          "(10,25,50,100%%); nested per seed")
    launch = parser.add_argument_group("where runs execute (submitit)")
    launch.add_argument("--launcher", choices=LAUNCHERS, default="inprocess",
                        help="inprocess: one after the other in this process (default); local: local processes; "
                             "slurm: SLURM jobs (a job array)")
    launch.add_argument("--workers", type=int, default=2, help="runs at once (local), the array's parallelism (slurm)")
    launch.add_argument("--partition", help="SLURM partition")
    launch.add_argument("--gpus-per-run", type=int, default=0,
                        help="GPUs per run (slurm: one task per GPU, a DDP run through Lightning's SLURM environment)")
    launch.add_argument("--cpus-per-run", type=int, default=1, help="CPUs per task (slurm)")
    launch.add_argument("--time-min", type=int, default=24 * 60, help="a run's time limit in minutes")
    launch.add_argument("--sbatch", action="append", metavar="KEY=VALUE",
                        help="an extra #SBATCH option, e.g. --sbatch account=lab --sbatch qos=low (repeatable)")
    launch.add_argument("--setup", action="append", metavar="LINE",
                        help="a shell line run before each job, e.g. 'module load cuda' (repeatable)")
    launch.add_argument("--job-python", help="the command that runs Python in a job (default: this interpreter), "
                                             "e.g. 'apptainer exec image.sif python'")
    launch.add_argument("--poll-s", type=float, default=10.0, help=argparse.SUPPRESS)
    add_report_arguments(parser)
    return parser


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("the report's comparisons")
    group.add_argument("--baseline", help="compare every configuration with this one (its label in the report, e.g. "
                                          "'heatmap s4') instead of the best")
    group.add_argument("--target-error", type=float, action="append", metavar="X",
                       help="label budgets: about how many frames for this error (repeatable; default: 1.25× and "
                            "0.9× the best error reached)")
    group.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples of the intervals")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["report"]:
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
    except (ValueError, FileNotFoundError) as err:  # LaunchError and DataError are ValueErrors
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not args.no_report:
        from kpreg.compare.report import ReportOptions, write_report

        path = write_report(study.out, ReportOptions.of(args))
        study.log(f"report: {path}")
    return code


def report_main(argv: Sequence[str]) -> int:
    """``study.py report --out DIR``: (re)write the report of a study, also of one still running."""
    from kpreg.compare.report import ReportOptions, write_report

    parser = argparse.ArgumentParser(prog="study.py report", description="Write <out>/report.md and plots.")
    parser.add_argument("--out", required=True, help="the study directory")
    parser.add_argument("--no-wandb", action="store_true", help="do not log the verdict table to a wandb summary run")
    add_report_arguments(parser)
    args = parser.parse_args(argv)
    if not Path(args.out).is_dir():
        parser.error(f"no such study directory: {args.out}")
    try:
        print(f"wrote {write_report(args.out, ReportOptions.of(args))}")
    except ValueError as err:  # a study whose files cannot make a report (or a comparison): one line, exit code 2
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
