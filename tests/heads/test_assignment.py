"""FreeAnchor-style cell assignment: hand-computed values and gradients on a 3×3 grid."""

from __future__ import annotations

import math

import pytest
import torch

from kpreg.heads.assignment import candidate_bags, free_anchor_terms, localisation_likelihood, mean_max

CENTRE = torch.tensor([[[1.0, 1.0]]])  # (B, K, 2) x,y cells: the middle cell of a 3×3 grid


def exact_offsets(keypoints: torch.Tensor, size: tuple[int, int] = (3, 3)) -> torch.Tensor:
    _, target = candidate_bags(keypoints, size, 1.0)
    return target  # (B, K, 2, h, w) keypoint − cell centre


def test_mean_max_by_hand() -> None:
    ones = torch.ones(3)
    # w = 1/(1 − x) = (10, 10/9, 10/9): (9 + 2/9) / (10 + 20/9) = 83/110, between mean 0.367 and max 0.9.
    assert mean_max(torch.tensor([0.9, 0.1, 0.1]), ones).item() == pytest.approx(83 / 110)
    assert mean_max(torch.tensor([0.5, 0.5, 0.5]), ones).item() == pytest.approx(0.5)  # equal: the mean
    assert mean_max(torch.tensor([0.01, 0.02, 0.03]), ones).item() == pytest.approx(0.02, abs=2e-4)  # ≈ mean
    assert mean_max(torch.tensor([0.999, 0.0, 0.0]), ones).item() == pytest.approx(0.999 * 1000 / 1002)  # ≈ max
    # the mask removes entries; an empty bag gives 0, not 0/0
    assert mean_max(torch.tensor([0.9, 0.1, 0.5]), torch.tensor([1.0, 1.0, 0.0])).item() == pytest.approx(
        (9 + 1 / 9) / (10 + 10 / 9))
    assert mean_max(torch.tensor([0.9, 0.1]), torch.zeros(2)).item() == 0.0


def test_bag_is_the_disk_around_the_keypoint() -> None:
    bag, target = candidate_bags(CENTRE, (3, 3), 1.0)
    assert bag[0, 0].tolist() == [[0, 1, 0], [1, 1, 1], [0, 1, 0]]  # diagonals are √2 away
    assert target[0, 0, :, 0, 0].tolist() == [1.0, 1.0]  # keypoint − top-left cell centre
    with pytest.raises(ValueError, match="sqrt"):
        candidate_bags(CENTRE, (3, 3), 0.5)


def test_localisation_kernels_by_hand() -> None:
    pred = torch.zeros(1, 1, 2, 1, 1)
    target = torch.tensor([0.3, -0.4]).view(1, 1, 2, 1, 1)
    g = localisation_likelihood(pred, target, tau=0.5, kernel="gaussian")
    lap = localisation_likelihood(pred, target, tau=0.5, kernel="laplace")
    assert g.item() == pytest.approx(math.exp(-0.25 / 0.5))  # ‖e‖² = 0.25
    assert lap.item() == pytest.approx(math.exp(-0.7 / 0.5))  # ‖e‖₁ = 0.7
    with pytest.raises(ValueError, match="kernel"):
        localisation_likelihood(pred, target, 0.5, "cauchy")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tau"):
        localisation_likelihood(pred, target, 0.0)


def test_positive_term_and_its_gradient_at_a_known_point() -> None:
    # Logits 0 (P_cls = ½), exact offsets (P_loc = 1): the 5 candidates all have x = ½, MeanMax = ½.
    logits = torch.zeros(1, 1, 3, 3, requires_grad=True)
    terms = free_anchor_terms(logits, exact_offsets(CENTRE), CENTRE, radius=1.0, alpha=0.5)
    assert terms["positive"].item() == pytest.approx(0.5 * math.log(2))
    assert terms["negative"].item() == 0.0  # every cell localises perfectly: no background push
    (terms["positive"] + terms["negative"]).sum().backward()
    # ∂MeanMax/∂x_i = [(w_i + x_i w_i²) Σw − Σwx · w_i²] / (Σw)² = (4·10 − 5·4) / 100 = 0.2 at w = 2;
    # ∂(−½ log MeanMax)/∂z_i = −½ · 0.2 / 0.5 · σ'(0) = −½ · 0.4 · ¼ = −0.05 on each of the 5 candidates.
    bag = torch.tensor([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=torch.float32)
    torch.testing.assert_close(logits.grad[0, 0], -0.05 * bag)


def test_negative_term_by_hand() -> None:
    # Zero predicted offsets: e = cell − keypoint. Laplace τ = ½: P_loc = 1 (centre), e⁻² (4 neighbours,
    # ‖e‖₁ = 1), e⁻⁴ (4 diagonals, ‖e‖₁ = 2). Logits 0: p = ½ (1 − P_loc), FL(p) = p² · (−log(1 − p)).
    logits = torch.zeros(1, 1, 3, 3, requires_grad=True)
    offsets = torch.zeros(1, 1, 2, 3, 3, requires_grad=True)
    terms = free_anchor_terms(logits, offsets, CENTRE, radius=1.0, tau=0.5, kernel="laplace", alpha=0.5)

    def fl(p: float) -> float:
        return p**2 * -math.log(1 - p)

    p_n, p_d = 0.5 * (1 - math.exp(-2)), 0.5 * (1 - math.exp(-4))
    assert terms["negative"].item() == pytest.approx(0.5 * (4 * fl(p_n) + 4 * fl(p_d)) / 5)  # ÷ bag size 5
    x_c, x_n = 0.5, 0.5 * math.exp(-2)  # positive: MeanMax over the centre and its 4 neighbours
    w_c, w_n = 1 / (1 - x_c), 1 / (1 - x_n)
    mm = (w_c * x_c + 4 * w_n * x_n) / (w_c + 4 * w_n)
    assert terms["positive"].item() == pytest.approx(-0.5 * math.log(mm))

    (terms["positive"] + terms["negative"]).sum().backward()
    # A diagonal cell is outside the bag: only the negative term reaches its logit.
    # dFL/dp = 2p(−log(1 − p)) + p²/(1 − p); dp/dz = (1 − P_loc) σ'(0) = (1 − e⁻⁴) / 4.
    d_fl = 2 * p_d * -math.log(1 - p_d) + p_d**2 / (1 - p_d)
    assert logits.grad[0, 0, 0, 0].item() == pytest.approx(0.5 / 5 * d_fl * (1 - math.exp(-4)) / 4)
    # The negative term's localisation weight is detached: cells outside the bag get no offset gradient.
    assert offsets.grad[0, 0, :, 0, 0].abs().max().item() == 0.0


def test_single_candidate_bag_is_bce_plus_an_l2_offset_loss() -> None:
    # radius ¾ around a cell centre: the bag is that one cell, MeanMax = x, and the positive term is
    # α (−log σ(z) + ‖e‖² / 2τ²): gradient α e / τ² on the offsets (gaussian kernel).
    offsets = exact_offsets(CENTRE).clone()
    offsets[0, 0, :, 1, 1] = torch.tensor([0.3, -0.2])  # e = (0.3, −0.2) at the centre cell
    offsets.requires_grad_(True)
    logits = torch.full((1, 1, 3, 3), 2.0)
    terms = free_anchor_terms(logits, offsets, CENTRE, radius=0.75, tau=0.5, kernel="gaussian", alpha=0.5)
    hand = 0.5 * (-math.log(1 / (1 + math.exp(-2.0))) + (0.09 + 0.04) / (2 * 0.25))
    assert terms["positive"].item() == pytest.approx(hand)
    terms["positive"].sum().backward()
    torch.testing.assert_close(offsets.grad[0, 0, :, 1, 1], torch.tensor([0.6, -0.4]))


def test_empty_bag_gives_zero_positive_and_finite_gradients() -> None:
    logits = torch.zeros(1, 2, 3, 3, requires_grad=True)
    keypoints = torch.tensor([[[1.0, 1.0], [40.0, -7.0]]])  # the second far outside the grid
    offsets = torch.zeros(1, 2, 2, 3, 3)
    terms = free_anchor_terms(logits, offsets, keypoints)
    assert terms["positive"][0, 1].item() == 0.0 and torch.isfinite(terms["negative"]).all()
    sum(t.sum() for t in terms.values()).backward()
    assert torch.isfinite(logits.grad).all()


def test_saturated_probabilities_stay_finite() -> None:
    logits = torch.full((1, 1, 3, 3), 40.0, requires_grad=True)  # sigmoid = 1 in float32
    terms = free_anchor_terms(logits, exact_offsets(CENTRE), CENTRE)
    sum(t.sum() for t in terms.values()).backward()
    assert all(torch.isfinite(t).all() for t in terms.values()) and torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("kernel", ["gaussian", "laplace"])
def test_gradcheck_float64(kernel: str) -> None:
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 2, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    offsets = torch.randn(2, 2, 2, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    keypoints = torch.rand(2, 2, 2, generator=g, dtype=torch.float64) * 3

    def term(name: str, z: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
        return free_anchor_terms(z, o, keypoints, radius=1.5, tau=0.7, kernel=kernel)[name]  # type: ignore[arg-type]

    assert torch.autograd.gradcheck(lambda z, o: term("positive", z, o), (logits, offsets))
    # The negative term's localisation weight is detached on purpose (FreeAnchor), so its analytic gradient is
    # that of the logits alone: check it with the offsets held fixed.
    assert torch.autograd.gradcheck(lambda z: term("negative", z, offsets.detach()), (logits,))


def test_bad_alpha() -> None:
    with pytest.raises(ValueError, match="alpha"):
        free_anchor_terms(torch.zeros(1, 1, 3, 3), torch.zeros(1, 1, 2, 3, 3), CENTRE, alpha=1.5)
