"""Bootstrap intervals, paired tests, Holm and P(best) (kpreg.compare.statistics) against hand computations and
scipy.stats; the coverage of the interval on simulated studies."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from kpreg.compare.statistics import (
    Bootstrap,
    compare,
    holm,
    image_counts,
    n_images,
    permutation_pvalue,
    point_estimate,
    probability_best,
    seed_widening,
)
from kpreg.metrics.resampling import RatioStatistic


def mean_of(values: np.ndarray) -> RatioStatistic:
    """The mean of one value per image."""
    values = np.asarray(values, dtype=np.float64)
    return RatioStatistic(values, np.ones_like(values))


def test_image_counts() -> None:
    counts = image_counts(np.array([[0, 0, 2], [1, 2, 2]]), 3)
    assert counts.tolist() == [[2, 0, 1], [0, 1, 2]]
    assert image_counts(np.zeros((2, 4, 3), int), 3).shape == (2, 4, 3)


def test_seed_widening_by_hand() -> None:
    assert seed_widening(1, 0.95) == 1.0
    # √(3/2) · t_{2, 0.975} / z_{0.975} = 1.2247 · 4.3027 / 1.9600
    assert seed_widening(3, 0.95) == pytest.approx(math.sqrt(1.5) * 4.302653 / 1.959964, rel=1e-5)
    assert seed_widening(50, 0.95) == pytest.approx(1.0, abs=0.05)


def test_holm_by_hand() -> None:
    # sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 → raised to the running maximum 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]).tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]).tolist() == pytest.approx([1.0, 1.0])
    assert holm([0.2, math.nan]).tolist() == pytest.approx([0.4, 1.0])


def test_probability_best_by_hand() -> None:
    draws = np.array([[1.0, 2.0, 3.0, np.nan], [3.0, 2.0, 1.0, 0.0]])
    assert probability_best(draws, higher_is_better=True).tolist() == pytest.approx([0.375, 0.625])
    assert probability_best(draws, higher_is_better=False).tolist() == pytest.approx([0.375, 0.625])


def test_one_seed_interval_is_scipy_bca_over_images() -> None:
    x = np.random.default_rng(0).gamma(2.0, 1.5, 40)
    boot = Bootstrap(n_resamples=2000, seed=3)
    mine = boot.interval([mean_of(x)])
    ref = stats.bootstrap((x,), np.mean, vectorized=True, n_resamples=2000, method="BCa",
                          random_state=np.random.default_rng(3), batch=boot.chunk).confidence_interval
    assert mine.estimate == pytest.approx(x.mean())
    assert (mine.low, mine.high) == pytest.approx((ref.low, ref.high), rel=1e-12)
    assert mine.method == "images (BCa)"
    # the paired difference of one seed each is scipy's BCa of the per-image differences
    y = x + np.random.default_rng(1).normal(0.3, 0.5, 40)
    diff = boot.difference([mean_of(y)], [mean_of(x)])
    ref = stats.bootstrap((y - x,), np.mean, vectorized=True, n_resamples=2000, method="BCa",
                          random_state=np.random.default_rng(3), batch=boot.chunk).confidence_interval
    assert (diff.low, diff.high) == pytest.approx((ref.low, ref.high), rel=1e-12)


def test_degenerate_interval_is_the_value() -> None:
    interval = Bootstrap(n_resamples=200).interval([mean_of(np.full(10, 100.0))])
    assert (interval.estimate, interval.low, interval.high) == (100.0, 100.0, 100.0)


def test_two_level_interval_by_hand() -> None:
    # no image noise: every image of seed 0 scores 1.0, of seed 1 3.0. The seed draws are {0,0}, {0,1}, {1,1} with
    # probabilities 1/4, 1/2, 1/4: means 1, 2, 3, widened around 2 by c = seed_widening(2) → 2 ± c
    runs = [mean_of(np.ones(20)), mean_of(np.full(20, 3.0))]
    interval = Bootstrap(n_resamples=4000).interval(runs)
    c = seed_widening(2, 0.95)
    assert interval.estimate == 2.0
    assert (interval.low, interval.high) == pytest.approx((2 - c, 2 + c))
    assert interval.method == "seeds × images"


def test_paired_difference_cancels_shared_image_noise() -> None:
    # b = a + 0.1 on every image: the images differ a lot, the difference never does
    a = np.random.default_rng(2).gamma(2.0, 2.0, 50)
    runs_a = [mean_of(a), mean_of(a * 1.01)]
    runs_b = [mean_of(a + 0.1), mean_of(a * 1.01 + 0.1)]
    d = Bootstrap(n_resamples=1000).difference(runs_b, runs_a)
    assert d.estimate == pytest.approx(0.1)
    assert d.low > 0.0 and d.high < 0.2
    unpaired = Bootstrap(n_resamples=1000).interval(runs_b)
    assert unpaired.high - unpaired.low > 10 * (d.high - d.low)


def test_permutation_pvalue_by_hand_and_against_scipy() -> None:
    # three images, differences 1, 2, 3: the 8 sign flips give mean differences (±1 ±2 ±3)/3; the observed 2 is the
    # largest: one-sided 1/8, two-sided 2/8
    assert permutation_pvalue([mean_of([1.0, 2.0, 3.0])], [mean_of([0.0, 0.0, 0.0])]) == pytest.approx(0.25)
    rng = np.random.default_rng(5)
    a, b = rng.normal(0, 1, 30), rng.normal(0.4, 1, 30)
    mine = permutation_pvalue([mean_of(a)], [mean_of(b)], n_resamples=5000, seed=7)
    ref = stats.permutation_test((a, b), lambda x, y, axis: x.mean(axis) - y.mean(axis), permutation_type="samples",
                                 vectorized=True, n_resamples=5000, random_state=np.random.default_rng(7)).pvalue
    assert mine == pytest.approx(ref)
    assert permutation_pvalue([mean_of(a)], [mean_of(b), mean_of(b)]) is None


def test_runs_on_different_images_are_refused() -> None:
    with pytest.raises(ValueError, match="different numbers of images"):
        n_images([mean_of(np.ones(3))], [mean_of(np.ones(4))])


def test_compare_verdicts() -> None:
    rng = np.random.default_rng(6)
    base = rng.gamma(2.0, 1.0, 60)  # (N,) per-image error of the best head

    def head(shift: float) -> list[RatioStatistic]:
        return [mean_of(base + shift + rng.normal(0, 0.05, 60)) for _ in range(3)]

    configs = {"close": head(0.01), "best": head(0.0), "far": head(1.0)}
    rows = compare(configs, higher_is_better=False, bootstrap=Bootstrap(n_resamples=500), permutations=999)
    by = {r.label: r for r in rows}
    assert [r.label for r in rows] == ["best", "close", "far"]
    assert by["best"].verdict == "best" and by["best"].difference is None
    assert by["far"].verdict == "worse" and by["far"].p_holm < 0.05 and by["far"].difference.low > 0.5
    assert by["close"].verdict == "indistinguishable"
    assert by["far"].p_best == 0.0 and by["best"].p_best + by["close"].p_best == pytest.approx(1.0)
    assert by["far"].test == "permutation over images"
    assert point_estimate(configs["far"]) == pytest.approx(by["far"].estimate.estimate)
    rows = compare(configs, higher_is_better=False, baseline="far", bootstrap=Bootstrap(n_resamples=300),
                   permutations=499)
    assert {r.label: r.verdict for r in rows} == {"far": "baseline", "best": "better", "close": "better"}
    with pytest.raises(ValueError, match="--baseline 'nope'"):
        compare(configs, higher_is_better=False, baseline="nope")


@pytest.mark.slow
def test_coverage_of_the_interval_on_simulated_studies() -> None:
    """1 000 simulated evaluations (200 images × 16 keypoints: per-image difficulty, Rayleigh errors, 3 % gross
    errors); the 95 % interval of the mean error covers the true mean in 93–97 % of them."""
    rng = np.random.default_rng(0)
    true_mean = _true_mean_error(rng)
    covered = 0
    for _ in range(1000):
        per_image = _simulated_errors(rng, 200).sum(1)
        stat = RatioStatistic(per_image, np.full(200, 16.0))
        interval = Bootstrap(n_resamples=999, seed=int(rng.integers(1 << 31))).interval([stat])
        covered += interval.low <= true_mean <= interval.high
    assert 0.93 <= covered / 1000 <= 0.97, covered


def _simulated_errors(rng: np.random.Generator, n: int) -> np.ndarray:
    scale = rng.gamma(4.0, 0.5, n)[:, None]  # (N, 1) per-image difficulty
    errors = scale * rng.rayleigh(1.0, (n, 16))  # (N, K) px
    gross = rng.random((n, 16)) < 0.03
    return np.where(gross, rng.uniform(10, 40, (n, 16)), errors)


def _true_mean_error(rng: np.random.Generator) -> float:
    # E = 0.97 · E[scale] · E[Rayleigh(1)] + 0.03 · 25
    return 0.97 * 2.0 * math.sqrt(math.pi / 2) + 0.03 * 25.0
