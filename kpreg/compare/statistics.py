"""How sure a comparison is: bootstrap intervals over images (and seeds), paired tests, Holm, P(best).

A run's metric is an ``ImageStatistic`` (``kpreg.metrics.resampling``): its value for any image weights. A
configuration (a head at a stride, a budget …) is one run per seed, all evaluated on the same N images, so every
configuration of a study can be resampled with the same image draws — that pairing is what makes small differences
measurable. No metric is named here. Methods, and why (``docs/statistics.md`` has the measured coverage):

* **One seed**: a BCa interval over images, ``scipy.stats.bootstrap`` resampling image indices (the statistic turns
  them into image weights, so one code path serves the mean, the median and OKS AP). It covers the test sample only:
  another seed trains another model.
* **Several seeds**: a two-level bootstrap. Each resample draws images (shared by every run) and seeds, both with
  replacement, and averages the drawn seeds. With S seeds the seed level's spread rests on S values, so its deviation
  from the all-seeds value is widened by ``√(S/(S−1)) · t_{S−1} / z`` (the unbiased variance and Student's quantile):
  without it, 3 seeds whose training noise dominates cover the mean in 78 % of simulated studies instead of 95 %.
  The interval is the BCa percentile interval of these draws (bias correction from the draws, acceleration from the
  jackknife over images). scipy's bootstrap resamples one level only, hence this own two-level code.
* **Paired differences**: the same draws for both configurations (seeds are tied by position: seed j of one
  configuration is drawn with seed j of the other, which is valid whether or not they are related, and exact for
  the nested label budgets of one seed).
* **p-values**: a paired permutation test over images (``scipy.stats.permutation_test``, ``permutation_type=
  "samples"``): under "the two heads are exchangeable", each image's rows are swapped between them, in every seed
  pair at once; the statistic is the difference of the seed-averaged metrics. Exact where 2^N is small. Configurations
  with different seed counts get the two-level bootstrap's p-value instead.
* **Holm** across the comparisons of one table; a configuration is *worse* (or *better*) than the reference only when
  its Holm-adjusted p is below α **and** the two-level interval of the difference excludes 0 — the test conditions on
  the trained models, the interval adds the training noise; a claim needs both. Otherwise *indistinguishable*.
* **P(best)**: the share of the joint resamples in which a configuration ranks first (ties shared).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from kpreg.metrics.resampling import ImageStatistic

Runs = Sequence[ImageStatistic]  # one per seed, all on the same images


@dataclass(frozen=True)
class Interval:
    """A point estimate with its confidence interval."""

    estimate: float
    low: float
    high: float
    level: float
    method: str  # "images (BCa)" or "seeds × images"

    def excludes(self, value: float) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high) and not self.low <= value <= self.high

    def format(self, digits: int = 2) -> str:
        """``1.68 [1.52, 1.85]``; ``–`` where nothing counts."""
        if not math.isfinite(self.estimate):
            return "–"
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            return f"{self.estimate:.{digits}f}"
        return f"{self.estimate:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def n_images(*configs: Runs) -> int:
    """The image count shared by every run; runs on different numbers of images cannot be paired."""
    counts = {int(stat.n_images) for runs in configs for stat in runs}
    if not counts:
        raise ValueError("no runs to resample")
    if len(counts) != 1:
        raise ValueError(f"runs on different numbers of images cannot be paired: {sorted(counts)}")
    return counts.pop()


def point_estimate(runs: Runs) -> float:
    """The metric averaged over seeds (each at unit weights: the value the run reported)."""
    n = n_images(runs)
    values = [float(stat(np.ones((1, n)))[0]) for stat in runs]
    return float(np.mean(values))


def seed_widening(n_seeds: int, level: float) -> float:
    """√(S/(S−1)) · t_{S−1, q} / z_q, q = (1 + level) / 2: how much the seed level's bootstrap deviation is widened
    (1 for one seed, where there is no seed level)."""
    if n_seeds < 2:
        return 1.0
    q = (1 + level) / 2
    return math.sqrt(n_seeds / (n_seeds - 1)) * float(stats.t.ppf(q, n_seeds - 1) / stats.norm.ppf(q))


def image_counts(indices: np.ndarray, n: int) -> np.ndarray:
    """Index draws (..., m) of images 0 … n−1 → multiplicities (..., n)."""
    idx = np.asarray(indices, dtype=np.int64)
    flat = idx.reshape(-1, idx.shape[-1])  # (P, m)
    rows = np.arange(len(flat))[:, None] * n
    counts = np.bincount((flat + rows).reshape(-1), minlength=len(flat) * n).reshape(len(flat), n)
    return counts.reshape(*idx.shape[:-1], n).astype(np.float64)


@dataclass
class Bootstrap:
    """Resampling settings: ``n_resamples`` draws, intervals at ``level``, a seeded generator (the same inputs give
    the same intervals). ``widen_seeds=False`` gives the textbook two-level bootstrap (for the coverage benchmark)."""

    n_resamples: int = 2000
    level: float = 0.95
    seed: int = 0
    chunk: int = 250  # resamples evaluated at once (memory: chunk × images)
    widen_seeds: bool = True

    def _rng(self) -> np.random.Generator:
        return np.random.default_rng(self.seed)

    # ---- one level: images (one seed) ---------------------------------------------------------------------
    def _bca(self, fn: Callable[[np.ndarray], np.ndarray], n: int) -> tuple[float, float]:
        """BCa interval of ``fn(image weights (P, n)) → (P,)`` over image draws, through scipy."""

        def statistic(idx: np.ndarray, axis: int = -1) -> np.ndarray:
            idx = np.moveaxis(np.asarray(idx), axis, -1)
            counts = image_counts(idx, n)  # (..., n)
            return fn(counts.reshape(-1, n)).reshape(idx.shape[:-1])

        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", stats.DegenerateDataWarning)  # handled below
            res = stats.bootstrap((np.arange(n),), statistic, vectorized=True, n_resamples=self.n_resamples,
                                  confidence_level=self.level, method="BCa", random_state=self._rng(),
                                  batch=self.chunk)
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if not (math.isfinite(low) and math.isfinite(high)):  # a degenerate distribution (e.g. PCK 100 % everywhere)
            dist = res.bootstrap_distribution[np.isfinite(res.bootstrap_distribution)]
            if dist.size:
                a = (1 - self.level) / 2
                low, high = (float(v) for v in np.quantile(dist, [a, 1 - a]))
        return low, high

    # ---- two levels: seeds × images ---------------------------------------------------------------------------
    def draws(self, configs: Sequence[Runs]) -> np.ndarray:
        """Joint resamples (G, B) of the seed-averaged metric of each configuration: the same image draws for all,
        seeds drawn with replacement and tied by position between configurations with the same seed count, each
        configuration's seed deviation widened by ``seed_widening``. One seed: images only."""
        n = n_images(*configs)
        rng = self._rng()
        out = np.empty((len(configs), self.n_resamples))
        for start in range(0, self.n_resamples, self.chunk):
            b = min(self.chunk, self.n_resamples - start)
            w = image_counts(rng.integers(0, n, (b, n)), n)  # (b, N)
            seed_counts = {s: rng.multinomial(s, np.full(s, 1.0 / s), size=b)  # (b, S) tied by position
                           for s in sorted({len(runs) for runs in configs})}
            for g, runs in enumerate(configs):
                values = np.stack([stat(w) for stat in runs], axis=1)  # (b, S)
                all_seeds = values.mean(1)  # (b,) images resampled, every seed once
                m = seed_counts[len(runs)]  # (b, S)
                drawn = (m * values).sum(1) / len(runs)  # (b,)
                c = seed_widening(len(runs), self.level) if self.widen_seeds else 1.0
                out[g, start:start + b] = all_seeds + c * (drawn - all_seeds)
        return out

    def _bca_draws(self, values: np.ndarray, estimate: float, fn: Callable[[np.ndarray], np.ndarray], n: int
                   ) -> tuple[float, float]:
        """BCa percentiles of two-level draws: the bias correction from the draws (ties with the estimate count
        half), the acceleration from the jackknife over images of ``fn`` (image weights (P, n) → (P,)), as scipy's
        BCa does for one level."""
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            return math.nan, math.nan
        below = (np.mean(finite < estimate) + 0.5 * np.mean(finite == estimate)) if math.isfinite(estimate) else 0.5
        z0 = float(stats.norm.ppf(np.clip(below, 1e-6, 1 - 1e-6)))
        jack = np.concatenate([fn(1.0 - np.eye(n)[i:i + self.chunk]) for i in range(0, n, self.chunk)])  # (n,)
        d = np.nanmean(jack) - jack
        denom = 6.0 * np.nansum(d**2) ** 1.5
        acc = float(np.nansum(d**3) / denom) if denom > 0 else 0.0
        z = stats.norm.ppf([(1 - self.level) / 2, (1 + self.level) / 2])
        quantiles = stats.norm.cdf(z0 + (z0 + z) / (1 - acc * (z0 + z)))
        low, high = np.quantile(finite, quantiles)
        return float(low), float(high)

    # ---- intervals --------------------------------------------------------------------------------------------
    def interval(self, runs: Runs) -> Interval:
        """The seed-averaged metric with its interval (BCa over images for one seed, two-level otherwise)."""
        n = n_images(runs)
        estimate = point_estimate(runs)
        if len(runs) == 1:
            low, high = self._bca(runs[0], n)
            return Interval(estimate, low, high, self.level, "images (BCa)")
        low, high = self._bca_draws(self.draws([runs])[0], estimate, lambda w: _seed_mean(runs, w), n)
        return Interval(estimate, low, high, self.level, "seeds × images")

    def difference(self, a: Runs, b: Runs) -> Interval:
        """``a − b`` of the seed-averaged metrics, paired on images (and seeds by position)."""
        n = n_images(a, b)
        estimate = point_estimate(a) - point_estimate(b)
        if len(a) == 1 and len(b) == 1:
            low, high = self._bca(lambda w: a[0](w) - b[0](w), n)
            return Interval(estimate, low, high, self.level, "images (BCa)")
        d = self.draws([a, b])
        low, high = self._bca_draws(d[0] - d[1], estimate, lambda w: _seed_mean(a, w) - _seed_mean(b, w), n)
        return Interval(estimate, low, high, self.level, "seeds × images")

    def difference_pvalue(self, a: Runs, b: Runs) -> float:
        """Two-sided bootstrap p-value of ``a − b = 0``: twice the smaller tail share of the paired draws at 0."""
        d = self.draws([a, b])
        diff = d[0] - d[1]
        diff = diff[np.isfinite(diff)]
        tail = min((diff <= 0).sum(), (diff >= 0).sum())
        return float(min(1.0, 2 * (tail + 1) / (diff.size + 1)))


def _seed_mean(runs: Runs, weights: np.ndarray) -> np.ndarray:
    """(P,) the seed-averaged metric at image weights (P, N)."""
    return np.mean([stat(weights) for stat in runs], axis=0)


def permutation_pvalue(a: Runs, b: Runs, n_resamples: int = 9999, seed: int = 0) -> float | None:
    """Two-sided paired permutation test over images of ``mean_s a_s − mean_s b_s`` (seeds paired by position; see
    the module docstring); None when the seed counts differ."""
    if len(a) != len(b):
        return None
    n = n_images(a, b)

    def statistic(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        x = np.moveaxis(np.asarray(x), axis, -1)
        take = x.reshape(-1, n) >= n  # (P, N) images whose rows come from the other head
        va = np.mean([sa.mixed(sb, take) for sa, sb in zip(a, b)], axis=0)  # (P,)
        vb = np.mean([sb.mixed(sa, take) for sa, sb in zip(a, b)], axis=0)
        return (va - vb).reshape(x.shape[:-1])

    with np.errstate(invalid="ignore", divide="ignore"):
        res = stats.permutation_test((np.arange(n), np.arange(n) + n), statistic, permutation_type="samples",
                                     vectorized=True, n_resamples=n_resamples, alternative="two-sided",
                                     random_state=np.random.default_rng(seed))
    return float(res.pvalue)


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment: the i-th smallest of m p-values becomes max_{j ≤ i} min(1, (m − j + 1) p_(j))
    (1-based j); a missing (NaN) p-value counts as 1."""
    p = np.nan_to_num(np.asarray(pvalues, dtype=np.float64), nan=1.0)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return out


def probability_best(draws: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """(G,) share of the resamples (columns of ``draws`` (G, B)) in which each configuration ranks first; ties share
    the win; a NaN never wins."""
    v = np.where(np.isfinite(draws), draws, -np.inf if higher_is_better else np.inf)  # (G, B)
    best = v.max(0) if higher_is_better else v.min(0)  # (B,)
    winners = (v == best[None]) & np.isfinite(best)[None]  # (G, B)
    share = winners / np.maximum(winners.sum(0, keepdims=True), 1)
    return share.mean(1)


@dataclass(frozen=True)
class Verdict:
    """One configuration against the reference (the best, or a baseline)."""

    label: str
    seeds: int
    estimate: Interval
    difference: Interval | None  # label − reference; None for the reference itself
    p: float | None  # raw p-value of the difference
    p_holm: float | None
    test: str  # "permutation over images" or "bootstrap (seeds × images)"
    p_best: float
    verdict: str  # "best", "baseline", "indistinguishable", "worse", "better"


def compare(
    configs: Mapping[str, Runs],
    higher_is_better: bool,
    baseline: str | None = None,
    alpha: float = 0.05,
    bootstrap: Bootstrap | None = None,
    permutations: int = 9999,
) -> list[Verdict]:
    """Every configuration against the best (by point estimate) or ``baseline``: intervals, paired differences,
    p-values with Holm's correction, P(best) and a verdict (see the module docstring). Rows: the reference first,
    then by point estimate, best first."""
    bootstrap = bootstrap or Bootstrap()
    labels = list(configs)
    if not labels:
        return []
    n_images(*configs.values())
    estimates = {k: bootstrap.interval(configs[k]) for k in labels}
    if baseline is not None and baseline not in configs:
        raise ValueError(f"--baseline {baseline!r} is not a configuration of the study ({', '.join(labels)})")
    sign = 1.0 if higher_is_better else -1.0
    ranked = sorted(labels, key=lambda k: -sign * estimates[k].estimate if math.isfinite(estimates[k].estimate)
                    else math.inf)
    reference = baseline or ranked[0]
    p_best = dict(zip(labels, probability_best(bootstrap.draws([configs[k] for k in labels]), higher_is_better)))
    others = [k for k in ranked if k != reference]
    raw: dict[str, float] = {}
    tests: dict[str, str] = {}
    diffs: dict[str, Interval] = {}
    for k in others:
        diffs[k] = bootstrap.difference(configs[k], configs[reference])
        p = permutation_pvalue(configs[k], configs[reference], permutations, bootstrap.seed)
        tests[k] = "permutation over images" if p is not None else "bootstrap (seeds × images)"
        raw[k] = p if p is not None else bootstrap.difference_pvalue(configs[k], configs[reference])
    adjusted = dict(zip(others, holm([raw[k] for k in others])))
    rows = [Verdict(reference, len(configs[reference]), estimates[reference], None, None, None, "",
                    float(p_best[reference]), "baseline" if baseline else "best")]
    for k in others:
        significant = adjusted[k] < alpha and diffs[k].excludes(0.0)
        better = sign * diffs[k].estimate > 0
        verdict = ("better" if better else "worse") if significant else "indistinguishable"
        rows.append(Verdict(k, len(configs[k]), estimates[k], diffs[k], raw[k], float(adjusted[k]), tests[k],
                            float(p_best[k]), verdict))
    return rows
