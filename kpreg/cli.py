"""The command line: ``train.py`` and ``evaluate.py`` are thin wrappers around ``train_main`` and
``evaluate_main``. Configs are LightningCLI YAML files; any key can be overridden with a dotted flag
(``--model.head.init_args.sigma 1.5``). The datamodule's keypoint count, input size and flip pairs are
linked into the model, so a head never has to be told them."""

from __future__ import annotations

import json
import netrc
import os
import pickle
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from rich.console import Console

from kpreg.backbone import BackboneError
from kpreg.callbacks import LastCheckpoint, install_plugins
from kpreg.data.datamodule import KeypointDataModule
from kpreg.module import (
    CheckpointMismatchError,
    KeypointModule,
    NonFiniteLossError,
    check_state_dict_compatible,
)
from kpreg.run_logging import RunLogging, plain

# Errors that are the user's input, not a bug: printed as one line, exit code 2.
USER_ERRORS: tuple[type[BaseException], ...] = (
    BackboneError,
    CheckpointMismatchError,
    FileNotFoundError,
    ValueError,
)


def use_wandb_offline_without_credentials() -> None:
    """wandb must never prompt: with no API key (environment or ~/.netrc) it runs offline."""
    if os.environ.get("WANDB_MODE") or os.environ.get("WANDB_API_KEY"):
        return
    try:
        logged_in = netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        logged_in = False
    if not logged_in:
        os.environ["WANDB_MODE"] = "offline"


class RunDirConfigSaver(SaveConfigCallback):
    """Save the resolved config as ``<trainer.default_root_dir>/config.yaml`` (overwritten on resume),
    the file that ``evaluate.py --config`` takes."""

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if trainer.is_global_zero:
            run_dir = Path(trainer.default_root_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
            self.parser.save(self.config, run_dir / "config.yaml", skip_none=False, overwrite=True,
                             multifile=False)


class KpregCLI(LightningCLI):
    """LightningCLI with kpreg's links, checkpointing defaults and run directory."""

    def __init__(self, *args: Any, evaluate: bool = False, **kwargs: Any) -> None:
        self.evaluate = evaluate
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        for key in ("num_keypoints", "input_size", "flip_pairs"):
            parser.link_arguments(f"data.{key}", f"model.{key}", apply_on="instantiate")
        # best.ckpt: the 'checkpoint' callback; last.ckpt (what --ckpt_path last resumes): 'last_checkpoint',
        # written mid-epoch every N steps, after each validation, at the end and on SIGTERM.
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.add_lightning_class_args(LastCheckpoint, "last_checkpoint")
        # Model profile files always; with a WandbLogger also flat config, PCK curve, example panels.
        parser.add_lightning_class_args(RunLogging, "run_logging")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/score",
                "checkpoint.mode": "max",
                "checkpoint.filename": "best",
                "checkpoint.save_last": False,
                "checkpoint.auto_insert_metric_name": False,
            }
        )
        parser.add_argument("--ckpt_path", type=str | None, default=None,
                            help="checkpoint to resume training from ('last' = the run's last.ckpt), "
                                 "or to evaluate")
        if self.evaluate:
            parser.add_argument("--json", type=str | None, default=None, help="write the metrics here")
            parser.add_argument("--flip", type=bool, default=True, help="flip test (--no-flip disables)")
            parser.add_argument("--predictions_dir", type=str | None, default=None,
                                help="where predictions are written (default: beside --json, or the run dir)")

    def before_instantiate_classes(self) -> None:
        config = self.config
        root = config.trainer.default_root_dir or "runs/default"
        config.trainer.default_root_dir = root
        if config.checkpoint.dirpath is None:
            config.checkpoint.dirpath = str(Path(root) / "checkpoints")
        if config.last_checkpoint.dirpath is None:
            config.last_checkpoint.dirpath = config.checkpoint.dirpath
        if self.evaluate:
            config.trainer.logger = False  # evaluation must not open a new experiment-tracker run
            config.model.flip_test = config.flip
        else:
            use_wandb_offline_without_credentials()

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        install_plugins(self.trainer)
        for callback in self.trainer.callbacks:  # type: ignore[attr-defined]
            if isinstance(callback, RunLogging):
                callback.run_config = plain(self.config.as_dict())


def _make_cli(args: Sequence[str], evaluate: bool) -> KpregCLI:
    return KpregCLI(
        KeypointModule,
        KeypointDataModule,
        subclass_mode_data=True,
        save_config_callback=None if evaluate else RunDirConfigSaver,
        auto_configure_optimizers=False,
        run=False,
        args=list(args),
        evaluate=evaluate,
    )


def _fail(err: BaseException, code: int = 2) -> None:
    """A user error: one clear line and exit code 2 (``KPREG_DEBUG=1`` shows the traceback)."""
    if os.environ.get("KPREG_DEBUG"):
        raise err
    Console(stderr=True).print(f"[bold red]error:[/] {err}", highlight=False)
    sys.exit(code)


def train_main(argv: Sequence[str] | None = None) -> None:
    """``python train.py --config CONFIG [--key value …]``: train, checkpoint best and last."""
    try:
        cli = _make_cli(sys.argv[1:] if argv is None else argv, evaluate=False)
        ckpt_path = cli.config.ckpt_path
        if ckpt_path not in (None, "last", "best") and not Path(ckpt_path).is_file():
            raise FileNotFoundError(f"checkpoint not found: {ckpt_path}")
        # Lightning checkpoints hold only tensors and plain containers: resume with weights_only=True, which
        # never unpickles code. The model's on_load_checkpoint checks tensor names and shapes first.
        cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt_path, weights_only=True)
    except NonFiniteLossError as err:
        _fail(err, code=1)
    except pickle.UnpicklingError as err:
        _fail(ValueError(f"cannot resume from {ckpt_path} with torch.load(weights_only=True): it holds pickled "
                         f"objects, not only tensors and plain containers (from a trusted source, load and "
                         f"re-save it). {str(err).splitlines()[0]}"))
    except USER_ERRORS as err:
        _fail(err)


def load_checkpoint_weights(model: torch.nn.Module, ckpt_path: str) -> None:
    """Load a Lightning checkpoint's weights (tensors only, ``weights_only=True``) with a clear error."""
    if not Path(ckpt_path).is_file():
        raise FileNotFoundError(f"checkpoint not found: {ckpt_path}")
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    state_dict = checkpoint.get("state_dict", checkpoint)
    check_state_dict_compatible(model, state_dict)
    model.load_state_dict(state_dict)


def evaluate_main(argv: Sequence[str] | None = None) -> None:
    """``python evaluate.py --config RUN/config.yaml --ckpt_path CKPT --json OUT.json [--no-flip]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "score":
        from kpreg.score_cli import score_main

        score_main(args[1:])
        return
    args = ["--flip=false" if a == "--no-flip" else a for a in args]
    try:
        cli = _make_cli(args, evaluate=True)
        config = cli.config
        if config.ckpt_path is None:
            raise ValueError("--ckpt_path is required: the checkpoint to evaluate")
        load_checkpoint_weights(cli.model, config.ckpt_path)
        cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
        if not cli.trainer.is_global_zero:
            return  # under DDP the metrics and the gathered predictions are reported once, by rank 0
        metrics = cli.model.test_results
        datamodule: KeypointDataModule = cli.datamodule
        Console().print(datamodule.metric_table(metrics))
        uncertainty = getattr(cli.model, "test_uncertainty_results", {})
        if uncertainty:  # how well confidence / spread rank the errors (kpreg.metrics.uncertainty)
            Console().print("uncertainty: " + ", ".join(f"{k} {v:.4f}" for k, v in uncertainty.items()))
        out_dir = Path(config.predictions_dir or (Path(config.json).parent if config.json else config.trainer.default_root_dir))
        out_dir.mkdir(parents=True, exist_ok=True)
        written = datamodule.write_predictions(out_dir, *cli.model.test_predictions())
        curve = cli.model.metric_curves.get("test")
        if curve is not None:  # a separate file: the metrics JSON stays a flat dict of numbers
            (out_dir / "pck_curve.json").write_text(json.dumps(curve))
            written.append(out_dir / "pck_curve.json")
        if config.json:
            Path(config.json).parent.mkdir(parents=True, exist_ok=True)
            Path(config.json).write_text(json.dumps(metrics, indent=2))
            written.append(Path(config.json))
            if uncertainty:  # beside, not inside: the --json file holds exactly the dataset metric's keys
                side = Path(config.json).with_name(Path(config.json).stem + "_uncertainty.json")
                side.write_text(json.dumps(uncertainty, indent=2))
                written.append(side)
        for path in written:
            Console().print(f"wrote {path}")
    except USER_ERRORS as err:
        _fail(err)
