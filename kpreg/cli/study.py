"""``study.py``: run a grid of ``train.py`` + ``evaluate.py`` runs (``kpreg.compare.study``), or report one."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from kpreg.cli.errors import USER_ERRORS, CommandParser, fail
from kpreg.cli.outputs import OVERWRITE_HELP, OutputError, remove
from kpreg.compare.launch import LAUNCHERS
from kpreg.validation import InputError, check_number


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
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
    parser.add_argument("--overwrite", action="store_true",
                        help="run again the runs of --out whose config differs from this study's (their folders are "
                             "removed first); without it such a study is refused. " + OVERWRITE_HELP)
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
        check_arguments(args)
        study = Study(args, train_parser())
        if args.dry_run:
            runs = study.runs()
            for spec, _ in runs:
                print(spec.name)
            if args.sweep_yaml:
                study.out.mkdir(parents=True, exist_ok=True)
                print(f"wrote {write_sweep(study, runs, Path(args.sweep_yaml))}")
            return 0
        remove(check_runs(study, study.runs(), args.overwrite))
        code = study.run()
    except USER_ERRORS as err:  # the user's input (kpreg.cli.errors), LaunchError, DataError: one line, exit code 2
        fail(err)
    if not args.no_report:
        from kpreg.compare.report import ReportOptions, write_report

        path = write_report(study.out, ReportOptions.of(args))
        study.log(f"report: {path}")
    return code


def check_arguments(args: argparse.Namespace) -> None:
    """The lists and counts of the command line, and ``--out`` (a folder), before any work."""
    for flag, text, minimum in (("--seeds", args.seeds, 0), ("--strides", args.strides, 1)):
        for item in (text or "").split(",") if text else []:
            try:
                value = int(item)
            except ValueError:
                raise InputError(f"{flag}: {item.strip()!r} is not a whole number (comma-separated, e.g. "
                                  f"{flag} {'0,1' if flag == '--seeds' else '4,8'})") from None
            check_number(value, flag, minimum=minimum)
    if args.max_runs is not None:
        check_number(args.max_runs, "--max-runs", minimum=1)
    for flag, value, minimum in (("--workers", args.workers, 1), ("--gpus-per-run", args.gpus_per_run, 0),
                                 ("--cpus-per-run", args.cpus_per_run, 1), ("--time-min", args.time_min, 1),
                                 ("--resamples", args.resamples, 1)):
        check_number(value, flag, minimum=minimum)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file; --out names the study's folder")


def check_runs(study: Any, runs: list[tuple[Any, dict[str, Any]]], overwrite: bool) -> list[Path]:
    """The never-overwrite rule for a study (``kpreg.cli.outputs``): running the same study again resumes it, but a
    run folder of the same name made with another config (another ``--set``, base config or ``--name``) would be
    skipped or resumed as if it were this study's. Refused unless ``--overwrite``; returns those folders, which
    ``--overwrite`` removes so that they run again."""
    differing: list[tuple[Path, str]] = []
    for spec, config in runs:
        run_dir = study.out / spec.name
        saved_path = run_dir / "study_config.yaml"
        if not saved_path.is_file():
            continue
        saved = yaml.safe_load(saved_path.read_text()) or {}
        wanted = yaml.safe_load(yaml.safe_dump(study.finalise_config(spec, config, run_dir), sort_keys=False))
        # where the run writes is the run folder itself, however --out was spelled (relative, absolute)
        keys = [k for k in _differences(saved, wanted) if k not in _RUN_FOLDER_KEYS]
        if keys:
            differing.append((run_dir, ", ".join(keys[:3]) + (f", … {len(keys) - 3} more" if len(keys) > 3 else "")))
    if differing and not overwrite:
        run_dir, keys = differing[0]
        more = f" (and {len(differing) - 1} other run(s))" if len(differing) > 1 else ""
        raise OutputError(f"--out {study.out} holds run {run_dir.name} made with another config ({keys} differ)"
                          f"{more}: choose another --out, or pass --overwrite to run them again")
    return [run_dir for run_dir, _ in differing]


_RUN_FOLDER_KEYS = ("trainer.default_root_dir", "trainer.logger.init_args.save_dir")


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    """The dotted keys on which two plain configs differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [k for key in sorted(set(a) | set(b), key=str)
                for k in _differences(a.get(key), b.get(key), f"{prefix}{key}.")]
    return [] if a == b else [prefix.rstrip(".") or "config"]


def report_main(argv: Sequence[str]) -> int:
    """``study.py report --out DIR``: (re)write the report of a study, also of one still running."""
    from kpreg.compare.report import ReportOptions, write_report

    parser = CommandParser(prog="study.py report", description="Write <out>/report.md and plots.")
    parser.add_argument("--out", required=True, help="the study directory")
    parser.add_argument("--no-wandb", action="store_true", help="do not log the verdict table to a wandb summary run")
    add_report_arguments(parser)
    args = parser.parse_args(argv)
    if not Path(args.out).is_dir():
        parser.error(f"no such study directory: {args.out}")
    try:
        check_number(args.resamples, "--resamples", minimum=1)
        print(f"wrote {write_report(args.out, ReportOptions.of(args))}")
    except USER_ERRORS as err:  # a study whose files cannot make a report (or a comparison): one line, exit code 2
        fail(err)
    return 0
