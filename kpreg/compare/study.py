"""Head comparison studies: one command runs a grid of ``train.py`` + ``evaluate.py`` runs and reports it.

A study is a base config (one or more ``--config`` parts: a data part and optionally a protocol part) and a grid:
heads (``--heads heatmap,simcc``: the head parts ``configs/heads/<name>.yaml``, or paths to head parts) × output
strides × seeds × any other config key (``--grid key=v1,v2``). A run's config is what ``train.py``'s own parser
resolves ``--config <base parts> --config <head part> --<key> <value> …`` to (the parts merged in order, then the
run's stride, seed, grid values and ``--set`` values); it is written complete to ``<out>/<run>/study_config.yaml``,
so a run is exactly what a user would run by hand::

    python train.py --config <out>/<run>/study_config.yaml [--ckpt_path last]
    python evaluate.py --config <out>/<run>/config.yaml --ckpt_path <out>/<run>/checkpoints/best.ckpt \\
        --json <out>/<run>/metrics.json

The runner then writes ``<out>/<run>/result.json`` (metrics, the metric contract — primary key, its direction,
the summary columns — the confidence scores before / after calibration with their columns and the chosen method,
parameters, FLOPs, latency, peak memory, wall times); a run with a ``result.json`` is done
and skipped when the command is repeated. A run that was
interrupted resumes: training from its ``last.ckpt``, or straight to evaluation if training had finished.
Heads without an output stride (FC) run once per seed, not once per stride.

Where runs execute is the launcher's (``kpreg.compare.launch``): one after the other in this process (the default),
as local processes or as SLURM jobs, both through submitit; repeating the command re-attaches to jobs still running
and resubmits failed ones. One study command at a time holds a study directory (``<out>/.study.lock``): parallel runs
are the launcher's ``--workers``, not several commands.

``--budgets 10,25,50,100%`` (or counts) adds the label-budget axis: every run trains on a nested, seeded subset of
the labelled training frames (``kpreg.data.budget``; the run's seed orders the frames), and the report draws the
learning curves. 100 % is the full training set (the run of the grid without a budget).
"""

from __future__ import annotations

import argparse
import copy
import fcntl
import inspect
import itertools
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import ArgumentError, ArgumentParser

from kpreg.classpath import import_class_path, short_name
from kpreg.compare.launch import Job, LaunchError, LaunchOptions, SubmititLauncher
from kpreg.data.budget import parse_budget
from kpreg.training.primary import primary_metric

REPO = Path(__file__).resolve().parents[2]
HEAD_PARTS = REPO / "configs" / "heads"


@dataclass
class RunSpec:
    """One cell of the grid."""

    name: str
    head: str  # the head's name in the study (its head part's file stem)
    head_class: str
    stride: int | None  # None: the head has no output stride
    seed: int
    extra: dict[str, Any] = field(default_factory=dict)  # values of the --grid axes
    budget: str | None = None  # the label budget ("25%", "40"); None: every training frame


# ---- run configs -----------------------------------------------------------------------------------------
def parse_value(text: str) -> Any:
    """A ``--grid`` value as YAML (``32`` → int, ``true`` → bool), for run names and the study definition."""
    return yaml.safe_load(text)


HEAD_ARGS = "model.head.init_args."


def head_accepts(class_path: str, arg: str) -> bool:
    """Whether the head class takes ``arg`` (from its signature, not from its name): a head argument in the
    grid or in ``--set`` (``output_stride``, ``neck_channels`` …) applies only to the heads that have it."""
    return arg in inspect.signature(import_class_path(class_path).__init__).parameters


def applies_to(key: str, head_class_path: str) -> bool:
    return not key.startswith(HEAD_ARGS) or head_accepts(head_class_path, key[len(HEAD_ARGS):].split(".")[0])


def read_part(path: Path) -> dict[str, Any]:
    """A config part as written (to check what it provides; merging parts is the parser's)."""
    if not path.is_file():
        raise FileNotFoundError(f"config not found: {path}")
    return yaml.safe_load(path.read_text()) or {}


def provides_head(path: Path) -> bool:
    return "head" in (read_part(path).get("model") or {})


def dataset_tag(config: dict[str, Any]) -> str:
    """The dataset tag of a run, from its datamodule class (``kpreg.data.mpii.MPIIDataModule`` → ``mpii``)."""
    name = short_name((config.get("data") or {}).get("class_path")) or "data"
    for suffix in ("PoseDataModule", "DataModule"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)].lower()
    return name.lower()


def head_part_path(head: str) -> Path:
    """A head given on the command line: a path to a head part, or a name of ``configs/heads/<name>.yaml``."""
    path = Path(head)
    if path.suffix in (".yaml", ".yml"):
        return path
    path = HEAD_PARTS / f"{head}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in HEAD_PARTS.glob("*.yaml"))
        raise FileNotFoundError(f"no head part for '{head}': {path} (known heads: {', '.join(known)})")
    return path


# ---- the study -----------------------------------------------------------------------------------------
class Study:
    """Args:
    args: the parsed command line (see ``kpreg.cli.study.build_parser``).
    parser: ``train.py``'s parser (``kpreg.cli.lightning.train_parser``): every run's config is what it resolves
        the run's command line to, ``--config`` parts merged in order and then the run's ``--key value`` pairs.
    """

    def __init__(self, args: argparse.Namespace, parser: ArgumentParser) -> None:
        self.args = args
        self.parser = parser
        self.name: str = args.name
        self.out = Path(args.out)
        self.base_paths = [Path(c) for c in (args.config or [])]
        # head name → the part that provides its ``model.head`` (with --configs: the whole config)
        self.head_configs: dict[str, Path] = {}
        if args.configs:
            self.head_configs = {Path(c).stem: Path(c) for c in args.configs}
        elif args.heads:
            if not self.base_paths:
                raise ValueError("--heads needs --config (the base parts: data, protocol)")
            for head in args.heads.split(","):
                path = head_part_path(head.strip())
                self.head_configs[path.stem] = path
        elif self.base_paths:
            if not any(provides_head(p) for p in self.base_paths):
                raise ValueError("the base config has no model.head: give --heads (e.g. --heads heatmap,dsnt)")
            self.head_configs = {self.base_paths[-1].stem: self.base_paths[-1]}
        else:
            raise ValueError("give --config (with optional --heads) or --configs")
        self.strides = [int(s) for s in args.strides.split(",")] if args.strides else []
        self.seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [None]
        self.sets = [self._split(kv, "--set") for kv in args.set or []]
        self.grid = [(k, [v.strip() for v in vs.split(",")]) for k, vs in (self._split(g, "--grid")
                                                                           for g in args.grid or [])]
        self.budgets = parse_budgets(getattr(args, "budgets", None))

    @staticmethod
    def _split(item: str, flag: str) -> tuple[str, str]:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag} takes key=value, got '{item}'")
        return key.strip(), value.strip()

    def resolve(self, arguments: list[str], label: str) -> dict[str, Any]:
        """The config ``train.py <arguments>`` runs, as plain data (its parser's dump); ``label`` names the run
        in an error."""
        try:
            config = self.parser.parse_args(arguments)
        except ArgumentError as err:
            raise ValueError(f"{label}: {err}") from None
        return yaml.safe_load(self.parser.dump(config, skip_unset=False))

    def head_arguments(self, head: str) -> list[str]:
        """``train.py``'s arguments for ``head`` before the grid: the base parts, then this head's part."""
        head_path = self.head_configs[head]
        if self.args.configs or not self.base_paths:
            parts = [head_path]
        else:
            if not provides_head(head_path):
                raise ValueError(f"{head_path} is not a head part: it has no model.head")
            parts = [*self.base_paths, head_path]
        return [arg for part in parts for arg in ("--config", str(part))]

    def head_config(self, head: str) -> dict[str, Any]:
        """The complete config of ``head`` before the grid."""
        return self.resolve(self.head_arguments(head), head)

    def higher_is_better(self) -> bool:
        """The direction of the study's primary metric (that of the first head's config)."""
        data = self.head_config(next(iter(self.head_configs))).get("data") or {}
        return primary_metric(data.get("class_path", ""), data.get("init_args"))[1]

    def runs(self) -> list[tuple[RunSpec, dict[str, Any]]]:
        """Every run of the grid with its complete config, in a stable order (head, stride, extra, seed)."""
        out = []
        for head in self.head_configs:
            head_arguments = self.head_arguments(head)
            head_class_path = self.resolve(head_arguments, head)["model"]["head"]["class_path"]
            has_stride = head_accepts(head_class_path, "output_stride")
            strides: list[int | None] = list(self.strides) if (has_stride and self.strides) else [None]
            grid = [(k, vs) for k, vs in self.grid if applies_to(k, head_class_path)]
            sets = [(k, v) for k, v in self.sets if applies_to(k, head_class_path)]
            for stride, texts, budget, seed in itertools.product(
                    strides, itertools.product(*(vs for _, vs in grid)), self.budgets, self.seeds):
                arguments = list(head_arguments)
                if stride is not None:
                    arguments += ["--model.head.init_args.output_stride", str(stride)]
                if seed is not None:
                    arguments += ["--seed_everything", str(seed)]
                if budget is not None:  # the run's seed orders the frames: one seed's budgets are nested
                    arguments += ["--data.init_args.train_budget", budget,
                                  "--data.init_args.budget_seed", str(seed or 0)]
                for (key, _), text in zip(grid, texts):
                    arguments += [f"--{key}", text]
                for key, text in sets:
                    arguments += [f"--{key}", text]
                extra = {key: parse_value(text) for (key, _), text in zip(grid, texts)}
                config = self.resolve(arguments, f"{head} with {' '.join(arguments[len(head_arguments):])}")
                eff_stride = config["model"]["head"]["init_args"].get("output_stride") if has_stride else None
                seed_value = config.get("seed_everything")
                eff_seed = seed_value if isinstance(seed_value, int) and not isinstance(seed_value, bool) else 0
                parts = [head] + ([f"s{eff_stride}"] if eff_stride is not None else [])
                parts += [f"{k.rsplit('.', 1)[-1]}{v}" for k, v in extra.items()]
                parts += ([f"b{budget.replace('%', 'pct')}"] if budget is not None else []) + [f"seed{eff_seed}"]
                spec = RunSpec("-".join(parts), head, short_name(head_class_path), eff_stride, eff_seed, extra, budget)
                out.append((spec, config))
        names = [spec.name for spec, _ in out]
        if len(set(names)) != len(names):
            raise ValueError(f"the grid gives duplicate run names: {sorted(n for n in names if names.count(n) > 1)}")
        return out

    def finalise_config(self, spec: RunSpec, config: dict[str, Any], run_dir: Path) -> dict[str, Any]:
        """Point the run's outputs at ``run_dir`` and label its tracker run (group = study, tags)."""
        config = copy.deepcopy(config)
        config["trainer"]["default_root_dir"] = str(run_dir)
        logger = config["trainer"].get("logger")
        if isinstance(logger, dict) and "class_path" in logger:
            init = logger.setdefault("init_args", {})
            if "save_dir" in init:
                init["save_dir"] = str(run_dir)
            if short_name(logger["class_path"]) == "WandbLogger":
                init["name"] = f"{self.name}/{spec.name}"
                init["group"] = self.name
                stride_tag = f"stride{spec.stride}" if spec.stride is not None else "no-stride"
                budget_tag = [f"budget{spec.budget}"] if spec.budget is not None else []
                init["tags"] = sorted({dataset_tag(config), spec.head, stride_tag, f"seed{spec.seed}", self.name,
                                       *budget_tag})
        return config

    # ---- running ---------------------------------------------------------------------------------------
    def log(self, message: str) -> None:
        line = f"[study {self.name}] {message}"
        print(line, flush=True)
        with open(self.out / "study.log", "a") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")

    def write_definition(self, runs: list[tuple[RunSpec, dict[str, Any]]]) -> None:
        definition = {
            "name": self.name,
            "base_config": [str(p) for p in self.base_paths],
            "heads": {h: str(p) for h, p in self.head_configs.items()},
            "strides": self.strides,
            "seeds": [s for s in self.seeds if s is not None],
            "set": dict(self.sets),
            "grid": {k: [parse_value(v) for v in vs] for k, vs in self.grid},
            "budgets": [b for b in self.budgets if b is not None] + (["100%"] if None in self.budgets and
                                                                     len(self.budgets) > 1 else []),
            "runs": [asdict(spec) for spec, _ in runs],
        }
        write_json_atomic(self.out / "study.json", definition)  # atomic: parallel runners rewrite it

    def launch_options(self) -> LaunchOptions:
        a = self.args
        return LaunchOptions(
            launcher=getattr(a, "launcher", "inprocess"), workers=getattr(a, "workers", 2),
            time_min=getattr(a, "time_min", 24 * 60), partition=getattr(a, "partition", None),
            gpus_per_run=getattr(a, "gpus_per_run", 0), cpus_per_run=getattr(a, "cpus_per_run", 1),
            sbatch=dict(self._split(kv, "--sbatch") for kv in getattr(a, "sbatch", None) or []),
            setup=list(getattr(a, "setup", None) or []), python=getattr(a, "job_python", None),
            poll_s=getattr(a, "poll_s", 10.0))

    def run(self) -> int:
        """Run every run that has no ``result.json`` (at most ``--max-runs``) with the chosen launcher; 0 when all
        succeeded."""
        options = self.launch_options()
        options.check()  # before anything is written: a launcher that cannot work here changes nothing
        runs = self.runs()
        self.out.mkdir(parents=True, exist_ok=True)
        with StudyLock(self.out):
            self.write_definition(runs)
            if self.args.sweep_yaml:
                path = write_sweep(self, runs, Path(self.args.sweep_yaml))
                self.log(f"wrote the wandb sweep {path} ({len(runs)} runs): wandb sweep {path}")
            self.log(f"{len(runs)} runs in {self.out} ({options.launcher})")
            pending = []
            for spec, config in runs:
                run_dir = self.out / spec.name
                if (run_dir / "result.json").is_file():
                    self.log(f"skip {spec.name}: result.json exists")
                    continue
                if self.args.max_runs is not None and len(pending) >= self.args.max_runs:
                    self.log(f"stop: --max-runs {self.args.max_runs} reached")
                    break
                run_dir.mkdir(parents=True, exist_ok=True)
                config_path = run_dir / "study_config.yaml"
                config_path.write_text(yaml.safe_dump(self.finalise_config(spec, config, run_dir), sort_keys=False))
                pending.append(RunJob(asdict(spec), self.name, str(run_dir), str(self.out / "study.log")))
            if options.launcher == "inprocess":
                failed = []
                for job in pending:
                    try:
                        job()
                    except RunFailed as err:
                        failed.append(job.spec["name"])
                        self.log(f"FAILED {job.spec['name']}: {err}")
            else:
                launcher = SubmititLauncher(options, self.out / "jobs", self.log)
                failed = launcher.run([Job(j.spec["name"], Path(j.run_dir), j) for j in pending],
                                      done=lambda job: (job.run_dir / "result.json").is_file())
        self.log(f"done: {len(pending) - len(failed)} of {len(pending)} run(s) finished"
                 + (f", {len(failed)} failed ({', '.join(failed)})" if failed else ""))
        return 1 if failed else 0


def parse_budgets(text: str | None) -> list[str | None]:
    """``--budgets`` → the budget of each run of the axis: ``"10,25,50,100%"`` (a trailing ``%`` makes every value a
    share) → ``["10%", "25%", "50%", None]``; counts ``"10,25"`` → ``["10", "25"]``. 100 % is the full training set
    (None: the run has no budget). No ``--budgets``: ``[None]``."""
    if not text:
        return [None]
    items = [t.strip() for t in text.split(",") if t.strip()]
    share = any(t.endswith("%") for t in items)
    out: list[str | None] = []
    for item in items:
        value = item.rstrip("%")
        budget = f"{value}%" if share else value
        try:
            number, _ = parse_budget(budget)
        except ValueError as err:
            raise ValueError(f"--budgets {text!r}: {err}") from None
        out.append(None if share and math.isclose(number, 1.0) else budget)
    if len(set(out)) != len(out):
        raise ValueError(f"--budgets {text!r} repeats a budget")
    return out


class StudyLock:
    """``with StudyLock(out)``: one study command at a time on a study directory (an exclusive ``flock`` on
    ``<out>/.study.lock``, released when the command ends or dies). Not a scheduler: runs in parallel are the
    launcher's; this only refuses a second command that would start the same runs again."""

    def __init__(self, out: Path) -> None:
        self.path = out / ".study.lock"
        self.file: Any = None

    def __enter__(self) -> StudyLock:
        self.file = open(self.path, "a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.seek(0)
            holder = self.file.read().strip() or "another process"
            self.file.close()
            raise LaunchError(f"another study.py command is running on {self.path.parent} ({holder}): wait for it or "
                              "stop it; to run runs in parallel use --launcher local --workers N (or slurm)") from None
        self.file.truncate(0)
        self.file.write(f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}")
        self.file.flush()
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()  # closing the descriptor releases the lock


@dataclass(frozen=True)
class RunJob:
    """One run, everything it needs as plain data, so that submitit can run it in another process or on a cluster
    node: ``train.py`` (resuming from ``last.ckpt`` when there is one), ``evaluate.py``, then ``result.json``.
    Requeued by submitit on a time-out or pre-emption (``checkpoint``): the run resumes from its ``last.ckpt``.

    In a SLURM job with several tasks (one per GPU) every task runs it: ``train.py`` and ``evaluate.py`` become one
    DDP run through Lightning's ``SLURMEnvironment``, and task 0 alone writes the records."""

    spec: dict[str, Any]
    study: str
    run_dir: str
    log_path: str

    def log(self, message: str) -> None:
        line = f"[study {self.study}] {message}"
        print(line, flush=True)
        with open(self.log_path, "a") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")

    def __call__(self) -> None:
        execute_run(self, task_rank())

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        import submitit

        return submitit.helpers.DelayedSubmission(self)


def task_rank() -> int:
    """This task's rank in a multi-task submitit job (0 outside one)."""
    for var in ("SLURM_PROCID", "SUBMITIT_LOCAL_GLOBALID"):
        if os.environ.get("SUBMITIT_EXECUTOR") and var in os.environ:
            return int(os.environ[var])
    return 0


def execute_run(job: RunJob, rank: int = 0) -> None:
    """Train (or resume), evaluate, and write ``result.json`` (task 0) for one run of a study."""
    name = job.spec["name"]
    run_dir = Path(job.run_dir)
    config_path = run_dir / "study_config.yaml"
    suffix = "" if rank == 0 else f".rank{rank}"
    train_record = run_dir / "train_done.json"
    if train_record.is_file():
        job.log(f"{name}: training already finished, evaluating")
        train = json.loads(train_record.read_text())
    else:
        resume = (run_dir / "checkpoints" / "last.ckpt").is_file()
        cmd = [sys.executable, str(REPO / "train.py"), "--config", str(config_path)] \
            + (["--ckpt_path", "last"] if resume else [])
        if rank == 0:
            job.log(f"{name}: {'resume training from last.ckpt' if resume else 'train'}")
        wall, rss = run_child(cmd, run_dir / f"train{suffix}.log")
        train = {"wall_s": wall, "peak_rss_mb": rss, "resumed": resume}
        if rank == 0:
            write_json_atomic(train_record, train)
    if rank == 0:
        job.log(f"{name}: evaluate")
    metrics_path = run_dir / "metrics.json"
    # --overwrite: the run's folder is the study's; an evaluation interrupted before result.json is redone
    cmd = [sys.executable, str(REPO / "evaluate.py"), "--config", str(run_dir / "config.yaml"),
           "--ckpt_path", str(run_dir / "checkpoints" / "best.ckpt"), "--json", str(metrics_path), "--overwrite"]
    eval_wall, eval_rss = run_child(cmd, run_dir / f"evaluate{suffix}.log")
    if rank != 0:
        return
    profile = read_json(run_dir / "model_profile.json")
    stats = read_json(run_dir / "train_stats.json")
    info = read_json(run_dir / "metric_info.json")  # the metric contract: primary key, direction, columns
    confidence = read_json(run_dir / "confidence.json")  # what the confidence means and how well it does
    calibration = confidence.get("calibration") or {}
    job_record = read_json(run_dir / "job.json")
    result = {
        **job.spec,
        "study": job.study,
        "metrics": json.loads(metrics_path.read_text()),
        "metric_info": info,
        "confidence": {"scores": confidence.get("scores", {}), "columns": confidence.get("columns", []),
                       "mode": confidence.get("mode"), "note": confidence.get("note"),
                       "method": calibration.get("method"), "table": calibration.get("table", {})},
        "params": profile.get("params"),
        "flops": profile.get("flops"),
        "latency_ms": profile.get("latency_ms"),
        "latency_device": profile.get("latency_device"),
        "train_frames": stats.get("train_frames"),
        "train_wall_s": train["wall_s"],
        "train_resumed": train["resumed"],
        "eval_wall_s": eval_wall,
        "peak_rss_mb": max(train["peak_rss_mb"], eval_rss),
        "peak_accelerator_memory_mb": stats.get("peak_accelerator_memory_mb"),
        "job_log": job_record.get("stdout"),
    }
    write_json_atomic(run_dir / "result.json", result)  # last: its presence means the run is complete
    primary = info.get("primary")
    label = next((c["label"] for c in info.get("columns", []) if c["key"] == primary), primary)
    value = result["metrics"].get(primary, float("nan")) if primary else float("nan")
    job.log(f"{name}: {label} {value:.4g}, train {train['wall_s']:.1f} s")


class RunFailed(RuntimeError):
    """A train.py / evaluate.py child exited non-zero."""


def run_child(cmd: list[str], log_path: Path) -> tuple[float, float]:
    """Run ``cmd`` in the study's working folder (so a relative path of its command line — ``--out``, a data
    root — means what it meant there), output to ``log_path`` → (wall seconds, peak RSS MiB of this child alone).
    ``os.wait4`` gives the child's own rusage; ``RUSAGE_CHILDREN`` would be the maximum over every child so far."""
    start = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()  # Ctrl-C on the study stops the child too; its last.ckpt makes the run resumable
            proc.wait()
            raise
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        tail = log_path.read_text().strip().splitlines()[-3:]
        raise RunFailed(f"{Path(cmd[1]).name} {cmd[2]} exited with {proc.returncode} (see {log_path}): " + " | ".join(tail))
    # ru_maxrss is KiB on Linux (bytes on macOS).
    rss_mb = usage.ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)
    return wall, rss_mb


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def write_json_atomic(path: Path, content: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # per process: parallel runners write study.json
    tmp.write_text(json.dumps(content, indent=2))
    os.replace(tmp, path)


# ---- wandb sweep ---------------------------------------------------------------------------------------
def write_sweep(study: Study, runs: list[tuple[RunSpec, dict[str, Any]]], path: Path) -> Path:
    """A wandb grid sweep over the study's runs. Its one parameter is ``config``: one complete config per run
    under ``<out>/sweep/``, because a wandb grid cannot skip strides for heads without one (FC)."""
    sweep_dir = study.out / "sweep"
    sweep_dir.mkdir(parents=True, exist_ok=True)
    configs = []
    for spec, config in runs:
        config_path = sweep_dir / f"{spec.name}.yaml"
        config_path.write_text(yaml.safe_dump(study.finalise_config(spec, config, sweep_dir / spec.name), sort_keys=False))
        # The agent runs train.py from the repository root: paths inside it are given relative to it.
        resolved = config_path.resolve()
        configs.append(str(resolved.relative_to(REPO)) if resolved.is_relative_to(REPO) else str(resolved))
    sweep = {
        "name": study.name,
        "program": "train.py",
        "method": "grid",
        "metric": {"name": "val/score", "goal": "maximize" if study.higher_is_better() else "minimize"},
        "parameters": {"config": {"values": configs}},
        # ${args} expands to --config=<file>: LightningCLI takes it like --config <file>.
        "command": ["${env}", "${interpreter}", "${program}", "${args}"],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(sweep, sort_keys=False))
    return path
