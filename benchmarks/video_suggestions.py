#!/usr/bin/env python
"""The frames worth labelling next, on synthetic video with exact labels: precision of the rankings, and retraining.

The experiment of ``benchmarks/_video.py`` (its layout and models; ``video_smoothing.py data|train|predict`` makes
them).

``precision``: per test clip and model (and ensemble, ``--groups``), precision at N = 20 / 50 of "the frame has a
keypoint more than 2 × the PCK threshold (0.2 × the animal's size) off", for kpreg's scores
(``kpreg.inference.ranking``: calibrated P(wrong), distance from the Kalman track, pose-PCA residual on the start
project's labels, their rank mean, with the diverse pick; ensemble disagreement for ensembles) against DeepLabCut's
three heuristics of ``extract_outlier_frames`` on the same predictions — ``jump`` (a keypoint moved more than ε =
20 px, scaled from 640 × 480 to the clips), ``uncertain`` (a likelihood under 0.01) and ``fitting`` (a SARIMAX(3, 0,
1) fit per keypoint and coordinate, statsmodels) — and the base rate (random frames). DeepLabCut picks N among the
flagged frames (evenly here); with fewer flagged than N, the rest are its most extreme frames by the heuristic's own
score.

``retrain``: N pool frames added with their exact labels (the oracle labeller) to the start project — chosen by
kpreg's rank mean + diverse pick (the model of that seed, on the pool clips), or at random — the same training, per
seed; error on the test clips after retraining, paired suggested − random over clip × seed (Wilcoxon).

    python benchmarks/video_suggestions.py precision --root R --seeds 0 1 2 3 4 5 6 7 8 --groups "0,1,2;3,4,5;6,7,8"
    python benchmarks/video_suggestions.py retrain --root R --n 50 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
from _video import (
    CORRECT,
    POOL_CLIPS,
    SPEC,
    TRAIN_STREAM,
    clips_of,
    fmt_ci,
    load_pred,
    paired_p,
    predict_clips,
    train,
)

from kpreg.data.synthetic_video import write_labelled_frames
from kpreg.formats.deeplabcut import read_project
from kpreg.inference import ranking
from kpreg.inference.smoothing import animal_size, kalman_smooth

NS = (20, 50)
EPS = ranking.DLC_EPSILON * np.hypot(*SPEC.size) / np.hypot(640, 480)  # DeepLabCut's 20 px, scaled to the clips
P_BOUND = ranking.DLC_P_BOUND


def dlc_fitting(xy: np.ndarray, conf: np.ndarray, ar: int = 3, ma: int = 1) -> np.ndarray:
    """(T,) DeepLabCut's ``fitting`` distance (``compute_deviations``): per keypoint and coordinate a SARIMAX(ar, 0, ma)
    fit with likelihoods under p_bound as missing; the mean over keypoints of ‖prediction − in-sample fit‖."""
    import statsmodels.api as sm

    t, k = conf.shape
    dist = np.zeros((t, k))
    for j in range(k):
        fits = []
        for d in range(2):
            y = xy[:, j, d].copy()
            y[conf[:, j] < P_BOUND] = np.nan
            if np.isfinite(y).sum() <= 10:
                fits.append(np.full(t, np.nan))
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    mod = sm.tsa.statespace.SARIMAX(y, order=(ar, 0, ma), simple_differencing=True)
                    res = mod.fit(disp=False)
                except (ValueError, np.linalg.LinAlgError):
                    mod = sm.tsa.statespace.SARIMAX(y, order=(ar, 0, ma), simple_differencing=True,
                                                    enforce_stationarity=False, enforce_invertibility=False)
                    res = mod.fit(disp=False)
            fits.append(res.get_prediction(end=mod.nobs - 1).predicted_mean)
        dist[:, j] = np.hypot(xy[:, j, 0] - fits[0], xy[:, j, 1] - fits[1])
    return np.nanmean(dist, axis=1)


def dlc_pick(flag: np.ndarray, score: np.ndarray, n: int) -> np.ndarray:
    """N of the flagged frames, evenly; with fewer flagged, the rest by the heuristic's own score."""
    flagged = np.flatnonzero(flag)
    if len(flagged) >= n:
        return flagged[np.linspace(0, len(flagged) - 1, n).round().astype(int)]
    taken = set(flagged.tolist())
    rest = [i for i in np.argsort(-score, kind="stable") if i not in taken]
    return np.r_[flagged, np.asarray(rest[: n - len(flagged)], dtype=int)]


def kpreg_scores(xy: np.ndarray, conf: np.ndarray, pca: ranking.PosePCA,
                 variance: np.ndarray | None = None) -> dict[str, np.ndarray]:
    size = animal_size(xy)
    smoothed = kalman_smooth(xy, conf, 0.1).keypoints
    scores = {"P(wrong)": ranking.p_wrong(conf), "distance from the smoothed track": ranking.temporal_jump(
        xy, smoothed, size), "pose-PCA residual": ranking.pca_residual(xy, pca, size)}
    if variance is not None:
        scores["ensemble disagreement"] = ranking.disagreement(variance, size)
    scores["rank mean"] = ranking.combine(scores)
    return scores


def precision(root: Path, models: list[str], groups: list[list[str]], with_fitting: bool) -> list[dict]:
    labels = read_project(root / "project_start")
    pca = ranking.PosePCA(labels.keypoints, labels.labelled)
    rows = []
    units = [(m, [m]) for m in models] + [(f"ensemble {i}", g) for i, g in enumerate(groups)]
    for clip in clips_of(root, models[0]):
        truth = np.load(root / "test" / f"{clip}.npz")
        for name, members in units:
            preds = [load_pred(root, m, clip) for m in members]
            xys, confs = np.stack([p[0] for p in preds]), np.stack([p[1] for p in preds])
            xy, conf = xys.mean(0), confs.mean(0)
            bad = (np.linalg.norm(xy - truth["keypoints"], axis=-1) > 2 * CORRECT * truth["size"][:, None]).any(1)
            scores = kpreg_scores(xy, conf, pca, xys.var(0).mean(-1) if len(members) > 1 else None)
            jump, low = ranking.dlc_jump(xy), ranking.dlc_uncertain(conf)
            fit = dlc_fitting(xy, conf) if with_fitting else None
            for n in NS:
                picks = {k: np.argsort(-v, kind="stable")[:n] for k, v in scores.items()}
                picks["rank mean, diverse pick"] = ranking.pick_diverse(scores["rank mean"], xy, n, animal_size(xy))
                picks["DeepLabCut jump"] = dlc_pick(jump > EPS, jump, n)
                picks["DeepLabCut uncertain"] = dlc_pick(low < P_BOUND, -low, n)
                if fit is not None:
                    picks["DeepLabCut fitting"] = dlc_pick(fit > EPS, np.nan_to_num(fit), n)
                rows += [{"clip": clip, "model": name, "n": n, "method": m, "precision": float(bad[i].mean()),
                          "base_rate": float(bad.mean())} for m, i in picks.items()]
        print(clip, flush=True)
    return rows


def precision_table(rows: list[dict]) -> str:
    by: dict[tuple[int, str], list[dict]] = collections.defaultdict(list)
    for r in rows:
        by[(r["n"], r["method"])].append(r)
    lines = ["| N | score | units | precision | base rate | Wilcoxon p vs the base rate |", "|---|---|---|---|---|---|"]
    for (n, method), rs in sorted(by.items()):
        prec = [r["precision"] for r in rs]
        base = [r["base_rate"] for r in rs]
        lines.append(f"| {n} | {method} | {len(rs)} | {fmt_ci(prec, 3)} | {np.mean(base):.3f} | "
                     f"{paired_p(np.subtract(prec, base)):.1e} |")
    return "\n".join(lines)


def retrain(root: Path, n: int, seeds: list[int], epochs: int) -> str:
    labels = read_project(root / "project_start")
    pca = ranking.PosePCA(labels.keypoints, labels.labelled)
    pool = sorted((root / "pool").glob("*.mp4"))
    tests = sorted((root / "test").glob("*.mp4"))
    for s in seeds:
        start = root / "runs" / f"heatmap_s{s}" / "checkpoints" / "best.ckpt"
        predict_clips(start, pool, root / "preds_pool" / f"heatmap_s{s}")
        predict_clips(start, tests, root / "preds" / f"heatmap_s{s}")
        scores, poses, index = [], [], []
        for c in POOL_CLIPS:
            p = np.load(root / "preds_pool" / f"heatmap_s{s}" / f"s{TRAIN_STREAM}_clip{c:03d}.npz")
            xy, conf = p["keypoints"].astype(float), p["confidence"].astype(float)
            per = kpreg_scores(xy, conf, pca)
            del per["rank mean"]
            scores.append(per)
            poses.append(xy)
            index += [(c, f) for f in range(len(xy))]
        combined = ranking.combine({k: np.concatenate([x[k] for x in scores]) for k in scores[0]})
        all_poses = np.concatenate(poses)
        chosen = {"suggested": ranking.pick_diverse(combined, all_poses, n, animal_size(all_poses), seed=s),
                  "random": np.random.default_rng(1000 + s).choice(len(index), size=n, replace=False)}
        for arm, picks in chosen.items():
            name = f"{arm}_n{n}_s{s}"
            project = root / "projects" / name
            if not project.exists():
                shutil.copytree(root / "project_start", project)
                by_clip: dict[int, list[int]] = collections.defaultdict(list)
                for i in picks:
                    c, f = index[int(i)]
                    by_clip[c].append(f)
                for c, frames in by_clip.items():
                    write_labelled_frames(project, TRAIN_STREAM, c, frames, SPEC)
            ckpt = train(project, root / "runs" / f"{name}", s, epochs)
            predict_clips(ckpt, tests, root / "preds" / name)
    err: dict[tuple[str, int, str], float] = {}
    for arm in ("start", "suggested", "random"):
        for s in seeds:
            model = f"heatmap_s{s}" if arm == "start" else f"{arm}_n{n}_s{s}"
            for clip in clips_of(root, model):
                truth = np.load(root / "test" / f"{clip}.npz")["keypoints"]
                err[(arm, s, clip)] = float(np.linalg.norm(load_pred(root, model, clip)[0] - truth, axis=-1).mean())
    lines = [f"| arm (N = {n}) | units | mean px |", "|---|---|---|"]
    for arm in ("start", "suggested", "random"):
        lines.append(f"| {arm} | {sum(k[0] == arm for k in err)} | {fmt_ci([v for k, v in err.items() if k[0] == arm])} |")
    pairs = [(s, c) for (a, s, c) in err if a == "suggested" and ("random", s, c) in err]
    d = [err[("suggested", s, c)] - err[("random", s, c)] for s, c in pairs]
    lines.append(f"\nsuggested − random: {np.mean(d):+.3f} px over {len(d)} clip × seed pairs, Wilcoxon p "
                 f"{paired_p(d):.2e}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=("precision", "retrain"))
    ap.add_argument("--root", required=True, type=Path)
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    ap.add_argument("--groups", default="", help="ensembles of seeds: '0,1,2;3,4,5'")
    ap.add_argument("--no-fitting", action="store_true", help="leave out DeepLabCut's SARIMAX fitting (statsmodels)")
    ap.add_argument("--n", type=int, default=50, help="retrain: frames added per arm")
    ap.add_argument("--epochs", type=int, default=60)
    args = ap.parse_args()
    if args.step == "precision":
        groups = [[f"heatmap_s{s}" for s in g.split(",")] for g in filter(None, args.groups.split(";"))]
        rows = precision(args.root, [f"heatmap_s{s}" for s in args.seeds], groups, not args.no_fitting)
        (args.root / "precision_rows.json").write_text(json.dumps(rows))
        print(precision_table(rows))
    else:
        print(retrain(args.root, args.n, args.seeds, args.epochs))


if __name__ == "__main__":
    main()
