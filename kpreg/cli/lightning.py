"""kpreg's LightningCLI: links, defaults and composable configs.

Configs are LightningCLI YAML files given with one or more ``--config`` flags, merged in order (jsonargparse):
a data part (``configs/data/*.yaml``), optionally a protocol part (``configs/protocols/*.yaml``: backbone,
schedule, epochs, input size) and a head part (``configs/heads/*.yaml``: ``model.head`` only). Any key can be
overridden with a dotted flag (``--model.head.init_args.sigma 1.5``). The datamodule's keypoints (count, names,
skeleton, flip pairs, OKS sigmas) and input size are linked into the model, so a head is never told them. Where a
config leaves them open, the run directory is ``runs/<dataset>/<head>[-s<stride>]`` and the logger is wandb
(offline without credentials), named after the run.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import Namespace
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from pytorch_lightning.plugins.io import CheckpointIO
from pytorch_lightning.plugins.layer_sync import LayerSync

from kpreg.classpath import ClassPathError, import_class_path, short_name
from kpreg.cli.quiet import quiet_wandb
from kpreg.data.datamodule import KeypointDataModule
from kpreg.progress import progress_mode
from kpreg.training.callbacks import AtomicCheckpointIO, LastCheckpoint, TimmSyncBatchNorm
from kpreg.training.module import KeypointModule
from kpreg.training.primary import primary_metric
from kpreg.training.progress import LogLineProgress
from kpreg.training.run_logging import RunLogging, flat_run_config, plain

LINKED_FROM_DATA = ("num_keypoints", "input_size", "flip_pairs", "keypoint_names", "skeleton", "sigmas")


def use_wandb_offline_without_credentials() -> None:
    """wandb must never prompt: with no API key (environment or ~/.netrc) it runs offline."""
    import netrc

    if os.environ.get("WANDB_MODE") or os.environ.get("WANDB_API_KEY"):
        return
    try:
        logged_in = netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        logged_in = False
    if not logged_in:
        os.environ["WANDB_MODE"] = "offline"


class RunDirConfigSaver(SaveConfigCallback):
    """The run's resolved config: saved as ``<trainer.default_root_dir>/config.yaml`` (overwritten on resume, the
    file that ``evaluate.py --config`` takes), recorded in every checkpoint (``checkpoint["kpreg"]["config"]``) and
    given to wandb as flat config columns."""

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        # --overwrite is this command's permission, not part of the run: a later command reading config.yaml must
        # not inherit it (nor --ckpt_path, which names this command's resume point).
        self.config = self.config.clone()
        self.config.overwrite = False
        if trainer.is_global_zero:
            run_dir = Path(trainer.default_root_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
            self.parser.save(self.config, run_dir / "config.yaml", skip_unset=False, overwrite=True,
                             multifile=False)
            self.save_config(trainer, pl_module, stage)

    def save_config(self, trainer: Any, pl_module: Any, stage: str) -> None:
        logger = RunLogging.wandb_logger(trainer)
        if logger is None:
            return
        config = plain(self.config.as_dict())
        flat = flat_run_config(config)
        h, w = pl_module.input_size
        flat.update({"input_size": f"{h}x{w}", "num_keypoints": pl_module.num_keypoints, "cli": config})
        logger.experiment.config.update(flat, allow_val_change=True)  # allow_val_change: a resumed run sets them again

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        record = checkpoint.setdefault("kpreg", {})
        record["config"] = plain(self.config.as_dict())
        # Whether training flipped images: with the flip pairs, what decides if a flip test is sound
        # (kpreg.network.check_flip_test_sound) where only the checkpoint is at hand (predict.py, export.py).
        datamodule = getattr(trainer, "datamodule", None)
        if datamodule is not None:
            record["flip_augmentation"] = bool(datamodule.flip_augmentation)


def dataset_tag(data_class_path: Any) -> str:
    """``kpreg.data.mpii.MPIIDataModule`` → ``mpii``."""
    name = short_name(data_class_path)
    for suffix in ("PoseDataModule", "DataModule"):
        if name.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    return name.lower() or "data"


def head_tag(head_config: Any) -> str:
    """The head's short ``name`` (``HeatmapHead.name`` = ``heatmap``), with ``-s<stride>`` when it has one."""
    class_path = head_config.get("class_path") if hasattr(head_config, "get") else None
    init_args = (head_config.get("init_args") if hasattr(head_config, "get") else None) or {}
    name = short_name(class_path).lower()
    try:
        name = getattr(import_class_path(class_path), "name", "") or name
    except ClassPathError:
        pass
    stride = init_args.get("output_stride") if hasattr(init_args, "get") else None
    return f"{name}-s{stride}" if stride is not None else name


class KpregCLI(LightningCLI):
    """LightningCLI with kpreg's links, checkpointing defaults, run directory, logger and progress display."""

    def __init__(self, *args: Any, evaluate: bool = False, **kwargs: Any) -> None:
        self.evaluate = evaluate
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        for key in LINKED_FROM_DATA:
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
                "checkpoint.mode": "max",  # replaced by the primary metric's direction (before_instantiate_classes)
                "checkpoint.filename": "best",
                "checkpoint.save_last": False,
                "checkpoint.auto_insert_metric_name": False,
                "trainer.logger": {"class_path": "pytorch_lightning.loggers.WandbLogger",
                                   "init_args": {"project": "kpreg"}},
            }
        )
        parser.add_argument("--ckpt_path", type=str | None, default=None,
                            help="checkpoint to resume training from ('last' = the run's last.ckpt), "
                                 "or to evaluate")
        parser.add_argument("--allow_checkpoint_mismatch", type=bool, default=False,
                            help="use a checkpoint whose head, keypoints or input size differ from the config's "
                                 "(the tensors must still fit)")
        parser.add_argument("--overwrite", type=bool, nargs="?", const=True, default=False,
                            help="train.py: start over in a run directory that holds checkpoints (they are removed); "
                                 "evaluate.py: replace an earlier evaluation's files (kpreg.cli.outputs)")
        if self.evaluate:
            parser.add_argument("--json", type=str | None, default=None, help="write the metrics here")
            parser.add_argument("--predictions_dir", type=str | None, default=None,
                                help="where predictions are written (default: beside --json, or the run dir)")
            parser.add_argument("--flip", type=bool | None, nargs="?", const=True, default=None,
                                help="flip test on / off (default: the run's model.flip_test)")
            parser.add_argument("--no-flip", dest="flip", action="store_const", const=False, help="--flip false")
            parser.add_argument("--calibrate", type=bool, nargs="?", const=True, default=False,
                                help="fit a new confidence calibration on the evaluated split (calibration.json, "
                                     "calibrated.ckpt)")
            parser.add_argument("--ci", type=bool, nargs="?", const=True, default=False,
                                help="print every summary metric with its 95 %% interval (bootstrap over the evaluated "
                                     "images) and write <json>_ci.json")
            parser.add_argument("--ci_resamples", type=int, default=2000, help="bootstrap resamples of --ci")

    def before_instantiate_classes(self) -> None:
        config = self.config
        tag = f"{dataset_tag(config.data.class_path)}/{head_tag(config.model.head)}"
        root = config.trainer.default_root_dir or str(Path("runs") / tag)
        config.trainer.default_root_dir = root
        if config.checkpoint.dirpath is None:
            config.checkpoint.dirpath = str(Path(root) / "checkpoints")
        if config.last_checkpoint.dirpath is None:
            config.last_checkpoint.dirpath = config.checkpoint.dirpath
        if config.checkpoint.monitor == "val/score":  # val/score is the primary metric: follow its direction
            _, higher = primary_metric(config.data.class_path, config.data.init_args)
            config.checkpoint.mode = "max" if higher else "min"
        if self.evaluate:
            config.trainer.logger = False  # evaluation must not open a new experiment-tracker run
            if config.flip is not None:  # an explicit --flip / --no-flip beats the run's config
                config.model.flip_test = config.flip
            return
        use_wandb_offline_without_credentials()
        logger = config.trainer.logger
        if hasattr(logger, "get") and str(logger.get("class_path", "")).endswith("WandbLogger"):
            init = logger.init_args
            defaults = {"save_dir": root, "name": tag.replace("/", "-"), "group": dataset_tag(config.data.class_path),
                        "tags": sorted(set(tag.split("/")))}
            for key, value in defaults.items():
                if init.get(key) in (None, ".") :
                    init[key] = value

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        trainer_config = self.config_init.get("trainer") or {}
        plugins = trainer_config.get("plugins") or []
        plugins = list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        # Public plugin API: kpreg's atomic checkpoint writer, and timm's SyncBatchNorm converter where sync_batchnorm
        # is asked for (it keeps the activation of timm's fused BatchNormAct2d, which torch's converter drops).
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins.append(AtomicCheckpointIO())
        if trainer_config.get("sync_batchnorm") and not any(isinstance(p, LayerSync) for p in plugins):
            plugins.append(TimmSyncBatchNorm())
        bar = progress_display() if trainer_config.get("enable_progress_bar") is not False else None
        if bar is not None:
            kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), bar]
        trainer = super().instantiate_trainer(plugins=plugins, **kwargs)
        quiet_wandb(trainer.loggers)
        return trainer


def progress_display() -> Any:
    """Plain progress lines when standard output is not a terminal (log files, SLURM, CI); ``None`` keeps
    Lightning's bar (``kpreg.progress``: how the display is chosen)."""
    return LogLineProgress() if progress_mode(sys.stdout) == "lines" else None


def check_config_files(args: Sequence[str]) -> None:
    """Every ``--config`` file of a command line that exists must be YAML: the parser's own message names no file
    (``in "<unicode string>", line 2``), so a syntax error is reported here with the file, line and column. A missing
    file is left to the parser, whose message names it."""
    args = list(args)
    for flag, value in zip(args, args[1:] + [""]):
        name, _, inline = flag.partition("=")
        if name not in ("--config", "-c"):
            continue
        path = Path(inline or value)
        if not path.is_file():
            continue
        try:
            with open(path) as f:
                yaml.safe_load(f)
        except yaml.YAMLError as err:  # its message names the file, line and column of the problem
            where = " ".join(line.strip() for line in str(err).splitlines())
            raise ValueError(f"--config {path}: not valid YAML: {where}") from None


def make_cli(args: Sequence[str], evaluate: bool, cli_class: type[KpregCLI] = KpregCLI) -> KpregCLI:
    check_config_files(args)
    return cli_class(
        KeypointModule,
        KeypointDataModule,
        subclass_mode_data=True,
        save_config_callback=None if evaluate else RunDirConfigSaver,
        auto_configure_optimizers=False,
        run=False,
        args=list(args),
        evaluate=evaluate,
        # A bad command line raises (the entry point prints it as one line, kpreg.cli.errors) instead of printing the
        # whole usage page; options are spelled out, so a typo is never taken for another option.
        parser_kwargs={"exit_on_error": False, "allow_abbrev": False},
        trainer_defaults={"enable_progress_bar": os.environ.get("KPREG_PROGRESS") != "none",
                          "enable_model_summary": False},
    )


class _ParserOnly(KpregCLI):
    """``KpregCLI`` that builds its parser and stops there: nothing is parsed, seeded or instantiated."""

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        self.config = Namespace(seed_everything=False)

    def before_instantiate_classes(self) -> None:
        pass

    def instantiate_classes(self) -> None:
        pass


def parser_options(evaluate: bool) -> list[str]:
    """Every option of ``train.py``'s (``evaluate``: ``evaluate.py``'s) parser, e.g. to suggest one for a typo."""
    parser = make_cli([], evaluate=evaluate, cli_class=_ParserOnly).parser
    return [o for action in parser._actions for o in action.option_strings]


def train_parser() -> LightningArgumentParser:
    """``train.py``'s parser. ``parse_args([...])`` resolves a command line (``--config`` parts merged in order,
    then ``--key value`` overrides) to the config ``train.py`` would run, and ``dump`` writes it, without building
    a model, a dataset or a trainer."""
    parser = make_cli([], evaluate=False, cli_class=_ParserOnly).parser
    parser.exit_on_error = False  # a bad command line raises ArgumentError for the caller to report
    return parser
