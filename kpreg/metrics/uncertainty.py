"""How well a head's confidence ranks its own errors.

Per labelled keypoint: the error normalised by the sample's own scale, ``‖pred − gt‖ / norm_length`` in original
pixels (``norm_length`` is PCKh's head size on MPII and the synthetic data, the larger side of the instance box
on every other dataset: see ``kpreg.formats.layout``), the head's confidence and, where the head has one, its
spread. A keypoint is *correct* when its normalised error is at most ``threshold`` (0.5 of a head size, 0.1 of a
box size: the dataset's ``EvaluationSpec.correct_threshold``), kpreg's one definition (``kpreg.metrics.correct``),
the event calibrated confidences are the probability of.

* ``conf_error_spearman``: Spearman rank correlation between −confidence and the error (ties get their
  average rank). +1: the least confident joints are exactly the worst ones; 0: no information (also
  reported when the confidence is constant, e.g. the FC head's 1).
* ``spread_error_spearman``: the same for the predicted spread (only for heads with ``Head.spread``).
* ``pck_top50``: the share (%) of correct keypoints among the ``fraction`` most confident ones (ties broken by
  order); ``pck_all`` the same over all keypoints, for reference.

States are concatenated across processes (``dist_reduce_fx="cat"``), so the values are the global ones
under DDP.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from scipy.stats import rankdata, spearmanr
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from kpreg.metrics.correct import normalised_error


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """(N,) values → (N,) float64 0-based ranks, tied values sharing their average rank (scipy's rankdata − 1)."""
    ranks = rankdata(values.detach().cpu().numpy()) - 1.0  # (N,)
    return torch.from_numpy(ranks).to(values.device)


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation of two (N,) tensors (scipy's ``spearmanr``: Pearson's r of the average ranks);
    0.0 when either is constant or N < 2 (undefined; scipy returns NaN with a warning).

    torchmetrics' ``spearman_corrcoef`` is not used: it adds 1e-6 to the denominator (r = 0.9999992 for a perfect
    ranking of 4 values), ranks in float32, and sums the ranks of a run of ties in int32, which overflows once
    that sum passes 2³¹ (100 000 values with 90 000 ties: 0.52025 where the correlation is 0.52039)."""
    x, y = a.detach().cpu().numpy(), b.detach().cpu().numpy()
    if len(x) < 2 or (x == x[0]).all() or (y == y[0]).all():
        return 0.0
    return float(spearmanr(x, y).statistic)


class UncertaintyMetric(Metric):
    """Args: threshold: the correctness threshold in units of ``norm_length`` (0.5 for a head size, 0.1 for a box
    size); fraction: the share of most confident keypoints (0.5)."""

    full_state_update = False

    def __init__(self, threshold: float = 0.5, fraction: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.threshold = threshold
        self.fraction = fraction
        self.add_state("errors", default=[], dist_reduce_fx="cat")  # (N,) normalised errors
        self.add_state("confidence", default=[], dist_reduce_fx="cat")  # (N,)
        self.add_state("spread", default=[], dist_reduce_fx="cat")  # (N,) input pixels², may stay empty

    def update(
        self,
        coords: torch.Tensor,
        confidence: torch.Tensor,
        meta: dict[str, Any],
        spread: torch.Tensor | None = None,
    ) -> None:
        """coords (B, K, 2) original pixels; confidence (B, K); meta with ``keypoints_orig`` (B, K, 2),
        ``visible_orig`` (B, K) and ``norm_length`` (B,); spread (B, K) or None."""
        err = normalised_error(coords, meta["keypoints_orig"], meta["norm_length"])  # (B, K) scales
        keep = meta["visible_orig"].to(coords.device).bool() & torch.isfinite(err)  # (B, K)
        self.errors.append(err[keep])
        self.confidence.append(confidence.to(torch.float64)[keep])
        if spread is not None:
            self.spread.append(spread.to(torch.float64)[keep])

    def compute(self) -> dict[str, float]:
        err, conf, spread = _cat(self.errors), _cat(self.confidence), _cat(self.spread)  # (N,) each
        if err is None or conf is None or len(err) == 0:
            return {}
        top = torch.argsort(-conf, stable=True)[: max(1, math.ceil(self.fraction * len(conf)))]
        out = {
            "conf_error_spearman": spearman(-conf, err),
            "pck_top50": 100.0 * float((err[top] <= self.threshold).double().mean()),
            "pck_all": 100.0 * float((err <= self.threshold).double().mean()),
        }
        if spread is not None and len(spread) == len(err):
            out["spread_error_spearman"] = spearman(spread, err)
        return out


def _cat(state: list[torch.Tensor] | torch.Tensor) -> torch.Tensor | None:
    """A list state as one tensor: a list on one process, already a tensor after a DDP sync; None if empty."""
    if isinstance(state, torch.Tensor):
        return state
    return dim_zero_cat(state) if len(state) else None
