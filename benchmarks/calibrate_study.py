"""Calibrate and score every finished run of a study: ``evaluate.py --calibrate`` on each run's best checkpoint,
its results written as a study of their own, so that ``study.py report`` tables and draws them.

For checkpoints trained before they carried a calibration, or by another datamodule on the same frames: ``--data``
replaces the runs' data section (e.g. the COCO-format files of ``benchmarks/openfield_to_coco.py``, split like the
DeepLabCut datamodule's ``val_every``); the model section, the head and the flip test stay the run's own. The map
is chosen and fitted on the evaluated split and every reported score is out of fold (see docs/calibration.md).

    python benchmarks/calibrate_study.py --study /work/runs/own/openfield \\
        --data /work/runs/conf/openfield/openfield.yaml --out /work/runs/conf/openfield/calibrated
    python study.py report --out /work/runs/conf/openfield/calibrated
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def calibrate_run(run: Path, data: dict | None, out: Path) -> Path | None:
    """Evaluate one finished run with ``--calibrate``; returns its result.json, or None when it failed."""
    result = json.loads((run / "result.json").read_text())
    config = yaml.safe_load((run / "config.yaml").read_text())
    if data is not None:
        config["data"] = data
    config.setdefault("trainer", {})["logger"] = False
    config["trainer"]["default_root_dir"] = str(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    cmd = [sys.executable, "evaluate.py", "--config", str(out / "config.yaml"), "--ckpt_path",
           str(run / "checkpoints" / "best.ckpt"), "--json", str(out / "metrics.json"), "--calibrate",
           "--trainer.enable_progress_bar", "false", "--overwrite"]  # the folder is this benchmark's: a rerun replaces it
    with open(out / "evaluate.log", "w") as log:
        code = subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT).returncode
    if code != 0:
        print(f"FAILED {run.name}: see {out / 'evaluate.log'}")
        return None
    confidence = json.loads((out / "confidence.json").read_text())
    calibration = confidence.get("calibration") or {}
    result.update({
        "metrics": json.loads((out / "metrics.json").read_text()),
        "metric_info": json.loads((out / "metric_info.json").read_text()),
        "confidence": {"scores": confidence["scores"], "columns": confidence["columns"], "mode": confidence["mode"],
                       "note": confidence["note"], "method": calibration.get("method"),
                       "table": calibration.get("table", {})},
        "calibrated_from": str(run),
    })
    (out / "result.json").write_text(json.dumps(result, indent=2))
    return out / "result.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", required=True, help="the study directory (runs with result.json and best.ckpt)")
    parser.add_argument("--data", help="a config part whose data section replaces the runs' (optional)")
    parser.add_argument("--out", required=True, help="where the calibrated evaluations go (one folder per run)")
    args = parser.parse_args()
    data = yaml.safe_load(Path(args.data).read_text())["data"] if args.data else None
    study, out = Path(args.study), Path(args.out)
    runs = sorted(p.parent for p in study.glob("*/result.json") if (p.parent / "checkpoints" / "best.ckpt").is_file())
    if (study / "study.json").is_file():
        definition = json.loads((study / "study.json").read_text())
        (out / "study.json").parent.mkdir(parents=True, exist_ok=True)
        (out / "study.json").write_text(json.dumps({**definition, "name": definition.get("name", "") + " (calibrated)"}))
    for run in runs:
        if (out / run.name / "result.json").is_file():
            print(f"skip {run.name}: done")
            continue
        done = calibrate_run(run, data, out / run.name)
        if done is not None:
            scores = json.loads(done.read_text())["confidence"]["scores"]
            print(f"{run.name}: ECE {scores.get('ECE_raw', float('nan')):.3f} → {scores.get('ECE', float('nan')):.3f}")


if __name__ == "__main__":
    main()
