#!/usr/bin/env python
"""Smoothing on synthetic video with exact labels: mean / 95th-percentile error, jitter, the fastest 10 % — and time.

The experiment of ``benchmarks/_video.py`` (its layout and models). Per test clip and model (units: clip × model):

* raw, the moving median (5 and 9 frames), kpreg's Kalman smoother (R from the calibrated confidence; gates 0 and
  0.1) and the same with a constant R (confidence ignored);
* ``--groups 0,1,2;3,4,5``: ensembles of those seeds — the mean, + Kalman with and without the ensemble variance as
  extra observation noise;
* ``--candidates``: the libraries measured before writing kpreg's smoother, where installed — pykalman (the same
  model, one series at a time), simdkalman (one R per series: unconfident frames are gaps), ``movement``'s rolling
  median and Savitzky–Golay. (Lightning Pose's ``ensemble-kalman-smoother`` needs jax and opencv-contrib-python, which
  replaces the opencv-python-headless kpreg uses; it was measured in a separate environment, docs/video.md.)

Jitter: the mean frame-to-frame acceleration ‖x_{t+1} − 2 x_t + x_{t−1}‖ px/frame²; "fastest 10 %": keypoint-frames
whose true speed is in the top decile (a smoother that lags a fast limb is worse there). Δ: paired against raw
(Wilcoxon over the units); CIs: bootstrap over the units. Times are seconds per clip on whatever the machine is doing:
compare them within one run.

    python benchmarks/video_smoothing.py data --root R
    python benchmarks/video_smoothing.py train --root R --seeds 0 1 2 3 4 5 6 7 8
    python benchmarks/video_smoothing.py predict --root R --seeds 0 1 2 3 4 5 6 7 8
    python benchmarks/video_smoothing.py evaluate --root R --seeds 0 1 2 3 4 5 6 7 8 --groups "0,1,2;3,4,5;6,7,8"
"""

from __future__ import annotations

import argparse
import collections
import json
import time
from pathlib import Path

import numpy as np
from _video import (
    clips_of,
    fmt_ci,
    load_pred,
    make_data,
    paired_p,
    predict_clips,
    train,
)

from kpreg.inference.smoothing import animal_size, kalman_smooth, median_smooth, observation_variance

GATE = 0.1


def metrics(xy: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Error, its 95th percentile, jitter and the error on the fastest 10 % of keypoint-frames; (T, K, 2) each."""
    err = np.linalg.norm(xy - truth, axis=-1)  # (T, K)
    accel = np.linalg.norm(xy[2:] - 2 * xy[1:-1] + xy[:-2], axis=-1)  # (T-2, K)
    speed = np.linalg.norm(np.diff(truth, axis=0), axis=-1)  # (T-1, K) true px/frame
    speed = np.r_[speed[:1], speed]  # (T, K)
    fast = speed >= np.quantile(speed, 0.9)
    return {"mean": float(np.nanmean(err)), "p95": float(np.nanquantile(err, 0.95)),
            "jitter": float(np.nanmean(accel)), "fast10": float(np.nanmean(err[fast]))}


def timed(fn, *args, **kwargs) -> tuple[np.ndarray, float]:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out.keypoints, time.perf_counter() - start


def single(xy: np.ndarray, conf: np.ndarray) -> dict[str, tuple[np.ndarray, float]]:
    out = {"raw": (xy, 0.0)}
    for w in (5, 9):
        out[f"median {w}"] = timed(median_smooth, xy, conf, w, GATE)
    out["Kalman, R from the confidence"] = timed(kalman_smooth, xy, conf, GATE)
    out["Kalman, gate 0"] = timed(kalman_smooth, xy, conf, 0.0)
    out["Kalman, constant R"] = timed(kalman_smooth, xy, np.ones_like(conf), 0.0)
    return out


def candidates(xy: np.ndarray, conf: np.ndarray) -> dict[str, tuple[np.ndarray, float]]:
    """The libraries, on the model kpreg's Kalman fits (its q and σ_out), where each is installed."""
    from kpreg.inference.filtering import confident
    from kpreg.inference.smoothing import _fill_gaps, _process_cov

    fit = kalman_smooth(xy, conf, GATE)
    q, sig = fit.process_noise, fit.outlier_sigma
    t, k = conf.shape
    observed = confident(conf, GATE, xy)
    size = animal_size(xy)
    r = np.stack([observation_variance(conf[:, j:j + 1], size, outlier_sigma=float(sig[j]))[:, 0]
                  for j in range(k)], 1)  # (T, K)
    f = np.array([[1.0, 1.0], [0.0, 1.0]])
    out: dict[str, tuple[np.ndarray, float]] = {}
    try:
        from pykalman import KalmanFilter
    except ImportError:
        KalmanFilter = None  # noqa: N806
    if KalmanFilter is not None:
        start, res = time.perf_counter(), np.full_like(xy, np.nan)
        for j in range(k):
            for d in range(2):
                y = np.ma.masked_invalid(np.where(observed[:, j], xy[:, j, d], np.nan))
                first = float(y.compressed()[0]) if y.count() else 0.0
                kf = KalmanFilter(transition_matrices=f, observation_matrices=np.array([[1.0, 0.0]]),
                                  transition_covariance=_process_cov(np.array([q[j]]))[0],
                                  observation_covariance=r[:, j].reshape(t, 1, 1),
                                  initial_state_mean=np.array([first, 0.0]),
                                  initial_state_covariance=np.eye(2) * (0.5 * size) ** 2)
                res[:, j, d] = kf.smooth(y)[0][:, 0]
        out["pykalman, the same model"] = (res, time.perf_counter() - start)
    try:
        import simdkalman
    except ImportError:
        simdkalman = None
    if simdkalman is not None:
        start, res = time.perf_counter(), np.full_like(xy, np.nan)
        for j in range(k):
            noise = float(np.median(r[observed[:, j], j])) if observed[:, j].any() else 1.0
            skf = simdkalman.KalmanFilter(state_transition=f, process_noise=_process_cov(np.array([q[j]]))[0],
                                          observation_model=np.array([[1.0, 0.0]]), observation_noise=noise)
            data = np.where(observed[:, j, None], xy[:, j], np.nan).T  # (2, T)
            first = np.nan_to_num(data[:, np.argmax(np.isfinite(data[0]))])
            sm = skf.smooth(data, initial_value=np.stack([first, np.zeros(2)], -1)[..., None],
                            initial_covariance=np.eye(2) * (0.5 * size) ** 2)
            res[:, j] = sm.states.mean[..., 0].T
        out["simdkalman, one R per series"] = (res, time.perf_counter() - start)
    try:
        from movement.filtering import (
            filter_by_confidence,
            interpolate_over_time,
            rolling_filter,
            savgol_filter,
        )
        from movement.io import load_poses
    except ImportError:
        load_poses = None
    if load_poses is not None:
        start = time.perf_counter()
        ds = load_poses.from_numpy(position_array=xy.transpose(0, 2, 1)[..., None], confidence_array=conf[..., None],
                                   fps=30)
        pos = filter_by_confidence(ds.position, ds.confidence, threshold=GATE)
        med = interpolate_over_time(rolling_filter(pos, 5, statistic="median"), max_gap=None)
        out["movement, median 5"] = (med.values[..., 0].transpose(0, 2, 1), time.perf_counter() - start)
        start = time.perf_counter()
        sg = savgol_filter(interpolate_over_time(pos, max_gap=None), 7, polyorder=2, mode="nearest")
        out["movement, Savitzky-Golay 7"] = (sg.values[..., 0].transpose(0, 2, 1), time.perf_counter() - start)
    for name, (arr, sec) in list(out.items()):
        if np.isnan(arr).any():  # an unobserved stretch at an end: held at the nearest value, as kpreg's smoothers do
            out[name] = (_fill_gaps(arr.reshape(t, -1)).reshape(arr.shape), sec)
    return out


def ensemble(xys: np.ndarray, confs: np.ndarray) -> dict[str, tuple[np.ndarray, float]]:
    """Members' (M, T, K, 2) / (M, T, K) → the ensemble's tracks."""
    mean_xy, mean_conf = xys.mean(0), confs.mean(0)
    variance = xys.var(0).mean(-1)  # (T, K) per coordinate
    return {"ensemble mean": (mean_xy, 0.0),
            "ensemble + Kalman": timed(kalman_smooth, mean_xy, mean_conf, GATE),
            "ensemble + Kalman, + its variance": timed(kalman_smooth, mean_xy, mean_conf, GATE,
                                                       ensemble_variance=variance)}


def evaluate(root: Path, models: list[str], groups: list[list[str]], with_candidates: bool) -> list[dict]:
    rows = []
    for clip in clips_of(root, models[0]):
        truth = np.load(root / "test" / f"{clip}.npz")["keypoints"]
        for model in models:
            xy, conf = load_pred(root, model, clip)
            results = single(xy, conf) | (candidates(xy, conf) if with_candidates else {})
            rows += [{"clip": clip, "model": model, "method": m, "seconds": s, **metrics(a, truth)}
                     for m, (a, s) in results.items()]
        for g, members in enumerate(groups):
            preds = [load_pred(root, m, clip) for m in members]
            results = ensemble(np.stack([p[0] for p in preds]), np.stack([p[1] for p in preds]))
            rows += [{"clip": clip, "model": f"ensemble {g}", "method": m, "seconds": s, **metrics(a, truth)}
                     for m, (a, s) in results.items()]
        print(clip, flush=True)
    return rows


def table(rows: list[dict]) -> str:
    by: dict[str, dict[tuple[str, str], dict]] = collections.defaultdict(dict)
    for r in rows:
        by[r["method"]][(r["model"], r["clip"])] = r
    raw, ens = by["raw"], by.get("ensemble mean", {})
    lines = ["| track | units | mean px | p95 px | jitter px/frame² | fastest 10 % px | Δ mean | Wilcoxon p | s / clip |",
             "|---|---|---|---|---|---|---|---|---|"]
    for method, units in by.items():
        keys = sorted(units)
        base = ens if method.startswith("ensemble +") else raw
        paired = [k for k in keys if k in base and base is not units]
        delta = pv = ""
        if paired:
            d = [units[k]["mean"] - base[k]["mean"] for k in paired]
            ref = float(np.mean([base[k]["mean"] for k in paired]))
            delta = f"{100 * np.mean(d) / ref:+.1f} % vs {'the ensemble' if base is ens else 'raw'}"
            pv = f"{paired_p(d):.1e}"
        cols = [fmt_ci([units[k][m] for k in keys]) for m in ("mean", "p95", "jitter", "fast10")]
        sec = np.mean([units[k]["seconds"] for k in keys])
        lines.append(f"| {method} | {len(keys)} | " + " | ".join(cols) + f" | {delta} | {pv} | {sec:.3f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=("data", "train", "predict", "evaluate"))
    ap.add_argument("--root", required=True, type=Path)
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    ap.add_argument("--groups", default="", help="ensembles of seeds: '0,1,2;3,4,5'")
    ap.add_argument("--candidates", action="store_true", help="also pykalman, simdkalman, movement where installed")
    ap.add_argument("--epochs", type=int, default=60)
    args = ap.parse_args()
    root: Path = args.root
    if args.step == "data":
        make_data(root)
    elif args.step == "train":
        for s in args.seeds:
            train(root / "project_start", root / "runs" / f"heatmap_s{s}", s, args.epochs)
    elif args.step == "predict":
        for s in args.seeds:
            predict_clips(root / "runs" / f"heatmap_s{s}" / "checkpoints" / "best.ckpt",
                          sorted((root / "test").glob("*.mp4")), root / "preds" / f"heatmap_s{s}")
    else:
        groups = [[f"heatmap_s{s}" for s in g.split(",")] for g in filter(None, args.groups.split(";"))]
        rows = evaluate(root, [f"heatmap_s{s}" for s in args.seeds], groups, args.candidates)
        (root / "smoothing_rows.json").write_text(json.dumps(rows))
        print(table(rows))


if __name__ == "__main__":
    main()
