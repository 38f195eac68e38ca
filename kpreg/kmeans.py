"""Deterministic k-means for points with missing coordinates (poses with invisible keypoints).

Points are (N, D) with an (N, D) mask of observed coordinates. The partial-distance strategy (Hathaway &
Bezdek, "Fuzzy c-means clustering of incomplete data", IEEE SMC-B 2001) measures a point only on what it
observes::

    d²(x, c) = Σ_{d observed} (x_d − c_d)²

and each centre coordinate is the mean of the members that observe it. Both steps minimise the same
objective ``J = Σ_n d²(x_n, c_{a(n)})`` (for one point every centre is compared on the same coordinates, so
the assignment is the arg-min of ``J``'s term; for fixed assignments the masked mean is the minimiser), so
Lloyd's iterations never increase ``J`` and stop after finitely many steps. A missing coordinate therefore
neither pulls a centre nor counts as a distance; imputing it (e.g. with the mean pose, the only way to use
``sklearn.cluster.KMeans``, which rejects NaN) would drag every centre towards the mean.

Seeding: k-means++ (Arthur & Vassilvitskii, SODA 2007), with the distances normalised by the number of
observed coordinates, from a seeded ``torch.Generator``: the same data and seed give the same centres.
A centre's coordinates that its seed point does not observe start at the data's masked mean.
"""

from __future__ import annotations

import torch


class KMeansInputError(ValueError):
    """The data cannot be clustered as asked (too few usable points)."""


def partial_sq_distances(points: torch.Tensor, mask: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """(N, D) points, (N, D) mask, (A, D) centres → (N, A) squared distances over observed coordinates."""
    m = mask.to(points.dtype)
    diff = points[:, None, :] - centres[None, :, :]  # (N, A, D)
    return (diff.pow(2) * m[:, None, :]).sum(-1)


def masked_mean(points: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(N, D) → (D,) mean of the observed values per coordinate (0 where none is observed)."""
    m = mask.to(points.dtype)
    return (points * m).sum(0) / m.sum(0).clamp(min=1.0)


def kmeans_pp_seed(
    points: torch.Tensor, mask: torch.Tensor, k: int, generator: torch.Generator
) -> torch.Tensor:
    """k-means++ seeding on points that observe at least one coordinate → (k, D) centres."""
    m = mask.to(points.dtype)
    n_obs = m.sum(-1)  # (N,)
    fill = masked_mean(points, mask)  # (D,) for the coordinates a seed point does not observe
    usable = (n_obs > 0).nonzero().flatten()  # points that observe something
    chosen = [int(usable[torch.randint(usable.numel(), (1,), generator=generator)])]
    for _ in range(1, k):
        seeds = torch.where(m[chosen] > 0, points[chosen], fill)  # (j, D)
        # Normalised by the observed count so that a pose with few visible keypoints is not "close" to
        # everything just because it is measured on less.
        d2 = partial_sq_distances(points, mask, seeds).min(-1).values / n_obs.clamp(min=1.0)  # (N,)
        total = d2.sum()
        if total <= 0:  # every point coincides with a chosen one: any usable point will do
            probs = (n_obs > 0).to(d2.dtype)
        else:
            probs = d2 / total
        chosen.append(int(torch.multinomial(probs, 1, generator=generator)))
    return torch.where(m[chosen] > 0, points[chosen], fill)  # (k, D)


def lloyd(
    points: torch.Tensor, mask: torch.Tensor, centres: torch.Tensor, max_iter: int
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Lloyd's iterations from ``centres`` → (centres (k, D), assignment (N,), objective J)."""
    m = mask.to(points.dtype)
    k = centres.shape[0]
    assign = torch.full((points.shape[0],), -1, dtype=torch.long)
    for _ in range(max_iter):
        d2 = partial_sq_distances(points, mask, centres)  # (N, k)
        new_assign = d2.argmin(-1)  # ties go to the lowest index
        counts = torch.bincount(new_assign, minlength=k)
        # An empty cluster takes the point worst served by its centre (sklearn's remedy), never emptying
        # another cluster and never moving the same point twice.
        score = d2.gather(1, new_assign[:, None]).squeeze(1) / m.sum(-1).clamp(min=1.0)  # (N,)
        for empty in (counts == 0).nonzero().flatten().tolist():
            movable = torch.bincount(new_assign, minlength=k)[new_assign] > 1  # (N,)
            worst = int(torch.where(movable, score, torch.full_like(score, -torch.inf)).argmax())
            new_assign[worst] = empty
            score[worst] = -torch.inf
        if torch.equal(new_assign, assign):
            break
        assign = new_assign
        onehot = torch.nn.functional.one_hot(assign, k).to(points.dtype)  # (N, k)
        num = onehot.T @ (points * m)  # (k, D) sums of observed coordinates
        den = onehot.T @ m  # (k, D) number of members observing each coordinate
        centres = torch.where(den > 0, num / den.clamp(min=1.0), centres)  # unobserved: keep the old value
    d2 = partial_sq_distances(points, mask, centres)
    objective = float(d2.gather(1, assign[:, None]).sum())
    return centres, assign, objective


def masked_kmeans(
    points: torch.Tensor,
    mask: torch.Tensor,
    k: int,
    seed: int = 0,
    restarts: int = 3,
    max_iter: int = 100,
) -> tuple[torch.Tensor, torch.Tensor]:
    """k-means with missing coordinates. points: (N, D); mask: (N, D) 1 = observed.

    returns centres (k, D) and the assignment (N,) of every point (−1 for a point that observes nothing).
    ``restarts`` seeded k-means++ runs; the one with the lowest objective wins. Computed in float64.
    """
    if points.ndim != 2 or mask.shape != points.shape:
        raise KMeansInputError(f"k-means: points {tuple(points.shape)} and mask {tuple(mask.shape)} must be (N, D)")
    if k < 1 or restarts < 1:
        raise KMeansInputError(f"k-means: need k >= 1 and restarts >= 1, got k={k}, restarts={restarts}")
    x = points.detach().double().cpu()
    m = mask.detach().cpu().bool() & torch.isfinite(x)
    x = torch.where(m, x, torch.zeros_like(x))  # unobserved values may be anything, NaN included
    usable = m.any(-1)  # (N,)
    n_usable = int(usable.sum())
    if n_usable < k:
        raise KMeansInputError(f"k-means: {n_usable} points observe at least one coordinate, fewer than k={k}")
    xu, mu = x[usable], m[usable]
    generator = torch.Generator().manual_seed(seed)
    best: tuple[torch.Tensor, torch.Tensor, float] | None = None
    for _ in range(restarts):
        run = lloyd(xu, mu, kmeans_pp_seed(xu, mu, k, generator), max_iter)
        if best is None or run[2] < best[2]:
            best = run
    assert best is not None
    assign = torch.full((points.shape[0],), -1, dtype=torch.long)
    assign[usable] = best[1]
    return best[0].to(points.dtype if points.is_floating_point() else torch.float32), assign
