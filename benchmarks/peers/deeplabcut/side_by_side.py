"""kpreg and DeepLabCut on the same held-out frames: scores, a paired test, and one picture (kpreg's venv).

Reads two tools' predictions of the held-out frames (DeepLabCut tables: kpreg's ``evaluate.py`` writes
``predictions.csv``, ``run.py evaluate`` writes DeepLabCut's), scores both with kpreg's pixel metrics on kpreg's
validation frames (``score.py``), tests the paired difference, and draws both tools' keypoints and the ground
truth on the same frames.

Paired test: Wilcoxon signed-rank (``scipy.stats.wilcoxon``, two-sided) on the per-frame mean error (one value
per held-out frame and tool: the frames are the independent units, not the keypoints of one frame), with the
mean paired difference and its 95 % bootstrap interval over frames (``scipy.stats.bootstrap``, 10,000 resamples).

    python benchmarks/peers/deeplabcut/side_by_side.py --project /path/to/dlc-openfield \\
        --kpreg eval/predictions.csv --dlc out/heldout_snapshot-best-100.csv --png docs/img/peers_side_by_side.png \\
        [--extra "kpreg, no boxes=predict_out/predictions.csv"]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from score import heldout_truth, predicted, score  # noqa: E402

from benchmarks._report import write_json  # noqa: E402

TRUTH, KPREG, DLC = (255, 255, 255), (40, 220, 40), (255, 60, 200)  # RGB
TILE = 220  # px: each frame cropped around the animal and shown at this size
CONTEXT = 1.6  # crop side / the labelled extent's larger side


def paired(kpreg: np.ndarray, dlc: np.ndarray, labelled: np.ndarray) -> dict[str, float]:
    """Per-frame mean errors (N, K) → Wilcoxon p, mean difference kpreg − DeepLabCut and its bootstrap CI."""
    a = np.array([e[m].mean() for e, m in zip(kpreg, labelled)])  # (N,) px
    b = np.array([e[m].mean() for e, m in zip(dlc, labelled)])
    diff = a - b
    ci = stats.bootstrap((diff,), np.mean, n_resamples=10_000, method="percentile",
                         random_state=np.random.default_rng(0)).confidence_interval
    return {"frames": len(diff), "kpreg_mean_px": float(a.mean()), "dlc_mean_px": float(b.mean()),
            "mean_diff_px": float(diff.mean()), "ci95_low": float(ci.low), "ci95_high": float(ci.high),
            "wilcoxon_p": float(stats.wilcoxon(a, b).pvalue), "kpreg_better_frames": int((diff < 0).sum())}


def tile(image: np.ndarray, truth: np.ndarray, kp: np.ndarray, dl: np.ndarray, side: float,
         label: str) -> np.ndarray:
    """(TILE, TILE, 3) RGB: the frame around the animal, ground truth rings, kpreg dots, DeepLabCut crosses."""
    cx, cy = np.nanmean(truth, axis=0)
    half = side * CONTEXT / 2
    scale = TILE / (2 * half)
    # affine crop: image px → tile px
    m = np.array([[scale, 0, TILE / 2 - scale * cx], [0, scale, TILE / 2 - scale * cy]])
    out = cv2.warpAffine(image, m, (TILE, TILE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)

    def at(p: np.ndarray) -> tuple[int, int]:
        return int(round(scale * (p[0] - cx) + TILE / 2)), int(round(scale * (p[1] - cy) + TILE / 2))

    for t, a, b in zip(truth, kp, dl):
        if np.isfinite(t).all():
            cv2.circle(out, at(t), 7, TRUTH, 1, cv2.LINE_AA)
        if np.isfinite(b).all():
            cv2.drawMarker(out, at(b), DLC, cv2.MARKER_TILTED_CROSS, 9, 2, cv2.LINE_AA)
        if np.isfinite(a).all():
            cv2.circle(out, at(a), 3, KPREG, -1, cv2.LINE_AA)
    cv2.rectangle(out, (0, 0), (TILE, 18), (0, 0, 0), -1)
    cv2.putText(out, label, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.38, TRUTH, 1, cv2.LINE_AA)
    return out


def legend(width: int) -> np.ndarray:
    bar = np.zeros((22, width, 3), np.uint8)
    x = 6
    for colour, text, kind in ((TRUTH, "ground truth", "ring"), (KPREG, "kpreg", "dot"), (DLC, "DeepLabCut", "x")):
        if kind == "ring":
            cv2.circle(bar, (x + 6, 11), 6, colour, 1, cv2.LINE_AA)
        elif kind == "dot":
            cv2.circle(bar, (x + 6, 11), 3, colour, -1, cv2.LINE_AA)
        else:
            cv2.drawMarker(bar, (x + 6, 11), colour, cv2.MARKER_TILTED_CROSS, 9, 2, cv2.LINE_AA)
        cv2.putText(bar, text, (x + 16, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.42, TRUTH, 1, cv2.LINE_AA)
        x += 26 + 9 * len(text)
    cv2.putText(bar, "px: mean error of the frame's 4 keypoints", (x + 10, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.38,
                (170, 170, 170), 1, cv2.LINE_AA)
    return bar


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", required=True)
    parser.add_argument("--kpreg", required=True, type=Path, help="kpreg's held-out predictions (DeepLabCut table)")
    parser.add_argument("--dlc", required=True, type=Path, help="DeepLabCut's held-out predictions")
    parser.add_argument("--extra", action="append", default=[], metavar="LABEL=CSV",
                        help="more predictions to score and test against DeepLabCut's (not drawn)")
    parser.add_argument("--frames", type=int, default=6, help="held-out frames drawn (evenly spread)")
    parser.add_argument("--png", help="write the picture here")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    frames, names, truth, labelled, box = heldout_truth(args.project, 5)
    kp, dl = predicted(args.kpreg, frames, names), predicted(args.dlc, frames, names)  # (N, K, 2) px
    scores = {"kpreg": score(truth, labelled, box, kp, names), "DeepLabCut": score(truth, labelled, box, dl, names)}
    err_k, err_d = np.linalg.norm(kp - truth, axis=-1), np.linalg.norm(dl - truth, axis=-1)  # (N, K) px
    test = paired(err_k, err_d, labelled)
    tests = {"kpreg": test}
    for item in args.extra:
        label, _, path = item.partition("=")
        xy = predicted(Path(path), frames, names)
        scores[label] = score(truth, labelled, box, xy, names)
        tests[label] = paired(np.linalg.norm(xy - truth, axis=-1), err_d, labelled)
    for name, s in scores.items():
        print(f"{name}: mean {s['MeanError']:.2f}, median {s['MedianError']:.2f}, RMSE {s['RMSE']:.2f} px")
    for name, t in tests.items():
        print(f"paired over {t['frames']} frames: {name} − DeepLabCut {t['mean_diff_px']:+.2f} px "
              f"[{t['ci95_low']:+.2f}, {t['ci95_high']:+.2f}], Wilcoxon p {t['wilcoxon_p']:.2g}; better on "
              f"{t['kpreg_better_frames']} of {t['frames']} frames")
    if args.png:
        picks = np.linspace(0, len(frames) - 1, args.frames).round().astype(int)
        tiles = []
        for i in picks:
            image = cv2.cvtColor(cv2.imread(str(Path(args.project) / frames[i])), cv2.COLOR_BGR2RGB)
            t = np.where(labelled[i, :, None], truth[i], np.nan)
            label = (f"{Path(frames[i]).stem}  kpreg {err_k[i][labelled[i]].mean():.1f}  "
                     f"DLC {err_d[i][labelled[i]].mean():.1f} px")
            tiles.append(tile(image, t, kp[i], dl[i], float(box[i]), label))
        row = np.concatenate(tiles, axis=1)
        picture = np.concatenate([legend(row.shape[1]), row], axis=0)
        Path(args.png).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(args.png, cv2.cvtColor(picture, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
        print(f"wrote {args.png} ({Path(args.png).stat().st_size // 1024} kB, frames {[frames[i] for i in picks]})")
    write_json(args.json, {"frames": frames, "scores": scores, "paired": tests,
                           "kpreg": str(args.kpreg), "dlc": str(args.dlc)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
