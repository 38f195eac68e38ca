"""Smoothing keypoint tracks over time: a moving median, and a Kalman smoother whose observation noise comes from
each prediction's calibrated confidence (and spread, and an ensemble's disagreement where there is one).

A track is one instance's keypoints over the frames of a video: ``keypoints`` (T, K, 2) x,y image pixels (NaN: no
prediction), ``confidence`` (T, K). A keypoint whose confidence is below ``min_confidence`` (DeepLabCut's pcutoff,
``kpreg.inference.filtering``) or that is not finite is a *gap*: neither smoother reads it, both fill it.

``median_smooth``: the median of the confident positions in a centred window of ``window`` frames, per keypoint and
coordinate (DeepLabCut's ``filterpredictions(filtertype="median")``, and ``movement``'s ``rolling_filter``); gaps
longer than the window are filled by linear interpolation between their ends (held constant before the first and
after the last confident frame).

``kalman_smooth``: per keypoint and coordinate, a constant-velocity model (white-noise acceleration of variance
``q`` px²/frame³, so a limb that keeps moving fast is followed without lag), observed with the per-frame noise

    R_t = p σ_in² + (1 − p) σ_out² (+ the ensemble's variance)

where ``p`` is the keypoint's calibrated P(correct): a correct prediction is off by about ``σ_in`` (half the
correctness threshold of 0.1 × the animal's size, or the head's own ``spread`` where given), a wrong one by about
``σ_out``. This is the variance of that two-part mixture, so a confident keypoint is trusted and an uncertain one
moves the track less. The filter runs forward, the Rauch–Tung–Striebel pass backward (the whole video is known: no
lag from filtering alone). ``q`` and ``σ_out`` are chosen per keypoint by the largest marginal likelihood of the
observations over a grid (the idea of Lightning Pose's ensemble Kalman smoother, which fits its smoothing parameter
the same way). Everything is vectorised over keypoints, coordinates and grid values; one Python loop runs over time.

The animal's size (the scale of σ_in, σ_out and the grids) is the median extent of the predicted poses.

Shapes: T frames, K keypoints. Pixels are image pixels, 0-based pixel centres (``kpreg.coords``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kpreg.inference.filtering import DEFAULT_MIN_CONFIDENCE, confident

SMOOTHERS = ("none", "median", "kalman")
DEFAULT_WINDOW = 5
CORRECT_FRACTION = 0.1  # a keypoint is correct within 0.1 × the animal's size (kpreg's DeepLabCut evaluation)
# Process noise grid, px²/frame³ relative to (animal size / 100)²: from nearly still to a limb crossing the animal in
# a few frames.
Q_GRID = tuple(float(q) for q in np.logspace(-3, 2, 11))
# σ_out, the typical error of a wrong prediction, in animal sizes: from a near miss to anywhere on the animal.
OUTLIER_GRID = (0.1, 0.2, 0.35, 0.5)


class SmoothingError(ValueError):
    """A track that cannot be smoothed as asked: says what and why."""


@dataclass(frozen=True, eq=False)
class Smoothed:
    """A smoothed track."""

    keypoints: np.ndarray  # (T, K, 2) float64 x,y image pixels, finite wherever the keypoint was ever confident
    variance: np.ndarray | None  # (T, K) float64 posterior variance per coordinate, px² (Kalman); None (median)
    process_noise: np.ndarray | None  # (K,) the chosen q, px²/frame³ (Kalman); None (median)
    observed: np.ndarray  # (T, K) bool: the keypoints the smoother read (confident); the rest were filled
    outlier_sigma: np.ndarray | None = None  # (K,) the chosen σ_out, px (Kalman); None (median)


def _check(keypoints: np.ndarray, confidence: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    xy = np.asarray(keypoints, dtype=np.float64)  # (T, K, 2)
    conf = np.asarray(confidence, dtype=np.float64)  # (T, K)
    if xy.ndim != 3 or xy.shape[2] != 2:
        raise SmoothingError(f"keypoints must be (frames, keypoints, 2), got {xy.shape}")
    if conf.shape != xy.shape[:2]:
        raise SmoothingError(f"confidence must be (frames, keypoints) = {xy.shape[:2]}, got {conf.shape}")
    if len(xy) == 0:
        raise SmoothingError("the track has no frames")
    return xy, conf


def animal_size(keypoints: np.ndarray) -> float:
    """The median over frames of the larger side of the predicted keypoints' extent, px (1 px at least): the scale
    of the noise levels. keypoints (T, K, 2); every finite keypoint counts, confident or not (the confident ones
    alone are often a compact part of the animal)."""
    xy = np.asarray(keypoints, dtype=np.float64)  # (T, K, 2)
    enough = np.isfinite(xy).all(-1).sum(axis=1) >= 2  # (T,) frames with an extent
    if not enough.any():
        return 1.0
    with _quiet_nan_warnings():
        extent = np.nanmax(xy[enough], axis=1) - np.nanmin(xy[enough], axis=1)  # (T', 2)
    return max(float(np.median(extent.max(axis=1))), 1.0)


def observation_variance(
    confidence: np.ndarray,
    size: float,
    spread: np.ndarray | None = None,
    ensemble_variance: np.ndarray | None = None,
    outlier_sigma: float | None = None,
) -> np.ndarray:
    """(T, K) px² per coordinate: ``p σ_in² + (1 − p) σ_out² (+ ensemble variance)`` (the module docstring).

    σ_in = half of the correctness threshold (``CORRECT_FRACTION × size``), or √spread where a spread (T, K) px² is
    given and larger; σ_out = ``outlier_sigma`` px (default size / 2). ``ensemble_variance`` (T, K) px² per
    coordinate: the members' disagreement.
    """
    p = np.clip(np.nan_to_num(np.asarray(confidence, dtype=np.float64), nan=0.0), 0.0, 1.0)  # (T, K)
    inlier = np.full(p.shape, (0.5 * CORRECT_FRACTION * size) ** 2)  # (T, K) px²
    if spread is not None:
        inlier = np.maximum(inlier, np.nan_to_num(np.asarray(spread, dtype=np.float64), nan=0.0))
    outlier = (0.5 * size if outlier_sigma is None else float(outlier_sigma)) ** 2
    variance = p * inlier + (1.0 - p) * np.maximum(outlier, inlier)
    if ensemble_variance is not None:
        variance = variance + np.nan_to_num(np.asarray(ensemble_variance, dtype=np.float64), nan=0.0)
    return variance


# ---- median ----------------------------------------------------------------------------------------------------
def _fill_gaps(values: np.ndarray) -> np.ndarray:
    """(T, S) with NaN gaps → linear interpolation inside, the nearest value outside; all-NaN columns stay NaN."""
    out = values.copy()
    t = np.arange(len(values))
    for s in range(values.shape[1]):
        known = np.isfinite(values[:, s])
        if known.any() and not known.all():
            out[:, s] = np.interp(t, t[known], values[known, s])
    return out


def median_smooth(
    keypoints: np.ndarray,
    confidence: np.ndarray,
    window: int = DEFAULT_WINDOW,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
) -> Smoothed:
    """The centred moving median of the confident positions (odd ``window`` frames), gaps filled (module docstring)."""
    xy, conf = _check(keypoints, confidence)
    if window < 1 or window % 2 == 0:
        raise SmoothingError(f"the median window must be an odd number of frames, got {window}")
    t, k = conf.shape
    if t < window:
        raise SmoothingError(f"the video has {t} frame(s), fewer than the median window of {window}: use a window "
                             f"of at most {t if t % 2 else t - 1} frames, or --smooth kalman (no window)")
    observed = confident(conf, min_confidence, xy)  # (T, K)
    series = np.where(observed[..., None], xy, np.nan).reshape(t, k * 2)  # (T, K*2)
    half = window // 2
    padded = np.pad(series, ((half, half), (0, 0)), constant_values=np.nan)  # (T + 2 half, K*2)
    windows = np.lib.stride_tricks.sliding_window_view(padded, window, axis=0)  # (T, K*2, window)
    with np.errstate(all="ignore"), _quiet_nan_warnings():
        med = np.nanmedian(windows, axis=-1)  # (T, K*2): NaN where the window holds no confident value
    return Smoothed(_fill_gaps(med).reshape(t, k, 2), None, None, observed)


class _quiet_nan_warnings:
    """``np.nanmedian`` warns on an all-NaN window; such windows are gaps, filled afterwards."""

    def __enter__(self) -> None:
        import warnings

        self._catch = warnings.catch_warnings()
        self._catch.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc: object) -> None:
        self._catch.__exit__(*exc)


# ---- Kalman ----------------------------------------------------------------------------------------------------
# The state of one series is (position, velocity) with covariance [[p00, p01], [p01, p11]]; x_{t+1} = F x_t + w,
# F = [[1, 1], [0, 1]], w ~ N(0, q [[1/3, 1/2], [1/2, 1]]) (white-noise acceleration over one frame). Written with
# the covariance's three entries as arrays over the series: every step is a handful of vector operations.
def _process_cov(q: np.ndarray) -> np.ndarray:
    """(S,) q → (S, 2, 2) covariance of white-noise acceleration over one frame for (position, velocity)."""
    return q[:, None, None] * np.array([[1.0 / 3.0, 0.5], [0.5, 1.0]])


def _forward(
    y: np.ndarray, r: np.ndarray, q: np.ndarray, p0: np.ndarray, keep: bool
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Kalman filter over S independent series.

    y (T, S) observations (NaN: none), r (T, S) their variances, q (S,) process noise, p0 (S,) the first position's
    (and velocity's) variance. Returns the log-likelihood (S,) and, with ``keep``, the predicted and filtered
    states (T, S) ``x``, ``v``, ``p00``, ``p01``, ``p11`` under ``pred_*`` / ``filt_*``.
    """
    t_len, s = y.shape
    first = np.argmax(np.isfinite(y), axis=0)  # (S,) first observed frame (0 where none)
    x = np.nan_to_num(y[first, np.arange(s)])  # (S,) position
    v = np.zeros(s)  # (S,) velocity
    p00, p01, p11 = p0.astype(np.float64).copy(), np.zeros(s), p0.astype(np.float64).copy()
    loglik = np.zeros(s)
    names = ("x", "v", "p00", "p01", "p11")
    store = {f"{kind}_{n}": np.empty((t_len, s)) for kind in ("pred", "filt") for n in names} if keep else {}
    for t in range(t_len):
        if t > 0:
            x = x + v
            p00, p01, p11 = p00 + 2.0 * p01 + p11 + q / 3.0, p01 + p11 + q / 2.0, p11 + q
        if keep:
            for n, a in zip(names, (x, v, p00, p01, p11)):
                store[f"pred_{n}"][t] = a
        obs = np.isfinite(y[t])  # (S,)
        var = p00 + r[t]  # (S,) innovation variance
        innov = np.where(obs, y[t] - x, 0.0)  # (S,)
        k0, k1 = np.where(obs, p00 / var, 0.0), np.where(obs, p01 / var, 0.0)  # (S,) gain
        x, v = x + k0 * innov, v + k1 * innov
        p00, p01, p11 = (1.0 - k0) * p00, (1.0 - k0) * p01, p11 - k1 * p01
        loglik -= np.where(obs, 0.5 * (np.log(2.0 * np.pi * var) + innov**2 / var), 0.0)
        if keep:
            for n, a in zip(names, (x, v, p00, p01, p11)):
                store[f"filt_{n}"][t] = a
    return loglik, store


def _backward(store: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Rauch–Tung–Striebel: (T, S) smoothed positions and their variances."""
    f = {n: store[f"filt_{n}"] for n in ("x", "v", "p00", "p01", "p11")}
    pr = {n: store[f"pred_{n}"] for n in ("x", "v", "p00", "p01", "p11")}
    x, v, s00, s01, s11 = (f[n][-1].copy() for n in ("x", "v", "p00", "p01", "p11"))
    pos, var = np.empty_like(f["x"]), np.empty_like(f["x"])
    pos[-1], var[-1] = x, s00
    for t in range(len(pos) - 2, -1, -1):
        a, b, c = f["p00"][t], f["p01"][t], f["p11"][t]  # filtered covariance at t
        pa, pb, pc = pr["p00"][t + 1], pr["p01"][t + 1], pr["p11"][t + 1]  # predicted covariance at t + 1
        det = pa * pc - pb * pb
        # gain G = P_f Fᵀ P_pred⁻¹, with P_f Fᵀ = [[a + b, b], [b + c, c]]
        g00, g01 = ((a + b) * pc - b * pb) / det, (b * pa - (a + b) * pb) / det
        g10, g11 = ((b + c) * pc - c * pb) / det, (c * pa - (b + c) * pb) / det
        dx, dv = x - pr["x"][t + 1], v - pr["v"][t + 1]
        x, v = f["x"][t] + g00 * dx + g01 * dv, f["v"][t] + g10 * dx + g11 * dv
        d00, d01, d11 = s00 - pa, s01 - pb, s11 - pc  # smoothed minus predicted covariance at t + 1
        h00, h01 = g00 * d00 + g01 * d01, g00 * d01 + g01 * d11  # G D
        h10, h11 = g10 * d00 + g11 * d01, g10 * d01 + g11 * d11
        s00, s01, s11 = a + h00 * g00 + h01 * g01, b + h00 * g10 + h01 * g11, c + h10 * g10 + h11 * g11
        pos[t], var[t] = x, s00
    return pos, var


def kalman_smooth(
    keypoints: np.ndarray,
    confidence: np.ndarray,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    spread: np.ndarray | None = None,
    ensemble_variance: np.ndarray | None = None,
    size: float | None = None,
    process_noise: float | np.ndarray | None = None,
    outlier_sigma: float | np.ndarray | None = None,
) -> Smoothed:
    """The Kalman (RTS) smoother of the module docstring.

    spread: (T, K) px² the head's own variance of each prediction, if it has one; ensemble_variance: (T, K) px² per
    coordinate, the variance of an ensemble's members around their mean; size: the animal's size in px (default:
    ``animal_size``); process_noise q (px²/frame³) and outlier_sigma σ_out (px): one value for all keypoints or (K,)
    — by default chosen per keypoint by the marginal likelihood over ``Q_GRID`` × (size / 100)² and
    ``OUTLIER_GRID`` × size.
    """
    xy, conf = _check(keypoints, confidence)
    t, k = conf.shape
    observed = confident(conf, min_confidence, xy)  # (T, K)
    size = animal_size(xy) if size is None else float(size)
    y = np.where(observed[..., None], xy, np.nan).transpose(0, 2, 1).reshape(t, 2 * k)  # (T, 2K) x of all, then y
    q_grid = np.asarray(Q_GRID) * (size / 100.0) ** 2 if process_noise is None else None
    out_grid = np.asarray(OUTLIER_GRID) * size if outlier_sigma is None else None
    q = _per_keypoint(process_noise, k, "process noise")
    out_sigma = _per_keypoint(outlier_sigma, k, "outlier sigma")
    p0 = np.full(2 * k, (0.5 * size) ** 2)
    if q_grid is not None or out_grid is not None:
        qs = q_grid if q_grid is not None else np.array([np.nan])
        outs = out_grid if out_grid is not None else np.array([np.nan])
        pairs = [(a, b) for a in qs for b in outs]  # G candidate (q, σ_out)
        r = np.concatenate([_variance_rows(conf, size, spread, ensemble_variance, b, out_sigma) for _, b in pairs],
                           axis=1)  # (T, G * 2K)
        qq = np.concatenate([np.tile(q if np.isnan(a) else np.full(k, a), 2) for a, _ in pairs])  # (G * 2K,)
        loglik, _ = _forward(np.tile(y, (1, len(pairs))), r, qq, np.tile(p0, len(pairs)), keep=False)
        best = np.argmax(loglik.reshape(len(pairs), 2, k).sum(axis=1), axis=0)  # (K,) x and y share parameters
        q = np.array([q[j] if np.isnan(pairs[g][0]) else pairs[g][0] for j, g in enumerate(best)])
        out_sigma = np.array([out_sigma[j] if np.isnan(pairs[g][1]) else pairs[g][1] for j, g in enumerate(best)])
    r = _variance_rows(conf, size, spread, ensemble_variance, np.nan, out_sigma)  # (T, 2K)
    _, store = _forward(y, r, np.tile(q, 2), p0, keep=True)
    pos, var = _backward(store)  # (T, 2K)
    out = pos.reshape(t, 2, k).transpose(0, 2, 1)  # (T, K, 2)
    never = ~observed.any(axis=0)  # (K,) keypoints never seen: nothing to smooth
    out[:, never] = np.nan
    variance = var.reshape(t, 2, k).mean(axis=1)  # (T, K)
    variance[:, never] = np.nan
    return Smoothed(out, variance, q, observed, out_sigma)


def _per_keypoint(value: float | np.ndarray | None, k: int, what: str) -> np.ndarray:
    """A parameter given for all keypoints or per keypoint → (K,); NaN where it is to be fitted."""
    if value is None:
        return np.full(k, np.nan)
    arr = np.broadcast_to(np.asarray(value, dtype=np.float64), (k,)).copy()
    if (arr <= 0).any() or not np.isfinite(arr).all():
        raise SmoothingError(f"the {what} must be positive, got {value}")
    return arr


def _variance_rows(
    conf: np.ndarray, size: float, spread: np.ndarray | None, ensemble_variance: np.ndarray | None,
    outlier: float, per_keypoint: np.ndarray,
) -> np.ndarray:
    """(T, 2K) observation variances of the x and y series with σ_out ``outlier`` (NaN: ``per_keypoint`` (K,))."""
    sigma = per_keypoint if np.isnan(outlier) else np.full(conf.shape[1], outlier)  # (K,)
    r = np.stack([observation_variance(conf[:, j:j + 1], size, None if spread is None else spread[:, j:j + 1],
                                       None if ensemble_variance is None else ensemble_variance[:, j:j + 1],
                                       float(sigma[j]))[:, 0] for j in range(conf.shape[1])], axis=1)  # (T, K)
    return np.concatenate([r, r], axis=1)


def smooth(
    method: str,
    keypoints: np.ndarray,
    confidence: np.ndarray,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    window: int = DEFAULT_WINDOW,
    spread: np.ndarray | None = None,
    ensemble_variance: np.ndarray | None = None,
) -> Smoothed:
    """``none`` | ``median`` | ``kalman`` by name (``predict.py --smooth``)."""
    if method == "none":
        xy, conf = _check(keypoints, confidence)
        return Smoothed(xy.copy(), None, None, confident(conf, min_confidence, xy))
    if method == "median":
        return median_smooth(keypoints, confidence, window, min_confidence)
    if method == "kalman":
        return kalman_smooth(keypoints, confidence, min_confidence, spread, ensemble_variance)
    raise SmoothingError(f"unknown smoother {method!r}: one of {', '.join(SMOOTHERS)}")
