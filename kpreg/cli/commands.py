"""``train.py`` and ``evaluate.py``: thin entry points around ``train_main`` and ``evaluate_main``.

Errors that are the user's input (an unknown key, a missing file, a checkpoint that does not fit) print one line
and exit with code 2 (``kpreg.cli.errors``); ``KPREG_DEBUG=1`` shows the traceback. Outputs are checked before any
work and never replaced without ``--overwrite`` (``kpreg.cli.outputs``).
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning_fabric.utilities.exceptions import MisconfigurationException
from rich.console import Console
from rich.table import Table

from kpreg.cli.errors import USER_ERRORS, fail, suggest, user_message
from kpreg.cli.lightning import make_cli, parser_options
from kpreg.cli.outputs import check_file, check_folder, check_run_directory, remove
from kpreg.cli.quiet import finish_wandb
from kpreg.data.datamodule import KeypointDataModule
from kpreg.metrics.calibration import ConfidenceScores, reliability_diagram
from kpreg.metrics.calibration.evaluation import CalibrationOutcome
from kpreg.metrics.contract import KeypointMetrics, format_value, per_keypoint_table
from kpreg.metrics.oks import OKSAP
from kpreg.metrics.table import PER_SAMPLE_FILE, EvaluationTable
from kpreg.network import check_flip_test_sound
from kpreg.training.checkpoint import (
    check_checkpoint_identity,
    check_state_dict_compatible,
    read_checkpoint,
)
from kpreg.training.evaluation import EvaluationResult
from kpreg.training.module import KeypointModule, NonFiniteLossError
from kpreg.validation import check_number

# Every name the evaluation writes into its output folder (besides --json and the dataset's own predictions files,
# which are written again under the same names): an earlier evaluation is recognised by them, and --overwrite
# removes them first, so that e.g. a calibrated.ckpt of an earlier --calibrate never sits beside a new evaluation.
EVALUATION_OUTPUTS = ("predictions.json", PER_SAMPLE_FILE, "pck_curve.json", "confidence.json",
                      "confidence_points.npz", "reliability.png", "metric_info.json", "calibration.json",
                      "calibrated.ckpt")


def _fail(err: BaseException, code: int = 2) -> None:
    """A user error: one clear line and exit code 2 (``kpreg.cli.errors.fail``)."""
    fail(err, code)


def check_flip_test(model: KeypointModule, datamodule: KeypointDataModule, setting: str = "model.flip_test") -> None:
    """Refuse a flip test that cannot be right (``kpreg.network.check_flip_test_sound``: the one rule, which
    predict.py, the Python API and export.py apply to a checkpoint's record)."""
    if model.flip_test:
        check_flip_test_sound(datamodule.flip_pairs, datamodule.flip_augmentation, setting)


def check_training_length(trainer_config: Any) -> None:
    """Refuse a run that would end without a training step: ``max_epochs`` 0 (or below -1, Lightning's "no
    limit"), ``max_steps`` 0 (or below -1)."""
    for key in ("max_epochs", "max_steps"):
        value = trainer_config.get(key)
        if value is not None and value != -1:
            check_number(value, f"--trainer.{key}", minimum=1, integer=True)


def train_main(argv: Sequence[str] | None = None) -> None:
    """``python train.py --config DATA --config HEAD [--key value …]``: train, checkpoint best and last."""
    ckpt_path = None
    try:
        cli = make_cli(sys.argv[1:] if argv is None else argv, evaluate=False)
        config = cli.config
        ckpt_path = config.ckpt_path
        check_training_length(config.trainer)
        check_flip_test(cli.model, cli.datamodule)
        resume = resume_path(ckpt_path, config.last_checkpoint.dirpath)
        earlier = check_run_directory(config.trainer.default_root_dir,
                                      [config.checkpoint.dirpath, config.last_checkpoint.dirpath], ckpt_path,
                                      config.overwrite)
        if resume is not None and not config.allow_checkpoint_mismatch:
            # The checkpoint must be this model (head, keypoints, input size) before Lightning restores anything.
            check_checkpoint_identity(read_checkpoint(resume), cli.model.describe(), resume)
        if cli.trainer.is_global_zero:
            remove(earlier)  # --overwrite: the earlier run's checkpoints go (no best-v1.ckpt beside them)
        # Lightning checkpoints hold only tensors and plain containers: resume with weights_only=True, which
        # never unpickles code. The model's on_load_checkpoint checks tensor names and shapes first.
        cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt_path, weights_only=True)
        finish_wandb(cli.trainer.loggers)
    except NonFiniteLossError as err:
        fail(err, code=1)
    except pickle.UnpicklingError as err:
        fail(ValueError(f"cannot resume from {ckpt_path} with torch.load(weights_only=True): it holds pickled "
                        f"objects, not only tensors and plain containers (from a trusted source, load and "
                        f"re-save it). {str(err).splitlines()[0]}"))
    except argparse.ArgumentError as err:
        fail_command_line(err, "train.py", evaluate=False)
    except (*USER_ERRORS, MisconfigurationException) as err:  # Lightning's: a trainer setting it cannot take
        fail(err)


def fail_command_line(err: argparse.ArgumentError, command: str, evaluate: bool) -> None:
    """A command line the parser cannot read, as one line with the nearest option for a typo."""
    message = user_message(err)
    if "arguments:" in message:
        message = suggest(message, parser_options(evaluate))
    if 'key "model.head"' in message:
        import kpreg.heads

        message += f" (kpreg's heads: {', '.join(f'kpreg.heads.{name}' for name in kpreg.heads.__all__)})"
    fail(f"{message} (python {command} --help lists the options)")


def resume_path(ckpt_path: str | None, last_dir: str | None) -> str | None:
    """The file ``--ckpt_path`` resumes from, where it can be known before training: an explicit path (which must
    exist) or ``last`` (the run's last.ckpt, which must exist: resuming a run that has none would start it from
    scratch without a word); None otherwise."""
    if ckpt_path is None or ckpt_path == "best":
        return None
    if ckpt_path == "last":
        last = Path(last_dir or "") / "last.ckpt"
        if last_dir is None or not last.is_file():
            raise FileNotFoundError(f"--ckpt_path last: there is no {last} to resume from (leave --ckpt_path out to "
                                    "start the run)")
        return str(last)
    if not Path(ckpt_path).is_file():
        raise FileNotFoundError(f"checkpoint not found: {ckpt_path}")
    return ckpt_path


def load_checkpoint_weights(model: KeypointModule, ckpt_path: str, allow_mismatch: bool = False) -> dict[str, Any]:
    """Load a checkpoint's weights (``weights_only=True``) after checking that it is this model (head, keypoints,
    input size) and that its tensors fit; returns the checkpoint."""
    checkpoint = read_checkpoint(ckpt_path)
    if not allow_mismatch:
        check_checkpoint_identity(checkpoint, model.describe(), ckpt_path)
    state_dict = checkpoint.get("state_dict", checkpoint)
    check_state_dict_compatible(model, state_dict)
    model.load_state_dict(state_dict)
    model.load_calibration(checkpoint)
    return checkpoint


def evaluate_main(argv: Sequence[str] | None = None) -> None:
    """``python evaluate.py --config RUN/config.yaml --ckpt_path CKPT --json OUT.json [--flip true|false]
    [--calibrate]``.

    Every setting, the flip test included, comes from the run's config; ``--flip`` / ``--no-flip`` override it.
    ``--calibrate`` fits the confidence calibration on the evaluated split (cross-fitted: the reported scores are
    out of fold) and writes ``calibration.json`` and ``calibrated.ckpt`` (the checkpoint with that map) beside
    the outputs. ``--ci`` adds every summary metric's 95 % interval (a bootstrap over the evaluated images)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "score":
        from kpreg.cli.score import score_main

        score_main(args[1:])
        return
    try:
        cli = make_cli(args, evaluate=True)
        config = cli.config
        if config.ckpt_path is None:
            raise ValueError("--ckpt_path is required: the checkpoint to evaluate")
        earlier = check_evaluation_outputs(config)
        check_flip_test(cli.model, cli.datamodule, "--flip" if config.flip else "model.flip_test")
        checkpoint = load_checkpoint_weights(cli.model, config.ckpt_path, config.allow_checkpoint_mismatch)
        if config.calibrate and not cli.model.calibration.enabled:
            raise ValueError("--calibrate with model.calibration_method none: choose a method (auto, platt, …)")
        cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
        result = cli.model.results["test"]
        if config.calibrate:  # a new map, fitted on the evaluated split (every process: they hold the same table)
            result = cli.model.evaluate_table(result.table, fit=True, split="evaluated")
        if not cli.trainer.is_global_zero:
            return  # under DDP the metrics and the gathered predictions are reported once, by rank 0
        remove(earlier)  # --overwrite: the earlier evaluation's files go, so that old and new never mix
        report(cli, config, result, checkpoint if config.calibrate else None)
    except argparse.ArgumentError as err:
        fail_command_line(err, "evaluate.py", evaluate=True)
    except (*USER_ERRORS, MisconfigurationException) as err:  # Lightning's: a trainer setting it cannot take
        fail(err)


def output_folder(config: Any) -> Path:
    """Where the evaluation writes: ``--predictions_dir``, else beside ``--json``, else the run directory."""
    return Path(config.predictions_dir or (Path(config.json).parent if config.json else config.trainer.default_root_dir))


def check_evaluation_outputs(config: Any) -> list[Path]:
    """``--json`` and the output folder, before any work (``kpreg.cli.outputs``); returns the earlier outputs that
    ``--overwrite`` replaces."""
    earlier = []
    if config.json:
        json_path = check_file(config.json, "--json", config.overwrite)
        side = json_path.with_name(json_path.stem + "_uncertainty.json")
        earlier += [p for p in (json_path, side) if p.exists()]
    flag = "--predictions_dir" if config.predictions_dir else "the output folder"
    earlier += check_folder(output_folder(config), flag, EVALUATION_OUTPUTS, config.overwrite)
    return earlier


def report(cli: Any, config: Any, result: EvaluationResult, calibrated_checkpoint: dict[str, Any] | None = None) -> None:
    """Print the metric tables and write the metrics JSON, the predictions, the per-sample table and the files
    beside them; ``calibrated_checkpoint``: the evaluated checkpoint, to be written again with the map just fitted."""
    model: KeypointModule = cli.model
    metrics = result.metrics
    metric = model.evaluator.metrics
    console = Console()
    flip = "flip test" if model.flip_test else "no flip test"
    console.print(metric.table(metrics, title=f"{metric.title} ({flip})"))
    names = model.keypoint_names
    if len(names) <= 40:  # a per-keypoint table is useful for animals, hands, faces; not for 133 whole-body points
        console.print(per_keypoint_table(metrics, names, metric.keypoint_columns))
    if result.uncertainty:  # how well confidence / spread rank the errors (kpreg.metrics.uncertainty)
        console.print("uncertainty: " + ", ".join(f"{k} {v:.4f}" for k, v in result.uncertainty.items()))
    out_dir = output_folder(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    datamodule: KeypointDataModule = cli.datamodule
    table = result.table
    written = datamodule.write_predictions(out_dir, table.index, table.coords, result.confidence.float())
    written.append(with_instance_oks(table, metric, result.confidence).save(
        out_dir / PER_SAMPLE_FILE, names, result.confidence, correct_threshold=model.evaluator.correct_threshold,
        scale=model.evaluator.spec.scale, flip_test=bool(model.flip_test), checkpoint=str(config.ckpt_path)))
    if result.curve is not None:  # a separate file: the metrics JSON stays a flat dict of numbers
        (out_dir / "pck_curve.json").write_text(json.dumps(result.curve))
        written.append(out_dir / "pck_curve.json")
    written += report_confidence(console, result.calibration, out_dir, calibrated_checkpoint)
    info = {**metric.describe(), "flip_test": bool(model.flip_test), "checkpoint": str(config.ckpt_path)}
    (out_dir / "metric_info.json").write_text(json.dumps(info, indent=2))
    written.append(out_dir / "metric_info.json")
    if config.json:
        Path(config.json).parent.mkdir(parents=True, exist_ok=True)
        Path(config.json).write_text(json.dumps(metrics, indent=2))
        written.append(Path(config.json))
        if result.uncertainty:  # beside, not inside: the --json file holds exactly the dataset metrics' keys
            side = Path(config.json).with_name(Path(config.json).stem + "_uncertainty.json")
            side.write_text(json.dumps(result.uncertainty, indent=2))
            written.append(side)
    if config.ci:
        written += report_intervals(console, out_dir / PER_SAMPLE_FILE, metric, config)
    for path in written:
        console.print(f"wrote {path}")


def with_instance_oks(table: EvaluationTable, metric: KeypointMetrics, confidence: torch.Tensor) -> EvaluationTable:
    """The table with each sample's OKS against its own ground-truth instance and its instance score as extras
    (``oks``, ``instance_score``), where the dataset has OKS AP and each image one instance: what resamples AP."""
    oks_metric = next((m for m in metric.metrics if isinstance(m, OKSAP)), None)
    if oks_metric is None:
        return table
    box = table.extra.get("box_score")
    own = oks_metric.own_instances(table.coords.numpy(), confidence.double().cpu().numpy(), table.groups.numpy(),
                                   None if box is None else box.double().numpy())
    if own is None:
        return table
    extra = {**table.extra, "oks": torch.from_numpy(own[0]), "instance_score": torch.from_numpy(own[1])}
    return replace(table, extra=extra)


def report_intervals(console: Console, per_sample: Path, metric: KeypointMetrics, config: Any) -> list[Path]:
    """``--ci``: every summary metric of the evaluated split with its 95 % interval, a bootstrap over its images
    (``kpreg.compare.statistics``); printed and written to ``<json>_ci.json`` (or ``ci.json``)."""
    from kpreg.compare.per_sample import load_run
    from kpreg.compare.statistics import Bootstrap

    run = load_run(str(config.ckpt_path), per_sample)
    boot = Bootstrap(n_resamples=int(config.ci_resamples))
    rows = []
    for column in metric.columns:
        if column.key in run.statistics:
            rows.append((column, boot.interval([run.statistics[column.key]])))
    console.print(f"95 % intervals: a bootstrap over the {run.n_images} evaluated images (BCa, {boot.n_resamples} "
                  "resamples); one run: they cover the test sample, not training noise", soft_wrap=True)
    table = Table(box=None, header_style="bold underline")
    for name in ("metric", "value", "95 % CI"):
        table.add_column(name, justify="left" if name == "metric" else "right")
    for column, interval in rows:
        low, high = format_value(interval.low, column.digits), format_value(interval.high, column.digits)
        table.add_row(column.header, format_value(interval.estimate, column.digits), f"[{low}, {high}]")
    console.print(table)
    path = (Path(config.json).with_name(Path(config.json).stem + "_ci.json") if config.json
            else per_sample.with_name("ci.json"))
    path.write_text(json.dumps({
        "level": boot.level, "resamples": boot.n_resamples, "images": run.n_images, "method": "images (BCa)",
        "note": "one run: the interval covers the test sample (other frames of the same source), not training noise",
        "intervals": {c.key: {"estimate": i.estimate, "low": i.low, "high": i.high} for c, i in rows}}, indent=2))
    return [path]


def report_confidence(console: Console, outcome: CalibrationOutcome, out_dir: Path,
                      checkpoint: dict[str, Any] | None) -> list[Path]:
    """Print what the confidences mean and how well they do; write ``confidence.json`` (the scores, their columns,
    the note, the map's record), ``confidence_points.npz`` (raw and calibrated confidence and correctness of every
    labelled keypoint), ``reliability.png`` (before / after) and, for a fit (``checkpoint`` given),
    ``calibration.json`` and ``calibrated.ckpt``."""
    console.print(f"confidence: {outcome.note}")
    console.print(ConfidenceScores.table(outcome.scores, title="confidence (labelled keypoints)"))
    record = outcome.record
    info = {"mode": outcome.mode, "note": outcome.note, "scores": outcome.scores,
            "columns": [asdict(c) for c in ConfidenceScores.columns],
            "calibration": None if record is None else record.to_dict()}
    written = [out_dir / "confidence.json", out_dir / "confidence_points.npz"]
    written[0].write_text(json.dumps(info, indent=2))
    points = outcome.points()
    np.savez_compressed(written[1], **{k: v for k, v in points.items() if v is not None})
    panels = {"raw score (clamped to [0, 1])": (outcome.raw.clamp(0.0, 1.0), outcome.correct)}
    if outcome.calibrated is not None:
        label = "calibrated, out of fold" if outcome.mode in ("fitted", "cross-fitted") else "calibrated"
        panels[label] = (outcome.calibrated, outcome.correct)
    if len(outcome.correct):
        written.append(reliability_diagram(panels, out_dir / "reliability.png", columns=2,
                                           title=f"correct: {outcome.definition}"))
    if checkpoint is not None and record is not None and outcome.mode == "fitted":
        (out_dir / "calibration.json").write_text(json.dumps(record.to_dict(), indent=2))
        checkpoint = dict(checkpoint)
        checkpoint["kpreg"] = {**(checkpoint.get("kpreg") or {}), "calibration": record.to_dict()}
        torch.save(checkpoint, out_dir / "calibrated.ckpt")
        written += [out_dir / "calibration.json", out_dir / "calibrated.ckpt"]
    return written

