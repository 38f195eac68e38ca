"""Where a study's runs execute: in the study's own process, as local processes, or as SLURM jobs — the last two
through submitit (``submitit.LocalExecutor``, ``submitit.SlurmExecutor``), not a scheduler of kpreg's own.

* ``inprocess`` (the default): one run after the other in the study's process (the study runs them itself).
* ``local``: each run is a submitit local job (its own process group); at most ``workers`` at once.
* ``slurm``: the pending runs are submitted as one SLURM job array (``%workers`` of them at once), with the
  partition, GPUs / CPUs per run, time limit, setup lines and extra ``#SBATCH`` options given.

Re-running the study command re-attaches: every submitted run has ``<run>/job.json`` (launcher, job id, the job's
log files). A run with a ``result.json`` is done and skipped; a run whose job is still queued or running is waited
for; a run whose job ended without a ``result.json`` (failed, killed, cancelled, out of time) is submitted again, and
its training resumes from its ``last.ckpt``. A job that reaches its time limit or is pre-empted is requeued by
submitit (the job is ``Checkpointable``: it resubmits itself and resumes from ``last.ckpt``).

A multi-GPU run (``gpus_per_run > 1``) is one SLURM job with one task per GPU: every task runs the job, and Lightning's
``SLURMEnvironment`` (from the ``SLURM_*`` variables of the task, inherited by ``train.py``) makes them one DDP run.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

LAUNCHERS = ("inprocess", "local", "slurm")
JOB_RECORD = "job.json"


class LaunchError(ValueError):
    """A launcher that cannot work here (e.g. ``slurm`` without ``sbatch``): said before anything is submitted."""


@dataclass
class LaunchOptions:
    """How the runs are launched (``study.py --launcher …`` and its options)."""

    launcher: str = "inprocess"
    workers: int = 2  # local: runs at once; slurm: the job array's parallelism
    time_min: int = 24 * 60  # a run's time limit (minutes)
    partition: str | None = None
    gpus_per_run: int = 0
    cpus_per_run: int = 1
    sbatch: dict[str, str] = field(default_factory=dict)  # extra #SBATCH options, e.g. {"account": "lab", "qos": "low"}
    setup: list[str] = field(default_factory=list)  # shell lines before the job (module load …, source venv)
    python: str | None = None  # the command that runs Python in a job (default: this interpreter)
    poll_s: float = 10.0

    def check(self) -> None:
        if self.launcher not in LAUNCHERS:
            raise LaunchError(f"--launcher {self.launcher!r}: choose one of {', '.join(LAUNCHERS)}")
        if self.workers < 1:
            raise LaunchError(f"--workers {self.workers}: at least 1")
        if self.launcher == "slurm" and shutil.which("sbatch") is None:
            raise LaunchError("--launcher slurm needs SLURM's sbatch, and there is no sbatch on PATH here: run study.py "
                              "on the cluster's login node, or use --launcher local (nothing was submitted)")


@dataclass(frozen=True)
class Job:
    """A run to execute: ``fn()`` (picklable; with ``checkpoint()`` to be requeued) does it all."""

    name: str
    run_dir: Path
    fn: Callable[[], Any]


@dataclass
class JobRecord:
    """``<run>/job.json``: what a later study command needs to find the run's job again."""

    launcher: str
    job_id: str
    folder: str  # submitit's folder of the job (pickles, logs)
    stdout: str
    stderr: str
    submitted: float  # time.time()

    def write(self, run_dir: Path) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        tmp = run_dir / f".{JOB_RECORD}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(asdict(self), indent=2))
        os.replace(tmp, run_dir / JOB_RECORD)

    @classmethod
    def read(cls, run_dir: Path) -> JobRecord | None:
        path = run_dir / JOB_RECORD
        if not path.is_file():
            return None
        try:
            return cls(**json.loads(path.read_text()))
        except (ValueError, TypeError):
            return None  # a record from another version: submit again


def make_executor(options: LaunchOptions, folder: Path) -> Any:
    """The submitit executor of ``options`` writing into ``folder``."""
    import submitit

    folder.mkdir(parents=True, exist_ok=True)
    if options.launcher == "local":
        executor = submitit.LocalExecutor(folder=str(folder), python=options.python)
        executor.update_parameters(timeout_min=options.time_min, gpus_per_node=options.gpus_per_run,
                                   tasks_per_node=max(1, options.gpus_per_run), setup=list(options.setup))
        return executor
    executor = submitit.SlurmExecutor(folder=str(folder), python=options.python)
    params: dict[str, Any] = dict(time=options.time_min, nodes=1, ntasks_per_node=max(1, options.gpus_per_run),
                                  cpus_per_task=options.cpus_per_run, array_parallelism=options.workers,
                                  job_name="kpreg-study", setup=list(options.setup),
                                  additional_parameters=dict(options.sbatch))
    if options.partition:
        params["partition"] = options.partition
    if options.gpus_per_run:
        params["gpus_per_node"] = options.gpus_per_run
    executor.update_parameters(**params)
    return executor


def _local_alive(pid: str) -> bool:
    """Whether the local job controller ``pid`` (started by an earlier study command) still runs: a live process
    whose command line is submitit's (a reused pid is another program; a process that is being started shows its
    command line a moment later, hence the second look)."""
    for attempt in range(3):
        try:
            os.kill(int(pid), 0)
            if b"submitit" in Path(f"/proc/{int(pid)}/cmdline").read_bytes():
                return True
        except (OSError, ValueError):
            return False
        time.sleep(0.1 * (attempt + 1))
    return False


class SubmititLauncher:
    """Runs jobs through a submitit executor and waits for them (``local`` or ``slurm``)."""

    def __init__(self, options: LaunchOptions, folder: Path, log: Callable[[str], None]) -> None:
        self.options = options
        self.folder = folder
        self.log = log
        self.executor = make_executor(options, folder)

    def _alive(self, record: JobRecord, handle: Any | None) -> bool:
        if handle is not None:
            return not handle.done()
        if record.launcher == "local":
            return _local_alive(record.job_id)
        import submitit

        return not submitit.SlurmJob(folder=record.folder, job_id=record.job_id).done()

    def _record(self, job: Job, handle: Any) -> JobRecord:
        record = JobRecord(self.options.launcher, str(handle.job_id), str(self.folder), str(handle.paths.stdout),
                           str(handle.paths.stderr), time.time())
        record.write(job.run_dir)
        return record

    def _submit(self, jobs: Sequence[Job]) -> list[tuple[Job, JobRecord, Any]]:
        if self.options.launcher == "slurm" and len(jobs) > 1:
            with self.executor.batch():  # one job array, array_parallelism at once
                handles = [self.executor.submit(job.fn) for job in jobs]
        else:
            handles = [self.executor.submit(job.fn) for job in jobs]
        out = []
        for job, handle in zip(jobs, handles):
            record = self._record(job, handle)
            self.log(f"{job.name}: submitted as {self.options.launcher} job {record.job_id} (log {record.stdout})")
            out.append((job, record, handle))
        return out

    def run(self, jobs: Sequence[Job], done: Callable[[Job], bool]) -> list[str]:
        """Run every job that is not ``done``, re-attaching to jobs still running; wait for all. Returns the names of
        the runs that ended without being done."""
        pending: list[Job] = []
        waiting: list[tuple[Job, JobRecord, Any]] = []
        for job in jobs:
            if done(job):
                continue
            record = JobRecord.read(job.run_dir)
            if record is not None and record.launcher == self.options.launcher and self._alive(record, None):
                self.log(f"{job.name}: job {record.job_id} is still running: waiting for it (log {record.stdout})")
                waiting.append((job, record, None))
                continue
            if record is not None:
                resume = " (training resumes from last.ckpt)" if (job.run_dir / "checkpoints" / "last.ckpt").is_file() \
                    else ""
                self.log(f"{job.name}: job {record.job_id} ended without a result: submitting it again{resume}")
            pending.append(job)
        failed: list[str] = []
        while pending or waiting:
            free = len(pending) if self.options.launcher == "slurm" else self.options.workers - len(waiting)
            if free > 0 and pending:
                waiting += self._submit(pending[:free])
                pending = pending[free:]
            still = []
            for job, record, handle in waiting:
                if self._alive(record, handle):
                    still.append((job, record, handle))
                elif done(job):
                    self.log(f"{job.name}: job {record.job_id} done")
                else:
                    failed.append(job.name)
                    self.log(f"FAILED {job.name}: job {record.job_id} ended without a result (see {record.stderr}, "
                             f"{job.run_dir / 'train.log'})")
            waiting = still
            if pending or waiting:
                time.sleep(self.options.poll_s)
        return failed
