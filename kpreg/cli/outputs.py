"""Where the commands write, and the one rule for it: results already there are never replaced without
``--overwrite``.

Every command that writes checks its output before it does any work:

* ``train.py``: a run directory that holds checkpoints is continued only from its own checkpoints (``--ckpt_path
  last`` or a file in it); training another model there is refused;
* ``evaluate.py``: a ``--json`` file, or an output folder holding an earlier evaluation, is refused;
* ``predict.py``: an ``--out`` folder holding earlier predictions is refused, and a run directory never takes
  predictions (not even with ``--overwrite``: it holds ``evaluate.py``'s files of the same names);
* ``export.py``: an ``--out`` file that exists is refused;
* ``study.py``: an ``--out`` holding a run of the same name with another config is refused (running the same study
  again resumes it: that is what the command is for).

``--overwrite`` replaces them, and first removes the earlier outputs of the same command (a ``drawn/`` folder of
other frames, a ``calibrated.ckpt`` of an earlier ``--calibrate``, a ``best.ckpt`` of another head), so old and new
never mix. A path is also checked for its kind: a folder where a file is written, or a file where a folder is, is
refused.

Why refuse, rather than write to a new numbered name (``out-1``, ``best-v1.ckpt``): the next command a user types
names the path they chose (``evaluate.py --ckpt_path RUN/checkpoints/best.ckpt``, a script reading
``out/predictions.csv``), and a numbered copy makes it read the earlier results without a word — which is what
Lightning's ``best-v1.ckpt`` did to the documented evaluate command. A refusal costs one flag and loses nothing.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

OVERWRITE_HELP = ("replace results already in the output (by default a command refuses an output that holds "
                  "earlier results); the earlier outputs of this command are removed first")


class OutputError(ValueError):
    """An output path that holds earlier results, or is a file where a folder is needed (or the reverse)."""


def is_run_directory(path: str | Path) -> bool:
    """Whether ``path`` is a training run's folder (``train.py`` writes ``config.yaml`` and ``checkpoints/``)."""
    path = Path(path)
    return (path / "config.yaml").is_file() and (path / "checkpoints").is_dir()


def check_file(path: str | Path, flag: str, overwrite: bool) -> Path:
    """The file ``flag`` names, checked before any work: not a folder, inside a folder (or one that can be made),
    and new unless ``overwrite``."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{flag} {path} is a folder; {flag} names the file to write (e.g. {path / 'out'}"
                          f"{path.suffix or ''})")
    _check_parent(path, flag)
    if path.exists() and not overwrite:
        raise OutputError(f"{flag} {path} exists: choose another name, or pass --overwrite to replace it")
    return path


def check_folder(path: str | Path, flag: str, outputs: Iterable[str], overwrite: bool) -> list[Path]:
    """Check the folder ``flag`` names before any work: not a file, and none of ``outputs`` (the names the command
    writes in it) there unless ``overwrite``. Returns the earlier outputs, for ``remove`` once the work starts."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{flag} {path} is a file; {flag} names the folder to write into")
    _check_parent(path, flag)
    earlier = [path / name for name in dict.fromkeys(outputs) if (path / name).exists()]
    if earlier and not overwrite:
        raise OutputError(f"{flag} {path} holds earlier results ({_names(earlier, path)}): choose another folder, "
                          "or pass --overwrite to replace them")
    return earlier


def check_run_directory(run_dir: str | Path, checkpoint_dirs: Sequence[str | Path], resume: str | None,
                        overwrite: bool) -> list[Path]:
    """``train.py``'s run directory: if it holds checkpoints, training must continue from one of them (``resume``:
    ``--ckpt_path``) unless ``overwrite``. Returns the checkpoints that ``--overwrite`` replaces."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise OutputError(f"--trainer.default_root_dir {run_dir} is a file; it names the run's folder")
    folders = [Path(d) for d in dict.fromkeys(str(d) for d in checkpoint_dirs)]
    earlier = sorted(p for d in folders if d.is_dir() for p in d.glob("*.ckpt"))
    if not earlier or overwrite:
        return earlier
    if resume == "last" or (resume is not None and Path(resume).resolve().parent in {d.resolve() for d in folders}):
        return []  # continuing this run from its own checkpoint
    raise OutputError(
        f"{run_dir} holds a trained run ({_names(earlier, run_dir)}): resume it with --ckpt_path last, train into "
        "another --trainer.default_root_dir, or pass --overwrite to start it over (its checkpoints are removed)")


def remove(paths: Iterable[Path]) -> None:
    """Remove earlier outputs (files and folders) that ``--overwrite`` replaces."""
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def _check_parent(path: Path, flag: str) -> None:
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputError(f"{flag} {path}: {parent} is a file, not a folder")
            return


def _names(paths: Sequence[Path], root: Path, n: int = 4) -> str:
    shown = [str(p.relative_to(root)) + ("/" if p.is_dir() else "") for p in paths[:n]]
    return ", ".join(shown) + (f", … {len(paths) - n} more" if len(paths) > n else "")
