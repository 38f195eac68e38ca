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

where ``p`` is the keypoint's calibrated P(correct): a correct prediction is off by about ``σ_in`` (by default half
the correctness threshold of 0.1 × the animal's size, or the head's own ``spread`` where given), a wrong one lands
anywhere on the animal (``σ_out``, half the animal's size). This is the variance of that two-part mixture, so a
confident keypoint is trusted and an uncertain one barely moves the track. The filter runs forward, the
Rauch–Tung–Striebel pass backward (the whole video is known: no lag from filtering alone), and ``q`` is chosen per
keypoint by the largest marginal likelihood of the observations over a grid (the idea of Lightning Pose's
ensemble Kalman smoother, which fits its smoothing parameter the same way). Everything is vectorised over keypoints,
coordinates and grid values; one Python loop runs over time.

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


class SmoothingError(ValueError):
    """A track that cannot be smoothed as asked: says what and why."""


@dataclass(frozen=True, eq=False)
class Smoothed:
    """A smoothed track."""

    keypoints: np.ndarray  # (T, K, 2) float64 x,y image pixels, finite wherever the keypoint was ever confident
    variance: np.ndarray | None  # (T, K) float64 posterior variance per coordinate, px² (Kalman); None (median)
    process_noise: np.ndarray | None  # (K,) the chosen q, px²/frame³ (Kalman); None (median)
    observed: np.ndarray  # (T, K) bool: the keypoints the smoother read (confident); the rest were filled


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


def animal_size(keypoints: np.ndarray, observed: np.ndarray) -> float:
    """The median over frames of the larger side of the observed keypoints' extent, px (1 px at least): the scale of
    the default noise levels. keypoints (T, K, 2), observed (T, K) bool."""
    xy = np.where(observed[..., None], keypoints, np.nan)  # (T, K, 2)
    enough = observed.sum(axis=1) >= 2  # (T,) frames with an extent
    if not enough.any():
        return 1.0
    extent = np.nanmax(xy[enough], axis=1) - np.nanmin(xy[enough], axis=1)  # (T', 2)
    return max(float(np.median(extent.max(axis=1))), 1.0)


def observation_variance(
    confidence: np.ndarray,
    size: float,
    spread: np.ndarray | None = None,
    ensemble_variance: np.ndarray | None = None,
) -> np.ndarray:
    """(T, K) px² per coordinate: ``p σ_in² + (1 − p) σ_out² (+ ensemble variance)`` (the module docstring).

    σ_in = half of the correctness threshold (``CORRECT_FRACTION × size``), or √spread where a spread (T, K) px² is
    given and larger; σ_out = size / 2. ``ensemble_variance`` (T, K) px² per coordinate: the members' disagreement.
    """
    p = np.clip(np.nan_to_num(np.asarray(confidence, dtype=np.float64), nan=0.0), 0.0, 1.0)  # (T, K)
    inlier = np.full(p.shape, (0.5 * CORRECT_FRACTION * size) ** 2)  # (T, K) px²
    if spread is not None:
        inlier = np.maximum(inlier, np.nan_to_num(np.asarray(spread, dtype=np.float64), nan=0.0))
    variance = p * inlier + (1.0 - p) * (0.5 * size) ** 2
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
def _process_cov(q: np.ndarray) -> np.ndarray:
    """(S,) q → (S, 2, 2) covariance of white-noise acceleration over one frame for (position, velocity)."""
    return q[:, None, None] * np.array([[1.0 / 3.0, 0.5], [0.5, 1.0]])


_F = np.array([[1.0, 1.0], [0.0, 1.0]])  # position += velocity, per frame


def _forward(
    y: np.ndarray, r: np.ndarray, q: np.ndarray, p0: np.ndarray, keep: bool
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Kalman filter over S independent series.

    y (T, S) observations (NaN: none), r (T, S) their variances, q (S,) process noise, p0 (S,) the first position's
    variance. Returns the log-likelihood (S,) and, with ``keep``, the filtered and predicted means / covariances.
    """
    t_len, s = y.shape
    qcov = _process_cov(q)  # (S, 2, 2)
    first = np.argmax(np.isfinite(y), axis=0)  # (S,) first observed frame (0 where none)
    m = np.zeros((s, 2))  # (S, 2) position, velocity
    m[:, 0] = np.nan_to_num(y[first, np.arange(s)])
    cov = np.zeros((s, 2, 2))
    cov[:, 0, 0] = p0
    cov[:, 1, 1] = p0
    loglik = np.zeros(s)
    store: dict[str, np.ndarray] = {}
    if keep:
        store = {"m_pred": np.empty((t_len, s, 2)), "c_pred": np.empty((t_len, s, 2, 2)),
                 "m_filt": np.empty((t_len, s, 2)), "c_filt": np.empty((t_len, s, 2, 2))}
    for t in range(t_len):
        if t > 0:
            m = m @ _F.T  # (S, 2)
            cov = _F @ cov @ _F.T + qcov  # (S, 2, 2)
        if keep:
            store["m_pred"][t], store["c_pred"][t] = m, cov
        obs = np.isfinite(y[t])  # (S,)
        if obs.any():
            innov = np.where(obs, y[t] - m[:, 0], 0.0)  # (S,)
            var = cov[:, 0, 0] + r[t]  # (S,) innovation variance
            gain = cov[:, :, 0] / var[:, None]  # (S, 2)
            gain[~obs] = 0.0
            m = m + gain * innov[:, None]
            cov = cov - gain[:, :, None] * cov[:, None, 0, :]  # (I - K H) P with H = [1, 0]
            loglik -= np.where(obs, 0.5 * (np.log(2 * np.pi * var) + innov**2 / var), 0.0)
        if keep:
            store["m_filt"][t], store["c_filt"][t] = m, cov
    return loglik, store


def _backward(store: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Rauch–Tung–Striebel: (T, S) smoothed positions and their variances."""
    m_s, c_s = store["m_filt"][-1].copy(), store["c_filt"][-1].copy()
    t_len = len(store["m_filt"])
    pos, var = np.empty(store["m_filt"].shape[:2]), np.empty(store["m_filt"].shape[:2])
    pos[-1], var[-1] = m_s[:, 0], c_s[:, 0, 0]
    for t in range(t_len - 2, -1, -1):
        c_f, c_p = store["c_filt"][t], store["c_pred"][t + 1]  # (S, 2, 2)
        gain = c_f @ _F.T @ np.linalg.inv(c_p)  # (S, 2, 2)
        m_s = store["m_filt"][t] + (gain @ (m_s - store["m_pred"][t + 1])[:, :, None])[:, :, 0]
        c_s = c_f + gain @ (c_s - c_p) @ np.swapaxes(gain, 1, 2)
        pos[t], var[t] = m_s[:, 0], c_s[:, 0, 0]
    return pos, var


def kalman_smooth(
    keypoints: np.ndarray,
    confidence: np.ndarray,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    spread: np.ndarray | None = None,
    ensemble_variance: np.ndarray | None = None,
    size: float | None = None,
    process_noise: float | np.ndarray | None = None,
) -> Smoothed:
    """The Kalman (RTS) smoother of the module docstring.

    spread: (T, K) px² the head's own variance of each prediction, if it has one; ensemble_variance: (T, K) px² per
    coordinate, the variance of an ensemble's members around their mean; size: the animal's size in px (default:
    ``animal_size`` of the confident keypoints); process_noise: q in px²/frame³, one for all keypoints or (K,) — by
    default chosen per keypoint by the marginal likelihood over ``Q_GRID`` × (size / 100)².
    """
    xy, conf = _check(keypoints, confidence)
    t, k = conf.shape
    observed = confident(conf, min_confidence, xy)  # (T, K)
    size = animal_size(xy, observed) if size is None else float(size)
    r = observation_variance(conf, size, spread, ensemble_variance)  # (T, K) px²
    y = np.where(observed[..., None], xy, np.nan)  # (T, K, 2)
    y2 = y.transpose(0, 2, 1).reshape(t, 2 * k)  # (T, 2K) x of every keypoint, then y
    r2 = np.concatenate([r, r], axis=1)  # (T, 2K)
    p0 = np.full(2 * k, (0.5 * size) ** 2)
    unit = (size / 100.0) ** 2
    if process_noise is None:
        grid = np.asarray(Q_GRID) * unit  # (G,)
        g = len(grid)
        loglik, _ = _forward(np.tile(y2, (1, g)), np.tile(r2, (1, g)), np.repeat(grid, 2 * k),
                             np.tile(p0, g), keep=False)  # (G * 2K,)
        per_keypoint = loglik.reshape(g, 2, k).sum(axis=1)  # (G, K): x and y share q
        q = grid[np.argmax(per_keypoint, axis=0)]  # (K,)
    else:
        q = np.broadcast_to(np.asarray(process_noise, dtype=np.float64), (k,)).copy()
        if (q <= 0).any() or not np.isfinite(q).all():
            raise SmoothingError(f"the process noise must be positive, got {process_noise}")
    _, store = _forward(y2, r2, np.concatenate([q, q]), p0, keep=True)
    pos, var = _backward(store)  # (T, 2K)
    out = pos.reshape(t, 2, k).transpose(0, 2, 1)  # (T, K, 2)
    never = ~observed.any(axis=0)  # (K,) keypoints never seen: nothing to smooth
    out[:, never] = np.nan
    variance = var.reshape(t, 2, k).mean(axis=1)  # (T, K)
    variance[:, never] = np.nan
    return Smoothed(out, variance, q, observed)


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
