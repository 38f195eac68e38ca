"""Masked k-means: separable clusters by hand, missing coordinates, determinism, monotone objective, errors."""

from __future__ import annotations

import math

import pytest
import torch

from kpreg.kmeans import KMeansInputError, kmeans_pp_seed, lloyd, masked_kmeans


def sorted_rows(t: torch.Tensor) -> torch.Tensor:
    return torch.tensor(sorted(t.tolist()), dtype=t.dtype)


def test_separable_clusters_by_hand() -> None:
    points = torch.tensor([[0.0], [0.2], [10.0], [10.4], [20.0]])
    centres, assign = masked_kmeans(points, torch.ones_like(points, dtype=torch.bool), k=3)
    torch.testing.assert_close(sorted_rows(centres), torch.tensor([[0.1], [10.2], [20.0]]))
    assert assign[0] == assign[1] and assign[2] == assign[3] and len(set(assign.tolist())) == 3


def test_missing_coordinates_neither_pull_nor_count() -> None:
    nan = math.nan
    points = torch.tensor([[0.0, 0.0], [0.0, 2.0], [0.0, nan],  # cluster 1: y observed twice
                           [10.0, 10.0], [10.0, 12.0], [nan, 11.0],  # cluster 2: x observed twice
                           [nan, nan]])  # observes nothing
    mask = torch.isfinite(points)
    centres, assign = masked_kmeans(points, mask, k=2)
    # Masked means: (0, 1) and (10, 11). Imputing the missing y of cluster 1 with the data's mean y (7) would
    # have given (0, 3).
    torch.testing.assert_close(sorted_rows(centres), torch.tensor([[0.0, 1.0], [10.0, 11.0]]))
    assert assign[6] == -1 and len(set(assign[:3].tolist())) == 1 and len(set(assign[3:6].tolist())) == 1


def test_deterministic_for_a_seed() -> None:
    g = torch.Generator().manual_seed(0)
    points = torch.randn(200, 6, generator=g)
    mask = torch.rand(200, 6, generator=g) > 0.2
    a, _ = masked_kmeans(points, mask, k=5, seed=3)
    b, _ = masked_kmeans(points, mask, k=5, seed=3)
    assert torch.equal(a, b)


def test_lloyd_never_increases_the_objective() -> None:
    g = torch.Generator().manual_seed(1)
    points = torch.randn(300, 4, generator=g, dtype=torch.float64) + 3 * torch.randint(0, 3, (300, 1), generator=g)
    mask = torch.rand(300, 4, generator=g) > 0.3
    points = torch.where(mask, points, torch.zeros_like(points))
    start = kmeans_pp_seed(points, mask, 4, torch.Generator().manual_seed(2))
    objectives = [lloyd(points, mask, start, max_iter=i)[2] for i in range(1, 8)]
    assert all(b <= a + 1e-9 for a, b in zip(objectives, objectives[1:]))


def test_duplicates_and_empty_clusters_do_not_crash() -> None:
    points = torch.tensor([[0.0], [0.0], [0.0], [5.0]])
    centres, assign = masked_kmeans(points, torch.ones_like(points, dtype=torch.bool), k=3)
    assert torch.isfinite(centres).all() and (assign >= 0).all()
    assert 5.0 in centres.flatten().tolist()


def test_errors_name_the_problem() -> None:
    points = torch.zeros(3, 2)
    mask = torch.tensor([[1, 1], [0, 0], [1, 0]], dtype=torch.bool)
    with pytest.raises(KMeansInputError, match="2 points observe at least one coordinate, fewer than k=3"):
        masked_kmeans(points, mask, k=3)
    with pytest.raises(KMeansInputError, match="must be"):
        masked_kmeans(points, mask[:, :1], k=1)
    assert issubclass(KMeansInputError, ValueError)
