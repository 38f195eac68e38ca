"""The synthetic video experiment shared by ``benchmarks/video_*.py``: its data, models, predictions and statistics.

Layout under one root folder (``--root``)::

    project_start/   a DeepLabCut project: 12 clips of stream 100, every 20th frame labelled (180 frames)
    pool/            12 unlabelled clips of stream 100 (s100_clip012 … 023): where suggestions come from
    test/            10 clips of stream 200 with exact labels on every frame (<clip>.mp4, .csv, .npz)
    runs/<name>/     training runs (train.py)
    preds/<name>/    <clip>.npz: keypoints (T, K, 2), confidence (T, K) of a model on every test clip, read from the
                     MP4 as a user would (``kpreg.load`` + ``Predictor.stream``)

    python benchmarks/video_smoothing.py data --root R           # the project and the clips
    python benchmarks/video_smoothing.py train --root R --seeds 0 1 2
    python benchmarks/video_smoothing.py predict --root R --seeds 0 1 2

Clips: ``VideoSpec(joint_markers=True)`` (96 × 96, 300 frames, 30 fps). Models: heatmap, the DeepLabCut config with
``from_scratch_cpu.yaml`` at 64 × 64 on whole frames, 60 epochs (about 100 s of one core each).

Statistics: 95 % percentile-bootstrap CIs over the clip × model units (scipy), paired Wilcoxon signed-rank tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.stats import bootstrap, wilcoxon

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run from anywhere without installing kpreg

from kpreg.data.synthetic_video import VideoSpec, write_clip, write_labelled_frames  # noqa: E402

SPEC = VideoSpec(joint_markers=True)
TRAIN_STREAM, TEST_STREAM = 100, 200
START_CLIPS = range(12)
POOL_CLIPS = range(12, 24)
TEST_CLIPS = range(10)
LABEL_EVERY = 20
CORRECT = 0.1  # a keypoint is correct within 0.1 × the animal's size (kpreg's DeepLabCut evaluation)


def make_data(root: Path, spec: VideoSpec = SPEC, start: Sequence[int] = START_CLIPS, pool: Sequence[int] = POOL_CLIPS,
              test: Sequence[int] = TEST_CLIPS) -> None:
    """The start project, the pool clips and the test clips (each skipped where it exists)."""
    for c in start:
        write_labelled_frames(root / "project_start", TRAIN_STREAM, c, list(range(0, spec.frames, LABEL_EVERY)), spec)
    for folder, stream, clips in (("pool", TRAIN_STREAM, pool), ("test", TEST_STREAM, test)):
        for c in clips:
            if not (root / folder / f"s{stream}_clip{c:03d}.npz").exists():
                write_clip(root / folder, stream, c, spec)


def train(project: Path, run_dir: Path, seed: int, epochs: int = 60, input_size: int = 64) -> Path:
    """A heatmap model on ``project`` (whole frames) → its best checkpoint; kept where it exists."""
    best = run_dir / "checkpoints" / "best.ckpt"
    if best.exists():
        return best
    env = {**os.environ, "WANDB_MODE": "offline"}
    cmd = [sys.executable, "train.py", "--config", "configs/data/deeplabcut.yaml",
           "--config", "configs/protocols/from_scratch_cpu.yaml", "--config", "configs/heads/heatmap.yaml",
           "--data.init_args.project", str(project), "--data.init_args.input_size", f"[{input_size}, {input_size}]",
           "--data.init_args.box_source", "image", "--trainer.max_epochs", str(epochs),
           "--data.init_args.num_workers", "0", "--data.init_args.persistent_workers", "false",
           "--seed_everything", str(seed), "--trainer.enable_progress_bar", "false",
           "--trainer.default_root_dir", str(run_dir)]
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir.with_suffix(".log"), "w") as log:
        subprocess.run(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, check=True)
    return best


def predict_clips(ckpt: Path, videos: Sequence[Path], out: Path) -> None:
    """Every frame of each video → ``out/<video stem>.npz`` (keypoints, confidence, seconds); kept where it exists."""
    import kpreg
    from kpreg.inference.sources import open_source

    out.mkdir(parents=True, exist_ok=True)
    predictor = kpreg.load(ckpt, device="cpu", batch_size=64)
    for video in videos:
        dest = out / f"{video.stem}.npz"
        if dest.exists():
            continue
        kp, conf = [], []
        for _frame, pred in predictor.stream(open_source(video)):
            kp.append(pred.keypoints[0])
            conf.append(pred.confidence[0])
        np.savez(dest, keypoints=np.stack(kp), confidence=np.stack(conf))


def load_pred(root: Path, model: str, clip: str) -> tuple[np.ndarray, np.ndarray]:
    """(T, K, 2) keypoints and (T, K) confidence of ``preds/<model>/<clip>.npz`` as float64."""
    p = np.load(root / "preds" / model / f"{clip}.npz")
    return p["keypoints"].astype(np.float64), p["confidence"].astype(np.float64)


def clips_of(root: Path, model: str) -> list[str]:
    return sorted(p.stem for p in (root / "preds" / model).glob("*.npz"))


def ci(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean and its 95 % percentile-bootstrap interval."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) < 3 or np.allclose(v, v[0]):
        return float(v.mean()), float(v.mean()), float(v.mean())
    res = bootstrap((v,), np.mean, confidence_level=0.95, n_resamples=2000, random_state=0, method="percentile")
    return float(v.mean()), float(res.confidence_interval.low), float(res.confidence_interval.high)


def paired_p(differences: Sequence[float]) -> float:
    """Wilcoxon signed-rank p of paired differences (1 where all are zero)."""
    d = np.asarray(differences, dtype=np.float64)
    return float(wilcoxon(d).pvalue) if np.any(d != 0) else 1.0


def fmt_ci(values: Sequence[float], digits: int = 2) -> str:
    mu, lo, hi = ci(values)
    return f"{mu:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"
