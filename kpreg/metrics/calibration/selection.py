"""The protocol: out-of-fold probabilities (cross-fitting) and the choice of a method by measurement."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from kpreg.metrics.calibration.features import ArrayLike, CalibrationError, as_fit_inputs
from kpreg.metrics.calibration.maps import Calibrator, PerKeypoint, make_calibrator
from kpreg.metrics.calibration.scores import calibration_scores


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


def _fresh(method: str | Callable[[], Calibrator], idx: torch.Tensor | None) -> Calibrator:
    """A new calibrator; a per-keypoint one learns K from all the data, not from the training folds (a rare
    keypoint may be missing from them and still have to be scored, by the shared map)."""
    cal = make_calibrator(method)
    if isinstance(cal, PerKeypoint) and cal.num_keypoints is None and idx is not None and len(idx):
        cal.num_keypoints = int(idx.max()) + 1
    return cal


def _out_of_fold(
    method: str | Callable[[], Calibrator], x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor | None,
    fold: torch.Tensor, folds: int,
) -> torch.Tensor:
    oof = torch.full((len(x),), math.nan, dtype=torch.float64)  # (N,)
    for f in range(folds):
        test = fold == f  # (N,)
        train = ~test
        cal = _fresh(method, idx).fit(x[train], y[train], None if idx is None else idx[train])
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
    x, y, idx = as_fit_inputs(features, correct, keypoint_index, "cross_fit")  # (N, F), (N,), (N,) or None
    fold = fold_assignment(len(x), folds, seed, groups)
    oof = _out_of_fold(method, x, y, idx, fold, folds)
    return CrossFit(probability=oof, fold=fold, final=_fresh(method, idx).fit(x, y, idx))


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
    probability: torch.Tensor  # (N,) the chosen method's out-of-fold probabilities (what to report)
    fold: torch.Tensor  # (N,) int64 fold of each sample

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
    x, y, idx = as_fit_inputs(features, correct, keypoint_index, "choose_method")  # (N, F), (N,), (N,) or None
    if candidates is None:
        candidates = default_candidates(x.shape[1], idx is not None)
    recipes: dict[str, str | Callable[[], Calibrator]] = (
        dict(candidates) if isinstance(candidates, Mapping) else {name: name for name in candidates})
    if not recipes:
        raise CalibrationError("choose_method: no candidates")
    fold = fold_assignment(len(x), folds, seed, groups)  # the same folds for every candidate: a paired comparison
    oof = {name: _out_of_fold(recipe, x, y, idx, fold, folds) for name, recipe in recipes.items()}
    table = {name: calibration_scores(p, y, n_bins) for name, p in oof.items()}
    best = min(table, key=lambda name: table[name][criterion])  # min keeps the first of equal values
    return MethodChoice(name=best, calibrator=_fresh(recipes[best], idx).fit(x, y, idx), table=table,
                        criterion=criterion, probability=oof[best], fold=fold)

