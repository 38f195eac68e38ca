"""The study's comparison in wandb: one summary run in the study's group with the verdict table (intervals, paired
tests, P(best)) and every configuration's intervals as ``wandb.Table``s, beside the study's training runs (grouped by
the study name, with head / stride / seed / budget as config columns: ``kpreg.training.run_logging``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml


def study_wandb_settings(out: Path, configs: Sequence[Any]) -> dict[str, Any] | None:
    """The wandb project (and entity) the study's runs logged to, from a run's config; None when they did not use
    wandb."""
    for c in configs:
        for r in c.runs:
            path = out / r["name"] / "study_config.yaml"
            if not path.is_file():
                continue
            logger = ((yaml.safe_load(path.read_text()) or {}).get("trainer") or {}).get("logger")
            if isinstance(logger, dict) and str(logger.get("class_path", "")).endswith("WandbLogger"):
                init = logger.get("init_args") or {}
                return {"project": init.get("project") or "kpreg", "entity": init.get("entity")}
            return None
    return None


def _number(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def log_study_summary(out: Path, name: str, configs: Sequence[Any], compared: Any, contract: Any) -> str | None:
    """Log ``<name>/summary`` (group ``name``, job type ``study-summary``) with ``study/verdicts`` and
    ``study/intervals`` tables; returns the run's directory, or None when the study's runs did not use wandb."""
    settings = study_wandb_settings(out, configs)
    if settings is None:
        return None
    import wandb

    primary = contract.column(contract.primary)
    verdicts = wandb.Table(columns=["budget", "configuration", "seeds", primary.header, "low", "high", "difference",
                                    "difference low", "difference high", "p", "p (Holm)", "P(best)", "verdict"])
    for budget, rows in compared.verdicts.items():
        for r in rows:
            d = r.difference
            verdicts.add_data(budget or "all", r.label, r.seeds, _number(r.estimate.estimate), _number(r.estimate.low),
                              _number(r.estimate.high), None if d is None else _number(d.estimate),
                              None if d is None else _number(d.low), None if d is None else _number(d.high),
                              r.p, r.p_holm, r.p_best, r.verdict)
    intervals = wandb.Table(columns=["configuration", "metric", "estimate", "low", "high", "method"])
    for config, by_key in compared.intervals.items():
        for key, interval in by_key.items():
            intervals.add_data(config, contract.column(key).header, _number(interval.estimate), _number(interval.low),
                               _number(interval.high), interval.method)
    run = wandb.init(project=settings["project"], entity=settings["entity"], group=name, name=f"{name}/summary",
                     job_type="study-summary", dir=str(out), config={"study": name, "primary": contract.primary},
                     reinit="finish_previous")
    run.log({"study/verdicts": verdicts, "study/intervals": intervals})
    directory = run.dir
    run.finish()
    return directory
