"""Error against labelled frames: a power-law learning curve and "about how many frames for X px".

The error of a head trained on n labelled frames is modelled as ``error(n) = a · n^(−b)``, fitted by least squares
on log error against log n over the budgets' seed-averaged errors. Two parameters, because a study has few budgets
(4 in the README's): a third (an asymptote, ``a · n^(−b) + c``) would be fitted to 4 points and say little. The
frames needed for a target error X is ``(a / X)^(1/b)``; its interval comes from refitting the curve on every joint
bootstrap resample of the budgets (``kpreg.compare.statistics.Bootstrap.draws``: images shared, seeds tied), so it
carries both the test images' and the training's noise.

The answer is **unreliable** (and said so) when the curve does not fall (b ≤ 0 in the fit or in more than 2.5 % of
the resamples: the upper bound is then infinite), when fewer than 3 budgets were run, when the power law misses the
points (R² < 0.9 on the log scale), or when the target lies beyond twice the largest budget: a power law is a
guess outside the data, and learning curves flatten. Between the largest budget and twice it the answer is given
as *extrapolated*.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MIN_BUDGETS = 3
MIN_R2 = 0.9
MAX_EXTRAPOLATION = 2.0  # × the largest budget


@dataclass(frozen=True)
class PowerLaw:
    """``error(n) = scale · n^(−exponent)``; ``r2`` of the fit on the log scale."""

    scale: float
    exponent: float
    r2: float

    def __call__(self, frames: np.ndarray | float) -> np.ndarray:
        return self.scale * np.asarray(frames, dtype=np.float64) ** (-self.exponent)

    def frames_for(self, target: float) -> float:
        """n with error(n) = target; inf when the curve does not fall."""
        if not (self.exponent > 0 and target > 0 and math.isfinite(self.scale)):
            return math.inf
        return float((self.scale / target) ** (1.0 / self.exponent))


def fit_power_law(frames: Sequence[float], errors: Sequence[float]) -> PowerLaw:
    """Least squares of log error on log frames (positive, finite points only; NaN law with fewer than 2)."""
    n = np.asarray(frames, dtype=np.float64)
    e = np.asarray(errors, dtype=np.float64)
    ok = np.isfinite(n) & np.isfinite(e) & (n > 0) & (e > 0)
    if ok.sum() < 2:
        return PowerLaw(math.nan, math.nan, math.nan)
    x, y = np.log(n[ok]), np.log(e[ok])
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (intercept + slope * x)
    total = ((y - y.mean()) ** 2).sum()
    r2 = float(1 - (residual**2).sum() / total) if total > 0 else 1.0
    return PowerLaw(float(math.exp(intercept)), float(-slope), r2)


def fit_draws(frames: Sequence[float], draws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Power laws of every resample: draws (J budgets, B) errors → (scale (B,), exponent (B,)), vectorised."""
    x = np.log(np.asarray(frames, dtype=np.float64))  # (J,)
    with np.errstate(invalid="ignore", divide="ignore"):
        y = np.log(np.where(draws > 0, draws, np.nan))  # (J, B)
    xc = x - x.mean()
    slope = (xc[:, None] * (y - y.mean(0))).sum(0) / (xc**2).sum()  # (B,)
    intercept = y.mean(0) - slope * x.mean()
    return np.exp(intercept), -slope


@dataclass(frozen=True)
class FramesNeeded:
    """About how many labelled frames give a mean error of ``target``, with its interval."""

    target: float
    estimate: float
    low: float
    high: float  # inf where the curve may not fall that far
    level: float
    status: str  # "interpolated", "extrapolated" or "unreliable"
    reason: str  # why it is extrapolated or unreliable ("" when interpolated)

    def format(self) -> str:
        def n(v: float) -> str:
            return "∞" if not math.isfinite(v) else f"{v:,.0f}"

        text = f"≈ {n(self.estimate)} frames [{n(self.low)}, {n(self.high)}]"
        return text + (f" ({self.status}: {self.reason})" if self.reason else "")


def frames_needed(
    frames: Sequence[float], errors: Sequence[float], draws: np.ndarray, target: float, level: float = 0.95
) -> FramesNeeded:
    """The frames for ``target`` from the budgets' seed-averaged ``errors`` (J,) and their joint bootstrap
    ``draws`` (J, B); see the module docstring for when it is extrapolated or unreliable."""
    frames = np.asarray(frames, dtype=np.float64)
    law = fit_power_law(frames, errors)
    estimate = law.frames_for(target)
    scale, exponent = fit_draws(frames, np.asarray(draws, dtype=np.float64))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        needed = np.where(exponent > 0, (scale / target) ** (1.0 / exponent), np.inf)  # (B,)
    needed = np.where(np.isnan(needed), np.inf, needed)
    a = (1 - level) / 2
    low, high = (float(v) for v in np.quantile(needed, [a, 1 - a], method="inverted_cdf"))  # inf-safe
    largest = float(frames.max())
    reasons = []
    if len(frames) < MIN_BUDGETS:
        reasons.append(f"only {len(frames)} budgets")
    if not law.exponent > 0:
        reasons.append("the error does not fall with more frames in this range")
    elif not math.isfinite(high):
        reasons.append("in some resamples the error does not fall with more frames")
    if math.isfinite(law.r2) and law.r2 < MIN_R2:
        reasons.append(f"the power law fits poorly (R² {law.r2:.2f})")
    if estimate > MAX_EXTRAPOLATION * largest:
        reasons.append(f"beyond {MAX_EXTRAPOLATION:g}× the largest budget ({largest:,.0f} frames)")
    if reasons:
        return FramesNeeded(target, estimate, low, high, level, "unreliable", "; ".join(reasons))
    if estimate > largest:
        return FramesNeeded(target, estimate, low, high, level, "extrapolated",
                            f"beyond the largest budget ({largest:,.0f} frames)")
    return FramesNeeded(target, estimate, low, high, level, "interpolated", "")


def curve_band(frames: Sequence[float], draws: np.ndarray, grid: np.ndarray, level: float = 0.95
               ) -> tuple[np.ndarray, np.ndarray]:
    """The pointwise interval (low (G,), high (G,)) of the fitted curve on ``grid`` across the resamples."""
    scale, exponent = fit_draws(frames, np.asarray(draws, dtype=np.float64))
    curves = scale[None, :] * np.asarray(grid, dtype=np.float64)[:, None] ** (-exponent[None, :])  # (G, B)
    a = (1 - level) / 2
    low, high = np.nanquantile(curves, [a, 1 - a], axis=1)
    return low, high
