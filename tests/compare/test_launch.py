"""Launching runs through submitit (kpreg.compare.launch): local jobs at most `workers` at once, failures reported,
re-attaching to a job still running; the SLURM array it submits (submitit's own mocked SLURM); no sbatch."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
from pathlib import Path

import pytest

from kpreg.compare.launch import Job, JobRecord, LaunchError, LaunchOptions, SubmititLauncher


def _write(path: Path) -> functools.partial:
    return functools.partial(Path.write_text, path, "done")


def test_slurm_without_sbatch_is_one_message(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LaunchError, match="--launcher slurm needs SLURM's sbatch.*nothing was submitted"):
        LaunchOptions(launcher="slurm").check()
    with pytest.raises(LaunchError, match="choose one of inprocess, local, slurm"):
        LaunchOptions(launcher="pbs").check()


@pytest.mark.slow
def test_local_jobs_run_as_processes_and_failures_are_reported(tmp_path: Path) -> None:
    lines: list[str] = []
    launcher = SubmititLauncher(LaunchOptions(launcher="local", workers=2, poll_s=0.2), tmp_path / "jobs",
                                lines.append)
    jobs = [Job(f"run{i}", tmp_path / f"run{i}", _write(tmp_path / f"run{i}" / "result.json")) for i in range(3)]
    for job in jobs:
        job.run_dir.mkdir()
    jobs.append(Job("bad", tmp_path / "bad", functools.partial(os._exit, 3)))
    failed = launcher.run(jobs, done=lambda j: (j.run_dir / "result.json").is_file())
    assert failed == ["bad"]
    assert all((tmp_path / f"run{i}" / "result.json").read_text() == "done" for i in range(3))
    record = JobRecord.read(tmp_path / "run0")
    assert record is not None and record.launcher == "local" and Path(record.stdout).parent == tmp_path / "jobs"
    assert int(record.job_id) != os.getpid()  # another process
    assert any(line.startswith("FAILED bad: job") for line in lines)
    # repeated: the finished runs are done, the failed one is submitted again
    lines.clear()
    assert launcher.run(jobs, done=lambda j: (j.run_dir / "result.json").is_file()) == ["bad"]
    assert any("bad: job" in line and "ended without a result: submitting it again" in line for line in lines)


@pytest.mark.slow
def test_a_second_command_waits_for_a_running_job(tmp_path: Path) -> None:
    options = LaunchOptions(launcher="local", workers=1, poll_s=0.2)
    first = SubmititLauncher(options, tmp_path / "jobs", lambda _: None)
    result = tmp_path / "slow" / "result.json"
    job = Job("slow", tmp_path / "slow", functools.partial(subprocess.run, ["sh", "-c", f"sleep 2; echo ok > {result}"],
                                                           check=True))
    first._submit([job])  # as if the first command had been stopped while its job runs
    lines: list[str] = []
    failed = SubmititLauncher(options, tmp_path / "jobs", lines.append).run([job], done=lambda j: result.is_file())
    assert failed == [] and result.read_text() == "ok\n"
    assert "still running: waiting for it" in lines[0] and lines[-1] == f"slow: job {JobRecord.read(job.run_dir).job_id} done"
    assert len(list((tmp_path / "jobs").glob("*_submitted.pkl"))) == 1  # not submitted twice


def test_slurm_array_with_submitits_mocked_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from submitit.core import submission
    from submitit.slurm.test_slurm import mocked_slurm

    options = LaunchOptions(launcher="slurm", workers=3, partition="gpu", gpus_per_run=2, cpus_per_run=8,
                            time_min=90, sbatch={"account": "lab"}, setup=["module load cuda"], poll_s=0.01)
    jobs = [Job(f"run{i}", tmp_path / f"run{i}", _write(tmp_path / f"run{i}" / "result.json")) for i in range(4)]
    for job in jobs:
        job.run_dir.mkdir()
    with mocked_slurm() as mock:
        launcher = SubmititLauncher(options, tmp_path / "jobs", lambda _: None)
        submitted = launcher._submit(jobs)
        script = next((tmp_path / "jobs").glob("*_submission.sh")).read_text()
        print(script)  # the sbatch file the study submits
        for flag in ("#SBATCH --array=0-3%3", "#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=2",
                     "#SBATCH --ntasks-per-node=2", "#SBATCH --cpus-per-task=8", "#SBATCH --time=90",
                     "#SBATCH --account=lab", "module load cuda", "srun"):
            assert flag in script, flag
        records = [record for _, record, _ in submitted]
        assert [r.job_id for r in records] == [f"12_{i}" for i in range(4)]
        handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)}
        try:
            for _job, record, _ in submitted:  # each array task runs on "the cluster" (here, in this process)
                with mock.job_context(record.job_id):
                    submission.process_job(Path(record.folder))
        finally:  # a job installs submitit's signal handlers in the process that runs it
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
        mock.set_job_state("12", "COMPLETED", array=4)
        lines: list[str] = []
        failed = SubmititLauncher(options, tmp_path / "jobs", lines.append).run(
            jobs, done=lambda j: (j.run_dir / "result.json").is_file())
    assert failed == [] and all((j.run_dir / "result.json").is_file() for j in jobs)
