"""Calibration maps: raw features → P(correct), fitted on validation predictions, stored as plain dicts."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.optimize
import torch
import torch.nn.functional as F

from kpreg.metrics.calibration.features import (
    ArrayLike,
    CalibrationError,
    as_features,
    as_fit_inputs,
    as_indices,
    calibration_features,
)

STATE_FORMAT = 1  # bump when a state's keys change meaning; from_state refuses other formats


def platt_targets(correct: torch.Tensor) -> torch.Tensor:
    """(N,) bool → (N,) float64 soft targets of Platt (1999, §2.2): ``(N₊ + 1) / (N₊ + 2)`` for a correct
    keypoint, ``1 / (N₋ + 2)`` for a wrong one. They are the posterior means under a uniform prior, keep
    every fit finite (all correct, all wrong, separable scores) and never output exactly 0 or 1."""
    n_pos = int(correct.sum())
    n_neg = len(correct) - n_pos
    pos = torch.tensor((n_pos + 1.0) / (n_pos + 2.0), dtype=torch.float64)  # tensors: Python scalars would make
    neg = torch.tensor(1.0 / (n_neg + 2.0), dtype=torch.float64)  # torch.where return float32
    return torch.where(correct, pos, neg)


class Calibrator:
    """Raw features → P(correct). Subclasses implement ``_fit``, ``_predict``, ``_state`` and ``_load``."""

    method: ClassVar[str]

    def fit(
        self, features: ArrayLike, correct: ArrayLike, keypoint_index: ArrayLike | None = None
    ) -> Calibrator:
        """Fit on ``features`` (N, F) or raw scores (N,), ``correct`` (N,) bool, ``keypoint_index`` (N,) or None.
        Returns ``self``."""
        where = f"{type(self).__name__}.fit"
        x, y, idx = as_fit_inputs(features, correct, keypoint_index, where)  # (N, F), (N,), (N,) or None
        if len(x) == 0:
            raise CalibrationError(f"{where}: no samples to fit on")
        self._fit(x, y, idx)
        return self

    def __call__(self, features: ArrayLike, keypoint_index: ArrayLike | None = None) -> torch.Tensor:
        """(N, F) features or (N,) raw scores → (N,) float64 probabilities in [0, 1], on the input's device."""
        where = f"{type(self).__name__}"
        x = as_features(features, where)  # (N, F)
        idx = as_indices(keypoint_index, len(x), where)
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

    Fitted by ``scipy.optimize.minimize(method="trust-exact")`` on standardised features with
    :func:`logistic_objective`'s exact gradient and Hessian: a strictly convex objective of at most three
    parameters, so exact Newton steps (a 3 × 3 factorisation) inside a trust region converge in a few iterations
    from any start (Newton-CG solves the same tiny system iteratively; L-BFGS-B ignores the Hessian). The trust
    region judges a step by the objective's change, which rounding hides below a gradient of about 1e-8 per
    sample: the search stops there and one Newton step ends it at machine precision. A feature column that is
    constant on the fit data (the FC head's 1.0) gets weight 0: the map is then the smoothed rate of correct
    keypoints.
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

        @functools.lru_cache(maxsize=1)  # scipy asks for f and g, then for H, at each point: compute them once
        def at(point: bytes) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            return logistic_objective(a, t, torch.frombuffer(bytearray(point), dtype=torch.float64))

        def value_and_gradient(theta: np.ndarray) -> tuple[float, np.ndarray]:
            f, g, _ = at(theta.tobytes())
            return float(f), g.numpy()

        def hessian(theta: np.ndarray) -> np.ndarray:
            return at(theta.tobytes())[2].numpy()

        start = np.zeros(a.shape[1])
        start[0] = float(torch.logit(t.mean()))  # the optimum when no column varies; a good start otherwise
        result = scipy.optimize.minimize(value_and_gradient, start, jac=True, hess=hessian, method="trust-exact",
                                         options={"gtol": 1e-8 * len(z), "maxiter": self.max_iter})
        theta = torch.from_numpy(result.x)  # (1 + d,)
        _, g, h = at(result.x.tobytes())
        # The last Newton step (lstsq: the Hessian of a saturated fit is singular).
        theta = theta - torch.linalg.lstsq(h, g[:, None], driver="gelsd").solution[:, 0]
        _, g, _ = logistic_objective(a, t, theta)
        # With 0/1 targets and separable scores the likelihood has no maximum: the weights walk off to infinity
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
        res = scipy.optimize.isotonic_regression(mean_t, weights=counts.astype(np.float64), increasing=True)
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

