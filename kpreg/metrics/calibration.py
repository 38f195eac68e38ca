"""Calibration (issue 15): a head's raw per-keypoint confidence → the probability that the keypoint is correct.

Every head scores its keypoints on its own scale (heatmap peak ≈ 1, SimCC peak ≈ 0.07, DSNT peak ≈ 0.16,
the FC head a constant 1, …). A *calibrator* maps these raw scores (and, for heads that have one, the log of
the predicted spread) to ONE meaning: ``P(correct)``, with "correct" defined by :func:`correct_keypoints`
(the per-keypoint OKS similarity ≥ 0.5; see ``docs/calibration.md`` for why). It is fitted on validation
predictions after training, stored in the checkpoint as a plain dict (:meth:`Calibrator.state_dict`,
loadable with ``torch.load(weights_only=True)`` and JSON-serialisable) and applied wherever a confidence is
shown or thresholded (:func:`calibrate_keypoints`).

Contents, in the order of the data flow:

* labels and features: :func:`correct_keypoints`, :func:`calibration_features`, :func:`gather_calibration_set`;
* maps: :class:`Identity`, :class:`Platt` (logistic regression, Newton's method), :class:`Isotonic`
  (pool-adjacent-violators, piecewise-linear at prediction time), :class:`PerKeypoint` (one map per keypoint
  with a shared fallback); named recipes in :data:`CALIBRATORS`; :meth:`Calibrator.from_state`;
* scores: :func:`reliability_bins`, :func:`expected_calibration_error`, :func:`brier_score`, :func:`log_loss`,
  :func:`auroc`, :func:`calibration_scores`;
* the protocol: :func:`cross_fit` (out-of-fold probabilities, folds by group) and :func:`choose_method`
  (the method is chosen by cross-fitted log-loss, not by taste);
* :func:`reliability_diagram`: the PNG.

Conventions: features are ``(N, F)`` float64 with column 0 the raw confidence and column 1 (optional) the
log spread; ``correct`` is ``(N,)`` bool; ``keypoint_index`` ``(N,)`` int in ``[0, K)``. Fitting runs in
float64 on the CPU and is deterministic; applying a fitted map is plain torch on the input's device.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import isotonic_regression

from kpreg.metrics.uncertainty import average_ranks

ArrayLike = torch.Tensor | np.ndarray | Sequence[float]
STATE_FORMAT = 1  # bump when a state's keys change meaning; from_state refuses other formats
LOG_LOSS_EPS = 1e-6  # probabilities are clipped to [eps, 1 - eps] in log_loss: one sure mistake costs ≤ 13.8 nats
MIN_LOG_SPREAD_PX2 = 1e-6  # spreads are floored before the log (a degenerate one-cell distribution has 0)


class CalibrationError(ValueError):
    """Bad input to calibration (the CLI turns a ValueError into one line and exit code 2)."""


# ------------------------------------------------------------------------------------------------------------
# What "correct" means, and the features a calibrator sees
# ------------------------------------------------------------------------------------------------------------
def keypoint_similarity(error: torch.Tensor, scale: torch.Tensor, sigmas: ArrayLike) -> torch.Tensor:
    """COCO's per-keypoint similarity ``ks = exp(−d² / (2 s² (2σ)²))`` (as ``COCOeval.computeOks``).

    error (B, K) pixel distances; scale (B,) ``s = sqrt(area)`` in the same pixels; sigmas (K,) in COCOeval
    units (COCO's nose 0.026). Returns (B, K) in (0, 1].
    """
    sig = torch.as_tensor(sigmas, dtype=torch.float64, device=error.device)  # (K,)
    if error.ndim != 2 or scale.shape != error.shape[:1] or sig.shape != error.shape[1:]:
        raise CalibrationError(f"keypoint_similarity: error {tuple(error.shape)}, scale {tuple(scale.shape)} "
                               f"and sigmas {tuple(sig.shape)} must be (B, K), (B,) and (K,)")
    var = (2.0 * sig) ** 2  # (K,) COCOeval's ``vars``
    s2 = scale.to(torch.float64).pow(2)[:, None]  # (B, 1) object area
    return torch.exp(-error.to(torch.float64).pow(2) / (2.0 * s2 * var))  # (B, K)


def correct_keypoints(
    pred: torch.Tensor, gt: torch.Tensor, scale: torch.Tensor, sigmas: ArrayLike, threshold: float = 0.5
) -> torch.Tensor:
    """(B, K) bool: the keypoint's OKS similarity is ≥ ``threshold``, i.e. its error is at most
    ``2σ_k · s · sqrt(−2 ln threshold)`` (≈ 2.35 σ_k s at 0.5: 6 % of s for COCO's nose, 25 % for a hip).

    pred, gt (B, K, 2) x,y pixels (any one space); scale (B,) ``sqrt(area)`` in the same pixels; sigmas (K,).
    Invisible keypoints get a value too; callers keep only the visible ones (:func:`gather_calibration_set`).
    """
    if not 0.0 < threshold < 1.0:
        raise CalibrationError(f"correct_keypoints: threshold must be in (0, 1), got {threshold}")
    error = (pred.to(torch.float64) - gt.to(torch.float64)).norm(dim=-1)  # (B, K) pixels
    return keypoint_similarity(error, scale, sigmas) >= threshold


def calibration_features(confidence: ArrayLike, spread: ArrayLike | None = None) -> torch.Tensor:
    """Raw confidence (any shape) and optional spread (same shape, input px²) → (N, F) float64 features:
    column 0 the raw confidence, column 1 ``log(max(spread, 1e-6))`` when a spread is given."""
    conf = torch.as_tensor(confidence, dtype=torch.float64).reshape(-1)  # (N,)
    if spread is None:
        return conf[:, None]  # (N, 1)
    var = torch.as_tensor(spread, dtype=torch.float64, device=conf.device).reshape(-1)  # (N,) px²
    if var.shape != conf.shape:
        raise CalibrationError(f"calibration_features: spread has {var.numel()} values, confidence {conf.numel()}")
    return torch.stack((conf, var.clamp(min=MIN_LOG_SPREAD_PX2).log()), dim=1)  # (N, 2)


@dataclass
class CalibrationSet:
    """Flattened visible keypoints of a validation run: what :func:`choose_method` and :func:`cross_fit` take."""

    features: torch.Tensor  # (N, F) float64
    correct: torch.Tensor  # (N,) bool
    keypoint_index: torch.Tensor  # (N,) int64 in [0, K)
    groups: torch.Tensor  # (N,) int64 sample index: all keypoints of one sample share a fold


def gather_calibration_set(
    confidence: torch.Tensor,
    correct: torch.Tensor,
    visibility: torch.Tensor,
    spread: torch.Tensor | None = None,
    sample_ids: torch.Tensor | None = None,
) -> CalibrationSet:
    """(B, K) raw confidence, correctness, visibility and optional spread → the visible keypoints, flattened.

    ``sample_ids`` (B,) groups samples for cross-fitting (e.g. the image id, so that two people of one image
    share a fold); default: one group per row.
    """
    b, k = confidence.shape
    for name, t in (("correct", correct), ("visibility", visibility), ("spread", spread)):
        if t is not None and tuple(t.shape) != (b, k):
            raise CalibrationError(f"gather_calibration_set: {name} is {tuple(t.shape)}, confidence {(b, k)}")
    ids = torch.arange(b) if sample_ids is None else torch.as_tensor(sample_ids).cpu().long()  # (B,)
    if ids.shape != (b,):
        raise CalibrationError(f"gather_calibration_set: sample_ids is {tuple(ids.shape)}, expected ({b},)")
    keep = visibility.cpu().bool()  # (B, K)
    feats = calibration_features(confidence.detach().cpu(), None if spread is None else spread.detach().cpu())
    return CalibrationSet(
        features=feats[keep.reshape(-1)],  # (N, F)
        correct=correct.cpu().bool()[keep],  # (N,)
        keypoint_index=torch.arange(k).expand(b, k)[keep],  # (N,)
        groups=ids[:, None].expand(b, k)[keep],  # (N,)
    )


# ------------------------------------------------------------------------------------------------------------
# Input checks shared by every map and score
# ------------------------------------------------------------------------------------------------------------
def _features(x: ArrayLike, where: str) -> torch.Tensor:
    """(N,) or (N, F) → (N, F) float64 on the input's device; finite values only."""
    t = torch.as_tensor(x, dtype=torch.float64)
    if t.ndim == 1:
        t = t[:, None]
    if t.ndim != 2 or t.shape[1] < 1:
        raise CalibrationError(f"{where}: features must be (N,) or (N, F), got shape {tuple(t.shape)}")
    bad = (~torch.isfinite(t)).any(dim=1).nonzero()
    if len(bad):
        raise CalibrationError(f"{where}: features row {int(bad[0])} is not finite: {t[int(bad[0])].tolist()}")
    return t


def _labels(y: ArrayLike, n: int, where: str) -> torch.Tensor:
    """(N,) bool or 0/1 → (N,) bool."""
    t = torch.as_tensor(y)
    if t.shape != (n,):
        raise CalibrationError(f"{where}: correct has shape {tuple(t.shape)}, expected ({n},)")
    if t.dtype != torch.bool:
        bad = ((t != 0) & (t != 1)).nonzero()
        if len(bad):
            raise CalibrationError(f"{where}: correct[{int(bad[0])}] = {t[int(bad[0])].item()} is not 0/1")
        t = t != 0
    return t


def _indices(idx: ArrayLike | None, n: int, where: str) -> torch.Tensor | None:
    """(N,) non-negative integers or None."""
    if idx is None:
        return None
    t = torch.as_tensor(idx)
    if t.shape != (n,) or t.is_floating_point():
        raise CalibrationError(f"{where}: keypoint_index must be (N,) = ({n},) integers, got {tuple(t.shape)} "
                               f"{t.dtype}")
    t = t.long()
    if n and int(t.min()) < 0:
        raise CalibrationError(f"{where}: keypoint_index[{int(t.argmin())}] = {int(t.min())} is negative")
    return t


def _probabilities(p: ArrayLike, where: str) -> torch.Tensor:
    """(N,) values in [0, 1] → float64 (scores are only defined on probabilities)."""
    t = torch.as_tensor(p, dtype=torch.float64).reshape(-1)
    bad = (~((t >= 0.0) & (t <= 1.0))).nonzero()  # also catches NaN
    if len(bad):
        i = int(bad[0])
        raise CalibrationError(f"{where}: confidence[{i}] = {t[i].item()} is not a probability in [0, 1] "
                               "(calibrate raw scores first)")
    return t


def platt_targets(correct: torch.Tensor) -> torch.Tensor:
    """(N,) bool → (N,) float64 soft targets of Platt (1999, §2.2): ``(N₊ + 1) / (N₊ + 2)`` for a correct
    keypoint, ``1 / (N₋ + 2)`` for a wrong one. They are the posterior means under a uniform prior, keep
    every fit finite (all correct, all wrong, separable scores) and never output exactly 0 or 1."""
    n_pos = int(correct.sum())
    n_neg = len(correct) - n_pos
    return torch.where(correct, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0)).to(torch.float64)


# ------------------------------------------------------------------------------------------------------------
# Maps
# ------------------------------------------------------------------------------------------------------------
class Calibrator:
    """Raw features → P(correct). Subclasses implement ``_fit``, ``_predict``, ``_state`` and ``_load``."""

    method: ClassVar[str]

    def fit(
        self, features: ArrayLike, correct: ArrayLike, keypoint_index: ArrayLike | None = None
    ) -> Calibrator:
        """Fit on ``features`` (N, F) or raw scores (N,), ``correct`` (N,) bool, ``keypoint_index`` (N,) or None.
        Returns ``self``."""
        where = f"{type(self).__name__}.fit"
        x = _features(features, where).cpu()  # (N, F)
        if len(x) == 0:
            raise CalibrationError(f"{where}: no samples to fit on")
        y = _labels(torch.as_tensor(correct).cpu(), len(x), where)  # (N,)
        idx = _indices(None if keypoint_index is None else torch.as_tensor(keypoint_index).cpu(), len(x), where)
        self._fit(x, y, idx)
        return self

    def __call__(self, features: ArrayLike, keypoint_index: ArrayLike | None = None) -> torch.Tensor:
        """(N, F) features or (N,) raw scores → (N,) float64 probabilities in [0, 1], on the input's device."""
        where = f"{type(self).__name__}"
        x = _features(features, where)  # (N, F)
        idx = _indices(keypoint_index, len(x), where)
        return self._predict(x, None if idx is None else idx.to(x.device))

    def state_dict(self) -> dict[str, Any]:
        """Plain dict of str / int / float / bool / None / lists (torch.load(weights_only=True) and JSON)."""
        return {"method": self.method, "format": STATE_FORMAT, **self._state()}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Calibrator:
        """Rebuild any calibrator from its :meth:`state_dict` (dispatches on ``state["method"]``)."""
        if not isinstance(state, Mapping) or "method" not in state:
            raise CalibrationError("calibration state: expected a dict with a 'method' key")
        kind = _REGISTRY.get(state["method"])
        if kind is None:
            raise CalibrationError(f"calibration state: unknown method {state['method']!r}; known: {sorted(_REGISTRY)}")
        if state.get("format") != STATE_FORMAT:
            raise CalibrationError(f"calibration state: format {state.get('format')!r}, this kpreg reads "
                                   f"{STATE_FORMAT}")
        try:
            return kind._load(state)
        except KeyError as err:
            raise CalibrationError(f"calibration state ({state['method']}): missing key {err}") from None

    # -- implemented by subclasses ------------------------------------------------------------------------
    def _fit(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor | None) -> None:
        raise NotImplementedError

    def _predict(self, x: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def _state(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def _load(cls, state: Mapping[str, Any]) -> Calibrator:
        raise NotImplementedError

    def _not_fitted(self) -> CalibrationError:
        return CalibrationError(f"{type(self).__name__}: not fitted (call fit or from_state first)")


class Identity(Calibrator):
    """The raw score clamped to [0, 1]: the baseline every fitted map has to beat."""

    method = "identity"

    def _fit(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor | None) -> None:
        pass  # nothing to learn

    def _predict(self, x: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
        return x[:, 0].clamp(0.0, 1.0)  # (N,)

    def _state(self) -> dict[str, Any]:
        return {}

    @classmethod
    def _load(cls, state: Mapping[str, Any]) -> Identity:
        return cls()


Transform = Literal["log", "logit", "identity"]


def logistic_objective(
    design: torch.Tensor, targets: torch.Tensor, theta: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Negative log-likelihood of ``p = σ(design @ theta)`` against soft targets, its gradient and Hessian.

    design (N, D); targets (N,) in [0, 1]; theta (D,). ``f = Σ softplus(η) − t η`` (= −Σ t log p +
    (1 − t) log(1 − p), written without logs of p so that it never overflows); ``g = Aᵀ(p − t)``;
    ``H = Aᵀ diag(p (1 − p)) A``.
    """
    eta = design @ theta  # (N,)
    p = torch.sigmoid(eta)  # (N,)
    f = (F.softplus(eta) - targets * eta).sum()
    g = design.T @ (p - targets)  # (D,)
    h = design.T @ (design * (p * (1.0 - p))[:, None])  # (D, D)
    return f, g, h


class Platt(Calibrator):
    """Logistic regression ``p = σ(b + w₀ T(score) [+ w₁ log spread])`` fitted by maximum likelihood.

    Args:
        transform: ``T``: ``"log"`` (``log max(s, floor)``; scores live on very different scales across heads,
            and a peak probability is multiplicative), ``"logit"`` (``logit clamp(s, floor, 1 − floor)``, for
            sigmoid-like scores) or ``"identity"`` (Platt's original, linear in the score).
        use_spread: also use feature column 1 (the log spread).
        prior_correction: fit to Platt's soft targets (:func:`platt_targets`) instead of 0/1: the fit is then
            finite for every input; with 0/1 targets separable data or one class raise a CalibrationError.
        floor: the clamp of ``transform`` (scores ≤ 0, e.g. a negative heatmap peak, all map to ``log floor``).

    Newton's method with a backtracking line search on standardised features (the objective is strictly convex
    in the non-constant columns); a feature column that is constant on the fit data (the FC head's 1.0) gets
    weight 0, so the map is then the constant (smoothed) rate of correct keypoints.
    """

    method = "platt"
    max_iter: ClassVar[int] = 100

    def __init__(self, transform: Transform = "log", use_spread: bool = False, prior_correction: bool = True,
                 floor: float = 1e-6) -> None:
        if transform not in ("log", "logit", "identity"):
            raise CalibrationError(f"Platt: transform must be 'log', 'logit' or 'identity', got {transform!r}")
        self.transform = transform
        self.use_spread = use_spread
        self.prior_correction = prior_correction
        self.floor = floor
        self.weights: list[float] | None = None  # one per design column
        self.bias: float | None = None

    def design(self, x: torch.Tensor) -> torch.Tensor:
        """(N, F) features → (N, D) the regressors: T(score) [, log spread]."""
        s = x[:, 0]  # (N,) raw score
        if self.transform == "log":
            z = s.clamp(min=self.floor).log()
        elif self.transform == "logit":
            z = torch.logit(s.clamp(self.floor, 1.0 - self.floor))
        else:
            z = s
        if not self.use_spread:
            return z[:, None]  # (N, 1)
        if x.shape[1] < 2:
            raise CalibrationError("Platt(use_spread=True): features need column 1, the log spread (the head has "
                                   "no spread?)")
        return torch.stack((z, x[:, 1]), dim=1)  # (N, 2)

    def _fit(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor | None) -> None:
        z = self.design(x)  # (N, D)
        if self.prior_correction:
            t = platt_targets(y)  # (N,)
        elif bool(y.all()) or not bool(y.any()):
            raise CalibrationError("Platt(prior_correction=False): all keypoints are "
                                   f"{'correct' if bool(y.all()) else 'wrong'}; the maximum-likelihood map is "
                                   "infinite (use prior_correction=True)")
        else:
            t = y.to(torch.float64)
        mean, std = z.mean(dim=0), z.std(dim=0, correction=0)  # (D,) each
        varies = std > 1e-12 * mean.abs().clamp(min=1.0)  # (D,) constant columns carry no information
        a = torch.cat((torch.ones(len(z), 1, dtype=torch.float64), (z - mean) / torch.where(varies, std, 1.0)),
                      dim=1)[:, torch.cat((torch.tensor([True]), varies))]  # (N, 1 + d) intercept + standardised
        theta = torch.zeros(a.shape[1], dtype=torch.float64)
        theta[0] = torch.logit(t.mean())  # the optimum when no column varies; a good start otherwise
        f, g, h = logistic_objective(a, t, theta)
        tol = 1e-9 * len(z)
        for _ in range(self.max_iter):
            if float(g.abs().max()) <= tol:
                break
            step = torch.linalg.lstsq(h, g[:, None], driver="gelsd").solution[:, 0]  # (1 + d,) Newton direction
            decrease = float(g @ step)
            lr = 1.0
            while lr > 1e-10:  # Armijo backtracking: Newton's full step can overshoot far from the optimum
                f_new, g_new, h_new = logistic_objective(a, t, theta - lr * step)
                if float(f_new) <= float(f) - 1e-4 * lr * decrease:
                    break
                lr *= 0.5
            else:
                break  # no decrease possible: at the optimum to float precision, or diverging (checked below)
            theta, f, g, h = theta - lr * step, f_new, g_new, h_new
        # With 0/1 targets and separable scores the likelihood has no maximum: Newton walks off to infinity
        # while the gradient vanishes, so look at the size of the standardised weights as well.
        runaway = not self.prior_correction and len(theta) > 1 and float(theta[1:].abs().max()) > 30.0
        if float(g.abs().max()) > 1e-6 * len(z) or runaway:
            raise CalibrationError("Platt: the fit did not converge (separable scores with "
                                   "prior_correction=False?); use prior_correction=True")
        # Back to raw regressors: θ₀ + Σ θⱼ (zⱼ − μⱼ)/σⱼ = b + Σ wⱼ zⱼ.
        w = torch.zeros(z.shape[1], dtype=torch.float64)
        w[varies] = theta[1:] / std[varies]
        self.weights = [float(v) for v in w]
        self.bias = float(theta[0] - (w * mean).sum())

    def _predict(self, x: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
        if self.weights is None or self.bias is None:
            raise self._not_fitted()
        w = torch.tensor(self.weights, dtype=torch.float64, device=x.device)  # (D,)
        return torch.sigmoid(self.design(x) @ w + self.bias)  # (N,)

    def _state(self) -> dict[str, Any]:
        return {"transform": self.transform, "use_spread": self.use_spread,
                "prior_correction": self.prior_correction, "floor": self.floor,
                "weights": self.weights, "bias": self.bias}

    @classmethod
    def _load(cls, state: Mapping[str, Any]) -> Platt:
        out = cls(state["transform"], bool(state["use_spread"]), bool(state["prior_correction"]),
                  float(state["floor"]))
        out.weights = [float(v) for v in state["weights"]]
        out.bias = float(state["bias"])
        return out


def interpolate(x: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear ``y(x)`` through the points ``(xs, ys)`` (xs strictly increasing), constant beyond
    both ends (as ``np.interp``). x (N,); xs, ys (M,), M ≥ 1. Plain torch ops, so it runs on any device."""
    if len(xs) == 1:
        return ys.expand(len(x)).clone()
    i = torch.searchsorted(xs, x.contiguous(), right=True).clamp(1, len(xs) - 1)  # (N,) xs[i-1] ≤ x < xs[i]
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]  # (N,) each
    w = ((x - x0) / (x1 - x0)).clamp(0.0, 1.0)  # (N,) 0 left of xs[0], 1 right of xs[-1]
    return y0 + w * (y1 - y0)


class Isotonic(Calibrator):
    """The non-decreasing map of the raw score (column 0) closest to the targets in least squares (PAV).

    Tied scores are pooled first (their targets averaged, weighted by count), then scipy's
    ``isotonic_regression`` (pool-adjacent-violators) fits one value per distinct score. Only the two ends of
    each constant block are kept; at prediction time the map interpolates linearly between them and is
    constant beyond the fitted range (sklearn's ``IsotonicRegression(out_of_bounds="clip")``). With
    ``prior_correction`` (default) the targets are Platt's soft ones, so no output is exactly 0 or 1 and the
    log-loss of a held-out keypoint stays finite.
    """

    method = "isotonic"

    def __init__(self, prior_correction: bool = True) -> None:
        self.prior_correction = prior_correction
        self.xs: list[float] | None = None
        self.ys: list[float] | None = None

    def _fit(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor | None) -> None:
        t = (platt_targets(y) if self.prior_correction else y.to(torch.float64)).numpy()  # (N,)
        score = x[:, 0].numpy()  # (N,)
        uniq, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)  # (M,) sorted
        mean_t = np.bincount(inverse, weights=t, minlength=len(uniq)) / counts  # (M,) pooled ties
        res = isotonic_regression(mean_t, weights=counts.astype(np.float64), increasing=True)
        keep = np.zeros(len(uniq), dtype=bool)
        starts = res.blocks[:-1]  # first distinct score of every block; blocks[-1] = M
        keep[starts] = True
        keep[res.blocks[1:] - 1] = True  # and the last one
        self.xs = [float(v) for v in uniq[keep]]
        self.ys = [float(v) for v in res.x[keep]]

    def _predict(self, x: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
        if self.xs is None or self.ys is None:
            raise self._not_fitted()
        xs = torch.tensor(self.xs, dtype=torch.float64, device=x.device)  # (M,)
        ys = torch.tensor(self.ys, dtype=torch.float64, device=x.device)  # (M,)
        return interpolate(x[:, 0], xs, ys)  # (N,)

    def _state(self) -> dict[str, Any]:
        return {"prior_correction": self.prior_correction, "xs": self.xs, "ys": self.ys}

    @classmethod
    def _load(cls, state: Mapping[str, Any]) -> Isotonic:
        out = cls(bool(state["prior_correction"]))
        out.xs = [float(v) for v in state["xs"]]
        out.ys = [float(v) for v in state["ys"]]
        if not out.xs or len(out.xs) != len(out.ys):
            raise CalibrationError(f"calibration state (isotonic): {len(out.xs)} xs and {len(out.ys)} ys")
        return out


class PerKeypoint(Calibrator):
    """One map per keypoint (a wrist is wrong more often than an eye at the same raw score), fitted only where
    the keypoint has at least ``min_samples`` samples; the others use a map fitted on all keypoints.

    Args:
        base: the recipe of every map, a name in :data:`CALIBRATORS` (not a per-keypoint one).
        min_samples: fewer samples of a keypoint than this → the shared map.
        num_keypoints: K; default: 1 + the largest index seen by ``fit``. Predicting an index ≥ K is an error.
    """

    method = "per_keypoint"

    def __init__(self, base: str = "platt", min_samples: int = 100, num_keypoints: int | None = None) -> None:
        if base not in CALIBRATORS or base.startswith("per_keypoint"):
            raise CalibrationError(f"PerKeypoint: base must be one of "
                                   f"{[n for n in CALIBRATORS if not n.startswith('per_keypoint')]}, got {base!r}")
        self.base = base
        self.min_samples = min_samples
        self.num_keypoints = num_keypoints
        self.shared: Calibrator | None = None
        self.maps: list[Calibrator | None] = []

    def _fit(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor | None) -> None:
        if idx is None:
            raise CalibrationError("PerKeypoint.fit: keypoint_index is required")
        k = int(idx.max()) + 1 if self.num_keypoints is None else self.num_keypoints
        if int(idx.max()) >= k:
            raise CalibrationError(f"PerKeypoint.fit: keypoint_index {int(idx.max())} ≥ num_keypoints {k}")
        self.num_keypoints = k
        self.shared = CALIBRATORS[self.base]().fit(x, y)
        counts = torch.bincount(idx, minlength=k)  # (K,)
        self.maps = [CALIBRATORS[self.base]().fit(x[idx == j], y[idx == j]) if int(counts[j]) >= self.min_samples
                     else None for j in range(k)]

    def _predict(self, x: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
        if self.shared is None or self.num_keypoints is None:
            raise self._not_fitted()
        if idx is None:
            raise CalibrationError("PerKeypoint: keypoint_index is required to apply a per-keypoint map")
        if len(idx) and int(idx.max()) >= self.num_keypoints:
            raise CalibrationError(f"PerKeypoint: keypoint_index {int(idx.max())} ≥ num_keypoints "
                                   f"{self.num_keypoints} (the map was fitted on another skeleton?)")
        out = self.shared(x)  # (N,) the fallback everywhere …
        for j, cal in enumerate(self.maps):
            sel = idx == j  # (N,)
            if cal is not None and bool(sel.any()):
                out[sel] = cal(x[sel])  # … replaced where the keypoint has its own map
        return out

    def _state(self) -> dict[str, Any]:
        if self.shared is None:
            raise self._not_fitted()
        return {"base": self.base, "min_samples": self.min_samples, "num_keypoints": self.num_keypoints,
                "shared": self.shared.state_dict(),
                "maps": [None if c is None else c.state_dict() for c in self.maps]}

    @classmethod
    def _load(cls, state: Mapping[str, Any]) -> PerKeypoint:
        out = cls(state["base"], int(state["min_samples"]), int(state["num_keypoints"]))
        out.shared = Calibrator.from_state(state["shared"])
        out.maps = [None if s is None else Calibrator.from_state(s) for s in state["maps"]]
        if len(out.maps) != out.num_keypoints:
            raise CalibrationError(f"calibration state (per_keypoint): {len(out.maps)} maps for "
                                   f"{out.num_keypoints} keypoints")
        return out


_REGISTRY: dict[str, type[Calibrator]] = {c.method: c for c in (Identity, Platt, Isotonic, PerKeypoint)}

# Named recipes: the candidates of choose_method, the values of a ``--calibration`` option.
CALIBRATORS: dict[str, Callable[[], Calibrator]] = {
    "identity": Identity,
    "platt": Platt,
    "platt_logit": functools.partial(Platt, transform="logit"),
    "platt_spread": functools.partial(Platt, use_spread=True),
    "isotonic": Isotonic,
    "per_keypoint_platt": functools.partial(PerKeypoint, base="platt"),
    "per_keypoint_platt_spread": functools.partial(PerKeypoint, base="platt_spread"),
    "per_keypoint_isotonic": functools.partial(PerKeypoint, base="isotonic"),
}


def make_calibrator(method: str | Callable[[], Calibrator]) -> Calibrator:
    """A fresh, unfitted calibrator from a name in :data:`CALIBRATORS` or a zero-argument factory."""
    if callable(method):
        return method()
    if method not in CALIBRATORS:
        raise CalibrationError(f"unknown calibration method {method!r}; known: {sorted(CALIBRATORS)}")
    return CALIBRATORS[method]()


def calibrate_keypoints(
    calibrator: Calibrator, confidence: torch.Tensor, spread: torch.Tensor | None = None
) -> torch.Tensor:
    """Apply a fitted map to a batch: (B, K) raw confidence [and (B, K) spread, input px²] → (B, K)
    probabilities, in the confidence's dtype and device."""
    b, k = confidence.shape
    feats = calibration_features(confidence, spread)  # (B·K, F)
    idx = torch.arange(k, device=confidence.device).repeat(b)  # (B·K,) keypoint of each row
    return calibrator(feats, idx).reshape(b, k).to(confidence.dtype)


# ------------------------------------------------------------------------------------------------------------
# Scores of a calibration
# ------------------------------------------------------------------------------------------------------------
@dataclass
class ReliabilityBins:
    """Per-bin statistics (empty bins have count 0 and NaN means)."""

    edges: torch.Tensor  # (M + 1,) bin edges (equal width) or the first/last confidence of each bin (equal mass)
    count: torch.Tensor  # (M,) samples per bin
    confidence: torch.Tensor  # (M,) mean confidence
    accuracy: torch.Tensor  # (M,) share correct


def reliability_bins(
    confidence: ArrayLike, correct: ArrayLike, n_bins: int = 15, strategy: Literal["width", "mass"] = "width"
) -> ReliabilityBins:
    """Bin probabilities for ECE and the reliability diagram.

    ``"width"``: M equal bins ``[j/M, (j+1)/M)``, the last one closed (a confidence of exactly 1.0 is in bin
    M − 1; torchmetrics puts it in an extra bin of its own). ``"mass"``: sort by confidence and put the run of
    ties that starts at sorted position r in bin ⌊M r / N⌋ (equal counts up to ties; ties are never split, so
    a constant confidence is one bin whatever the order of the labels).
    """
    p = _probabilities(confidence, "reliability_bins").cpu()  # (N,)
    y = _labels(torch.as_tensor(correct).cpu().reshape(-1), len(p), "reliability_bins").to(torch.float64)
    if n_bins < 1:
        raise CalibrationError(f"reliability_bins: n_bins must be ≥ 1, got {n_bins}")
    if strategy == "width":
        edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float64)  # (M + 1,)
        bins = (torch.bucketize(p, edges, right=True) - 1).clamp(max=n_bins - 1)  # (N,)
    elif strategy == "mass":
        order = torch.argsort(p, stable=True)
        sp = p[order]  # (N,) sorted
        run_start = torch.ones(len(sp), dtype=torch.bool)
        run_start[1:] = sp[1:] != sp[:-1]
        first = torch.cummax(torch.where(run_start, torch.arange(len(sp)), 0), dim=0).values  # (N,) run's start
        bins = torch.empty(len(p), dtype=torch.long)
        bins[order] = torch.div(first * n_bins, max(len(p), 1), rounding_mode="floor")
        lo = torch.full((n_bins,), math.nan, dtype=torch.float64).scatter_reduce(0, bins, p, "amin",
                                                                                 include_self=False)
        hi = torch.full((n_bins,), math.nan, dtype=torch.float64).scatter_reduce(0, bins, p, "amax",
                                                                                 include_self=False)
        edges = torch.cat((lo, hi[-1:]))  # (M + 1,) informative only; NaN where a bin is empty
    else:
        raise CalibrationError(f"reliability_bins: strategy must be 'width' or 'mass', got {strategy!r}")
    count = torch.bincount(bins, minlength=n_bins).to(torch.float64)  # (M,)
    conf = torch.bincount(bins, weights=p, minlength=n_bins) / count  # (M,) NaN where empty (0 / 0)
    acc = torch.bincount(bins, weights=y, minlength=n_bins) / count  # (M,)
    return ReliabilityBins(edges=edges, count=count, confidence=conf, accuracy=acc)


def expected_calibration_error(
    confidence: ArrayLike, correct: ArrayLike, n_bins: int = 15, strategy: Literal["width", "mass"] = "width"
) -> float:
    """ECE = Σ_bins (n_b / N) · |accuracy_b − mean confidence_b| (bins of :func:`reliability_bins`)."""
    bins = reliability_bins(confidence, correct, n_bins, strategy)
    used = bins.count > 0
    n = float(bins.count.sum())
    if n == 0:
        return math.nan
    return float((bins.count[used] / n * (bins.accuracy[used] - bins.confidence[used]).abs()).sum())


def brier_score(confidence: ArrayLike, correct: ArrayLike) -> float:
    """Mean squared difference between the probability and the 0/1 outcome."""
    p = _probabilities(confidence, "brier_score")
    y = _labels(torch.as_tensor(correct).reshape(-1).to(p.device), len(p), "brier_score").to(torch.float64)
    return float((p - y).pow(2).mean()) if len(p) else math.nan


def log_loss(confidence: ArrayLike, correct: ArrayLike, eps: float = LOG_LOSS_EPS) -> float:
    """Mean negative log-likelihood in nats, probabilities clipped to [eps, 1 − eps]."""
    p = _probabilities(confidence, "log_loss").clamp(eps, 1.0 - eps)
    y = _labels(torch.as_tensor(correct).reshape(-1).to(p.device), len(p), "log_loss")
    return float(-torch.where(y, p.log(), (1.0 - p).log()).mean()) if len(p) else math.nan


def auroc(score: ArrayLike, correct: ArrayLike) -> float:
    """P(score of a random correct keypoint > score of a random wrong one), ties counting 1/2
    (Mann–Whitney U / (N₊ N₋) from average ranks). 0.5 for a constant score; NaN when a class is missing.
    Any real score works (raw or calibrated)."""
    s = _features(torch.as_tensor(score, dtype=torch.float64).reshape(-1).cpu(), "auroc")[:, 0]  # (N,)
    y = _labels(torch.as_tensor(correct).reshape(-1).cpu(), len(s), "auroc")
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = average_ranks(s) + 1.0  # (N,) 1-based
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def calibration_scores(confidence: ArrayLike, correct: ArrayLike, n_bins: int = 15) -> dict[str, float]:
    """Every score of a calibrated confidence, for tables and loggers.

    ``ece`` / ``ece_mass``: equal-width / equal-mass ECE; ``brier``; ``log_loss`` (nats); ``auroc``;
    ``precision_above_half``: share correct among keypoints with confidence > 0.5 (NaN if none);
    ``share_above_half``: how many keypoints that is; ``accuracy``: share correct; ``mean_confidence``;
    ``count``.
    """
    p = _probabilities(confidence, "calibration_scores").cpu()
    y = _labels(torch.as_tensor(correct).reshape(-1).cpu(), len(p), "calibration_scores")
    above = p > 0.5
    return {
        "ece": expected_calibration_error(p, y, n_bins, "width"),
        "ece_mass": expected_calibration_error(p, y, n_bins, "mass"),
        "brier": brier_score(p, y),
        "log_loss": log_loss(p, y),
        "auroc": auroc(p, y),
        "precision_above_half": float(y[above].double().mean()) if bool(above.any()) else math.nan,
        "share_above_half": float(above.double().mean()) if len(p) else math.nan,
        "accuracy": float(y.double().mean()) if len(p) else math.nan,
        "mean_confidence": float(p.mean()) if len(p) else math.nan,
        "count": float(len(p)),
    }


# ------------------------------------------------------------------------------------------------------------
# The protocol: cross-fitting and the choice of method
# ------------------------------------------------------------------------------------------------------------
def fold_assignment(n: int, folds: int = 5, seed: int = 0, groups: ArrayLike | None = None) -> torch.Tensor:
    """(N,) int64 fold of each sample: groups (default: one per sample) shuffled with ``seed`` and dealt to the
    folds in turn, so that every group is in exactly one fold and folds differ by at most one group."""
    if folds < 2:
        raise CalibrationError(f"cross-fitting: folds must be ≥ 2, got {folds}")
    g = np.arange(n) if groups is None else torch.as_tensor(groups).cpu().numpy().reshape(-1)
    if len(g) != n:
        raise CalibrationError(f"cross-fitting: groups has {len(g)} values for {n} samples")
    uniq, inverse = np.unique(g, return_inverse=True)
    if len(uniq) < folds:
        raise CalibrationError(f"cross-fitting: {len(uniq)} groups cannot fill {folds} folds")
    fold_of_group = np.empty(len(uniq), dtype=np.int64)
    fold_of_group[np.random.default_rng(seed).permutation(len(uniq))] = np.arange(len(uniq)) % folds
    return torch.from_numpy(fold_of_group[inverse.reshape(-1)])


@dataclass
class CrossFit:
    probability: torch.Tensor  # (N,) out-of-fold probabilities: sample i scored by a map fitted without its fold
    fold: torch.Tensor  # (N,) int64 fold of each sample
    final: Calibrator  # fitted on everything: the map to store in the checkpoint


def _out_of_fold(
    method: str | Callable[[], Calibrator], x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor | None,
    fold: torch.Tensor, folds: int,
) -> torch.Tensor:
    oof = torch.full((len(x),), math.nan, dtype=torch.float64)  # (N,)
    for f in range(folds):
        test = fold == f  # (N,)
        train = ~test
        cal = make_calibrator(method).fit(x[train], y[train], None if idx is None else idx[train])
        oof[test] = cal(x[test], None if idx is None else idx[test])
    return oof


def cross_fit(
    method: str | Callable[[], Calibrator],
    features: ArrayLike,
    correct: ArrayLike,
    folds: int = 5,
    seed: int = 0,
    groups: ArrayLike | None = None,
    keypoint_index: ArrayLike | None = None,
) -> CrossFit:
    """Out-of-fold probabilities (calibration never scored on the data it was fitted on) and the final map.

    ``groups`` (N,): keypoints of one sample/image share a group and so a fold (they are not independent:
    one blurry image makes all its keypoints wrong together).
    """
    x = _features(features, "cross_fit").cpu()  # (N, F)
    y = _labels(torch.as_tensor(correct).cpu(), len(x), "cross_fit")  # (N,)
    idx = _indices(None if keypoint_index is None else torch.as_tensor(keypoint_index).cpu(), len(x), "cross_fit")
    fold = fold_assignment(len(x), folds, seed, groups)
    oof = _out_of_fold(method, x, y, idx, fold, folds)
    return CrossFit(probability=oof, fold=fold, final=make_calibrator(method).fit(x, y, idx))


def default_candidates(num_features: int, per_keypoint: bool) -> tuple[str, ...]:
    """The methods worth comparing for features with ``num_features`` columns (2: with a log spread)."""
    names = ["identity", "platt", "platt_logit", "isotonic"]
    if num_features >= 2:
        names.append("platt_spread")
    if per_keypoint:
        names += ["per_keypoint_platt", "per_keypoint_isotonic"]
        if num_features >= 2:
            names.append("per_keypoint_platt_spread")
    return tuple(names)


SCORE_COLUMNS: tuple[str, ...] = ("log_loss", "brier", "ece", "ece_mass", "auroc", "precision_above_half")


@dataclass
class MethodChoice:
    name: str  # the chosen method (a key of CALIBRATORS or of the candidates mapping)
    calibrator: Calibrator  # the chosen method fitted on everything
    table: dict[str, dict[str, float]]  # method → its cross-fitted calibration_scores
    criterion: str  # the score that decided (lower is better)

    def markdown(self) -> str:
        """The table as Markdown, best first, the choice in bold."""
        rows = sorted(self.table.items(), key=lambda kv: kv[1][self.criterion])
        lines = ["| method | " + " | ".join(SCORE_COLUMNS) + " |", "|---" * (len(SCORE_COLUMNS) + 1) + "|"]
        for name, s in rows:
            label = f"**{name}**" if name == self.name else name
            lines.append(f"| {label} | " + " | ".join(f"{s[c]:.4f}" for c in SCORE_COLUMNS) + " |")
        return "\n".join(lines)


def choose_method(
    features: ArrayLike,
    correct: ArrayLike,
    candidates: Sequence[str] | Mapping[str, Callable[[], Calibrator]] | None = None,
    keypoint_index: ArrayLike | None = None,
    groups: ArrayLike | None = None,
    folds: int = 5,
    seed: int = 0,
    criterion: Literal["log_loss", "brier"] = "log_loss",
    n_bins: int = 15,
) -> MethodChoice:
    """Cross-fit every candidate on the same folds, score the out-of-fold probabilities, pick the lowest
    ``criterion`` (log-loss by default: a proper score that punishes confident mistakes; ties go to the
    earlier, simpler candidate) and fit the winner on everything.

    ``candidates``: names in :data:`CALIBRATORS`, or label → factory; default :func:`default_candidates`.
    """
    if criterion not in ("log_loss", "brier"):
        raise CalibrationError(f"choose_method: criterion must be 'log_loss' or 'brier', got {criterion!r}")
    x = _features(features, "choose_method").cpu()  # (N, F)
    y = _labels(torch.as_tensor(correct).cpu(), len(x), "choose_method")  # (N,)
    idx = _indices(None if keypoint_index is None else torch.as_tensor(keypoint_index).cpu(), len(x),
                   "choose_method")
    if candidates is None:
        candidates = default_candidates(x.shape[1], idx is not None)
    recipes: dict[str, str | Callable[[], Calibrator]] = (
        dict(candidates) if isinstance(candidates, Mapping) else {name: name for name in candidates})
    if not recipes:
        raise CalibrationError("choose_method: no candidates")
    fold = fold_assignment(len(x), folds, seed, groups)  # the same folds for every candidate: a paired comparison
    table = {name: calibration_scores(_out_of_fold(recipe, x, y, idx, fold, folds), y, n_bins)
             for name, recipe in recipes.items()}
    best = min(table, key=lambda name: table[name][criterion])  # min keeps the first of equal values
    return MethodChoice(name=best, calibrator=make_calibrator(recipes[best]).fit(x, y, idx), table=table,
                        criterion=criterion)


# ------------------------------------------------------------------------------------------------------------
# Reliability diagram
# ------------------------------------------------------------------------------------------------------------
def reliability_diagram(
    results: Mapping[str, tuple[ArrayLike, ArrayLike]],
    path: str | Path,
    n_bins: int = 15,
    title: str | None = None,
    columns: int = 3,
    dpi: int = 110,
) -> Path:
    """One panel per label: bin accuracy vs confidence (bars over each bin, dots at the bins' mean confidence)
    against the diagonal, the bin counts below on a log axis, the ECE in the legend. Writes a PNG of
    ``(3.4 · columns) × (3.9 · rows)`` inches at ``dpi`` to ``path`` (parents created) and returns it.
    Matplotlib's object API on an Agg canvas (no pyplot state)."""
    from matplotlib.ticker import LogLocator, NullFormatter

    from kpreg.drawing import new_figure  # matplotlib is only needed here

    if not results:
        raise CalibrationError("reliability_diagram: no results to draw")
    labels = list(results)
    ncol = max(1, min(columns, len(labels)))
    nrow = math.ceil(len(labels) / ncol)
    fig = new_figure(3.4 * ncol, 3.9 * nrow + (0.4 if title else 0.0), dpi=dpi)
    fig.set_layout_engine("constrained")  # no clipped labels, and the PNG keeps the figure's exact size
    grid = fig.add_gridspec(2 * nrow, ncol, height_ratios=[3.0, 1.0] * nrow)
    width = 1.0 / n_bins
    for i, label in enumerate(labels):
        conf, correct = results[label]
        p = torch.as_tensor(conf, dtype=torch.float64).reshape(-1)
        if len(p) == 0:
            raise CalibrationError(f"reliability_diagram: {label!r} has no samples")
        bins = reliability_bins(p, correct, n_bins, "width")
        ece = expected_calibration_error(p, correct, n_bins, "width")
        r, c = divmod(i, ncol)
        ax = fig.add_subplot(grid[2 * r, c])
        axc = fig.add_subplot(grid[2 * r + 1, c], sharex=ax)
        left = bins.edges[:-1].numpy()  # (M,)
        used = (bins.count > 0).numpy()
        acc = np.nan_to_num(bins.accuracy.numpy())
        ax.plot([0, 1], [0, 1], "--", color="0.5", linewidth=1.0, label="perfect")
        ax.bar(left[used], acc[used], width=width, align="edge", color="#4c9be8", edgecolor="#1f5f9e",
               linewidth=0.6, alpha=0.75, label=f"share correct per bin  (ECE {100 * ece:.1f} %)")
        ax.plot(bins.confidence.numpy()[used], acc[used], "o", color="#c0392b", markersize=3.5, clip_on=False,
                label="at the bin's mean confidence")
        ax.set_xlim(0.0, 1.0)
        ax.set_ylim(0.0, 1.0)
        ax.set_title(f"{label}  (n = {len(p)})", fontsize=10)
        ax.set_ylabel("share correct", fontsize=9)
        ax.tick_params(labelsize=8, labelbottom=False)
        ax.legend(loc="upper left", fontsize=7.5, frameon=False)
        axc.bar(left[used], bins.count.numpy()[used], width=width, align="edge", color="0.55")
        axc.set_yscale("log")  # counts pile up at high confidence: a linear axis hides the sparse bins
        axc.set_ylim(0.7, 2.0 * float(bins.count.max()))  # a bar of 1 stays visible, the tallest is not cut
        axc.yaxis.set_major_locator(LogLocator(base=10.0, numticks=4))
        axc.yaxis.set_minor_formatter(NullFormatter())
        axc.set_xlabel("confidence", fontsize=9)
        axc.set_ylabel("count", fontsize=8)
        axc.tick_params(labelsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=dpi)
    return out
