"""What kpreg's commands leave out of their output: library messages that a user learns to ignore.

Where a library has a switch for a message, kpreg uses it: ``trainer.enable_model_summary`` (Lightning's table,
whose FLOPs column reads 0; ``RunLogging`` prints one line with measured numbers instead), the level of
Lightning's seed logger, wandb's ``quiet`` setting (``WANDB_QUIET``: no version banner, history table or
footer), and the logging interval bounded by the epoch's length (``RunLogging``). Where a library has none,
exactly that message is filtered, and the reason is written beside it. A user's own ``WANDB_QUIET=false``
brings wandb's output back.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# Lightning formats its own warnings when imported: import it first so that kpreg's format below wraps Lightning's.
from pytorch_lightning.loggers import WandbLogger

KPREG_DIR = Path(__file__).resolve().parents[1]

# We always pass the arguments explicitly (evaluate.py rewrites --no-flip), which LightningCLI warns about on every
# command although nothing is wrong.
warnings.filterwarnings("ignore", message=r"LightningCLI's args parameter is intended")
# Lightning's suggestion to use more loader workers assumes idle cores; kpreg's CPU protocols choose the number.
warnings.filterwarnings("ignore", message=r".*does not have many workers which may be a bottleneck.*")
# A deprecation inside Lightning's own code (its pytree helper against newer torch): nothing a user can change.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")


class _DropLightningLines(logging.Filter):
    """Lines of Lightning's that say nothing to a kpreg user: its advertisement of a cloud logger (kpreg's runs
    already log to wandb or files) and the TPU line of every run on a machine without one."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.getMessage())
        return not ("litlogger" in message or message.startswith("TPU available: False"))


for _name in ("pytorch_lightning", "pytorch_lightning.utilities.rank_zero", "lightning.pytorch"):
    logging.getLogger(_name).addFilter(_DropLightningLines())
# "Seed set to N": the seed is in the run's config.yaml (and its wandb config).
logging.getLogger("lightning_fabric.utilities.seed").setLevel(logging.WARNING)

_library_format_warning = warnings.formatwarning


def _format_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                    line: str | None = None) -> str:
    """kpreg's own warnings (``UserWarning`` from kpreg's code) speak to the user: the message, without the path and
    the source line that raised it (as Lightning formats its own); other warnings keep their format."""
    if issubclass(category, UserWarning) and Path(filename).resolve().is_relative_to(KPREG_DIR):
        return f"warning: {message}\n"
    return _library_format_warning(message, category, filename, lineno, line)


warnings.formatwarning = _format_warning


def quiet_wandb(loggers: Iterable[Any]) -> None:
    """Prepare the trainer's wandb loggers, before their run starts, to say only what a user needs."""
    for logger in loggers:
        if not isinstance(logger, WandbLogger):
            continue
        os.environ.setdefault("WANDB_QUIET", "true")
        # Lightning passes anonymous=None to wandb.init, which wandb warns about on every run since it dropped
        # anonymous mode. No switch leaves it out: kpreg removes the unset value from the arguments.
        init_args = getattr(logger, "_wandb_init", None)
        if isinstance(init_args, dict) and init_args.get("anonymous") is None:
            init_args.pop("anonymous", None)
        # wandb looks for the git repository from its directory, and warns when that does not exist yet.
        if logger.save_dir:
            Path(logger.save_dir).mkdir(parents=True, exist_ok=True)


def finish_wandb(loggers: Iterable[Any]) -> None:
    """Finish the wandb run of a training that ended: wandb then says goodbye by its own settings (nothing when
    quiet and offline, the run's link online) instead of its service printing a coloured footer at exit."""
    if any(isinstance(logger, WandbLogger) for logger in loggers):
        import wandb

        wandb.finish()
