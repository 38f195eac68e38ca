"""The power-law learning curve and the frames-needed estimate (kpreg.compare.learning_curve) by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kpreg.compare.learning_curve import curve_band, fit_draws, fit_power_law, frames_needed

FRAMES = np.array([10.0, 100.0, 1000.0])
EXACT = 10.0 * FRAMES**-0.5  # 3.162, 1.0, 0.316 px


def test_power_law_by_hand() -> None:
    law = fit_power_law(FRAMES, EXACT)
    assert (law.scale, law.exponent, law.r2) == pytest.approx((10.0, 0.5, 1.0))
    assert law(400.0) == pytest.approx(0.5)
    assert law.frames_for(1.0) == pytest.approx(100.0)  # (10 / 1)^(1 / 0.5)
    assert law.frames_for(2.0) == pytest.approx(25.0)
    flat = fit_power_law(FRAMES, [1.0, 1.0, 1.0])
    assert flat.exponent == pytest.approx(0.0, abs=1e-12) and math.isinf(flat.frames_for(0.5))
    assert math.isnan(fit_power_law([10.0], [1.0]).scale)


def test_fit_draws_is_the_fit_of_each_column() -> None:
    rng = np.random.default_rng(0)
    draws = EXACT[:, None] * rng.uniform(0.8, 1.2, (3, 5))  # (J, B)
    scale, exponent = fit_draws(FRAMES, draws)
    for b in range(5):
        law = fit_power_law(FRAMES, draws[:, b])
        assert (scale[b], exponent[b]) == pytest.approx((law.scale, law.exponent))


def test_frames_needed_interpolated_extrapolated_unreliable() -> None:
    draws = np.repeat(EXACT[:, None], 100, axis=1)  # no noise: the interval is the estimate
    inside = frames_needed(FRAMES, EXACT, draws, target=1.0)
    assert (inside.estimate, inside.low, inside.high) == pytest.approx((100.0, 100.0, 100.0))
    assert inside.status == "interpolated" and inside.reason == ""
    # 0.25 px needs (10 / 0.25)^2 = 1 600 frames: beyond 1 000, within 2×
    out = frames_needed(FRAMES, EXACT, draws, target=0.25)
    assert out.estimate == pytest.approx(1600.0) and out.status == "extrapolated"
    # 0.1 px: 10 000 frames, 10× the largest budget
    far = frames_needed(FRAMES, EXACT, draws, target=0.1)
    assert far.status == "unreliable" and "beyond 2× the largest budget" in far.reason
    # a curve that rises in a quarter of the resamples has no upper bound
    noisy = draws.copy()
    noisy[:, :25] = EXACT[::-1, None]
    rising = frames_needed(FRAMES, EXACT, noisy, target=1.0)
    assert math.isinf(rising.high) and rising.status == "unreliable"
    assert "does not fall" in rising.reason
    two = frames_needed(FRAMES[:2], EXACT[:2], draws[:2], target=1.0)
    assert two.status == "unreliable" and "only 2 budgets" in two.reason
    assert "≈ 100 frames [100, 100]" in inside.format()


def test_curve_band_contains_the_noisy_fits() -> None:
    rng = np.random.default_rng(1)
    draws = EXACT[:, None] * rng.uniform(0.9, 1.1, (3, 400))
    low, high = curve_band(FRAMES, draws, np.array([10.0, 100.0, 1000.0]))
    assert np.all(low < EXACT * 1.02) and np.all(high > EXACT * 0.98)
    assert np.all(high / low < 1.3)
