"""How often kpreg's intervals cover the truth, and how often its paired test cries wolf, on simulated studies.

Each simulated evaluation has N images × 16 keypoints: a per-image difficulty (gamma), Rayleigh pixel errors and 3 %
gross errors (uniform 10–40 px), so its true mean error and PCK@5px are known. Printed per regime: the share of
studies whose 95 % interval (``kpreg.compare.statistics.Bootstrap``, the code path of ``evaluate.py --ci`` and the
study report) covers the true value, and the mean width.

* one seed: the BCa interval over images, for the mean error, the median error and PCK@5px;
* S seeds whose models differ by a training-noise factor (each seed's errors × (1 + a), a ~ N(0, τ)): the
  two-level interval as kpreg computes it (seed deviation widened by √(S/(S−1))·t/z) and without the widening;
* two heads with the same true errors (3 seeds each, training noise τ): the share of studies in which the paired
  permutation test alone (p < 0.05), and kpreg's verdict (the test and the two-level interval), call one worse.

    python benchmarks/ci_coverage.py [--studies 1000] [--parts one_seed,seeds,false_alarms] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kpreg.compare.statistics import Bootstrap, compare  # noqa: E402
from kpreg.metrics.resampling import MedianStatistic, RatioStatistic  # noqa: E402

K = 16


def errors(rng: np.random.Generator, n: int) -> np.ndarray:
    """(N, K) px: per-image difficulty × Rayleigh, 3 % gross errors."""
    scale = rng.gamma(4.0, 0.5, n)[:, None]  # (N, 1)
    e = scale * rng.rayleigh(1.0, (n, K))  # (N, K)
    gross = rng.random((n, K)) < 0.03
    return np.where(gross, rng.uniform(10, 40, (n, K)), e)


def truth(rng: np.random.Generator) -> dict[str, float]:
    """The true mean (closed form), median and PCK@5px (from 4 M simulated keypoints)."""
    big = errors(rng, 250_000)
    return {"mean": 0.97 * 2.0 * math.sqrt(math.pi / 2) + 0.03 * 25.0, "median": float(np.median(big)),
            "pck5": float(100 * (big <= 5).mean())}


def statistic(kind: str, e: np.ndarray):
    n = len(e)
    if kind == "mean":
        return RatioStatistic(e.sum(1), np.full(n, float(K)))
    if kind == "median":
        return MedianStatistic(e.reshape(-1), np.repeat(np.arange(n), K), n)
    return RatioStatistic((e <= 5).sum(1).astype(float), np.full(n, float(K)), 100.0)


def one_seed(rng: np.random.Generator, studies: int, n: int, kind: str, true: float) -> dict[str, float]:
    hits, widths = 0, []
    for _ in range(studies):
        iv = Bootstrap(n_resamples=999, seed=int(rng.integers(1 << 31))).interval([statistic(kind, errors(rng, n))])
        hits += iv.low <= true <= iv.high
        widths.append(iv.high - iv.low)
    return {"coverage": hits / studies, "width": float(np.mean(widths))}


def seeds(rng: np.random.Generator, studies: int, n: int, s: int, tau: float, true: float) -> dict[str, float]:
    out = {"widened": 0, "plain": 0}
    widths = []
    for _ in range(studies):
        factors = 1 + rng.normal(0, tau, s)
        base = errors(rng, n)  # the same test images for every seed
        runs = [statistic("mean", base * f * rng.uniform(0.95, 1.05, base.shape)) for f in factors]
        seed = int(rng.integers(1 << 31))
        iv = Bootstrap(n_resamples=999, seed=seed).interval(runs)
        out["widened"] += iv.low <= true <= iv.high
        widths.append(iv.high - iv.low)
        plain = Bootstrap(n_resamples=999, seed=seed, widen_seeds=False).interval(runs)
        out["plain"] += plain.low <= true <= plain.high
    return {"coverage": out["widened"] / studies, "coverage_without_widening": out["plain"] / studies,
            "width": float(np.mean(widths))}


def false_alarms(rng: np.random.Generator, studies: int, n: int, tau: float) -> dict[str, float]:
    test_only, verdict = 0, 0
    for _ in range(studies):
        base = errors(rng, n)
        heads = {h: [statistic("mean", base * (1 + rng.normal(0, tau)) * rng.uniform(0.9, 1.1, base.shape))
                     for _ in range(3)] for h in ("a", "b")}
        rows = compare(heads, higher_is_better=False, bootstrap=Bootstrap(n_resamples=499,
                                                                          seed=int(rng.integers(1 << 31))),
                       permutations=499)
        test_only += rows[1].p < 0.05
        verdict += rows[1].verdict != "indistinguishable"
    return {"test_alone": test_only / studies, "verdict": verdict / studies}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--studies", type=int, default=1000)
    parser.add_argument("--json")
    parser.add_argument("--parts", default="one_seed,seeds,false_alarms",
                        help="comma-separated parts to run: one_seed, seeds, false_alarms")
    args = parser.parse_args()
    args.parts = set(args.parts.split(","))
    rng = np.random.default_rng(0)
    true = truth(rng)
    result: dict[str, dict] = {"truth": true, "one_seed": {}, "seeds": {}, "false_alarms": {}}
    print(f"true mean {true['mean']:.3f} px, median {true['median']:.3f} px, PCK@5px {true['pck5']:.2f} %")
    print("\n| one seed | N | coverage | mean width |\n|---|---:|---:|---:|")
    for kind, n in ((("mean", 24), ("mean", 100), ("mean", 200), ("mean", 500), ("median", 200), ("pck5", 200))
                    if "one_seed" in args.parts else ()):
        r = one_seed(rng, args.studies, n, kind, true[kind])
        result["one_seed"][f"{kind}-{n}"] = r
        print(f"| {kind} | {n} | {100 * r['coverage']:.1f} % | {r['width']:.3f} |", flush=True)
    print("\n| seeds | training noise τ | coverage | without the widening | mean width |\n|---:|---:|---:|---:|---:|")
    for s, tau in ((3, 0.0), (3, 0.03), (3, 0.1), (5, 0.1)) if "seeds" in args.parts else ():
        r = seeds(rng, args.studies, 200, s, tau, true["mean"])
        result["seeds"][f"S{s}-tau{tau}"] = r
        print(f"| {s} | {tau} | {100 * r['coverage']:.1f} % | {100 * r['coverage_without_widening']:.1f} % | "
              f"{r['width']:.3f} |", flush=True)
    print("\n| equal heads, 3 seeds, τ | 'worse' by the test alone | by kpreg's verdict |\n|---:|---:|---:|")
    for tau in (0.0, 0.05) if "false_alarms" in args.parts else ():
        r = false_alarms(rng, args.studies, 200, tau)
        result["false_alarms"][f"tau{tau}"] = r
        print(f"| {tau} | {100 * r['test_alone']:.1f} % | {100 * r['verdict']:.1f} % |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
