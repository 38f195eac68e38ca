"""The pure math of kpreg.ops against tiny hand-computed tensors, gradients included."""

from __future__ import annotations

import math

import pytest
import torch

from kpreg.ops import (
    argmax_2d,
    bilinear_splat,
    dark_refine,
    disk_and_offsets,
    dsnt,
    gather_2d,
    normalized_linspace,
    quarter_offset,
    render_gaussian,
    soft_argmax,
    softmax_2d,
    variance_2d,
)

E_HALF, E_ONE = math.exp(-0.5), math.exp(-1.0)


# ---- Gaussian renderer ------------------------------------------------------------------------------
def test_render_gaussian_by_hand() -> None:
    centre = torch.tensor([[[1.0, 1.0]]])  # (1, 1, 2) x,y cells
    g = render_gaussian(centre, (3, 3), sigma=1.0)  # (1, 1, 3, 3)
    expected = torch.tensor([[E_ONE, E_HALF, E_ONE], [E_HALF, 1.0, E_HALF], [E_ONE, E_HALF, E_ONE]])
    torch.testing.assert_close(g[0, 0], expected)


def test_render_gaussian_sub_cell_and_gradient_by_hand() -> None:
    # Centre (0.5, 1) on a 1×3... row y=1 of a 3×3 grid, σ = 1: g(x, y) = exp(-((x-cx)² + (y-cy)²) / 2).
    centre = torch.tensor([[[0.5, 1.0]]], requires_grad=True)
    g = render_gaussian(centre, (3, 3), sigma=1.0)
    assert g[0, 0, 1, 0].item() == pytest.approx(math.exp(-0.125))
    assert g[0, 0, 0, 2].item() == pytest.approx(math.exp(-(2.25 + 1.0) / 2))
    # d g(x, y) / d cx = g · (x - cx) / σ²; at cell (x=2, y=0): g · 1.5; d/dcy = g · (0 - 1).
    (grad,) = torch.autograd.grad(g[0, 0, 0, 2], centre)
    value = math.exp(-(2.25 + 1.0) / 2)
    torch.testing.assert_close(grad[0, 0], torch.tensor([1.5 * value, -1.0 * value]))


def test_render_gaussian_gradcheck() -> None:
    centre = torch.tensor([[[0.7, 1.2], [2.1, 0.3]]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda c: render_gaussian(c, (3, 4), 1.3), (centre,))


# ---- arg-max and its refinements --------------------------------------------------------------------
def test_argmax_gather_and_quarter_offset() -> None:
    maps = torch.zeros(1, 1, 3, 3)
    maps[0, 0, 1, 1], maps[0, 0, 1, 2], maps[0, 0, 0, 1] = 1.0, 0.5, 0.2  # higher right, higher up
    cells, maxvals = argmax_2d(maps)
    assert cells.tolist() == [[[1.0, 1.0]]] and maxvals.item() == 1.0
    assert quarter_offset(maps, cells).tolist() == [[[1.25, 0.75]]]
    assert gather_2d(maps[:, :, None], cells).item() == 1.0


def test_dark_recovers_a_sub_cell_gaussian() -> None:
    centre = torch.tensor([[[8.3, 7.6]]])  # (1, 1, 2) x,y cells
    maps = render_gaussian(centre, (17, 17), sigma=2.0)
    cells, _ = argmax_2d(maps)
    refined = dark_refine(maps, cells, sigma=2.0)
    assert (refined - centre).abs().max() < 1e-3  # exact up to the blur's discretisation
    assert (cells - centre).abs().max() > 0.3  # while the plain arg-max is off by the sub-cell part


def test_dark_keeps_the_argmax_at_the_border_and_on_flat_maps() -> None:
    maps = render_gaussian(torch.tensor([[[0.8, 5.0]]]), (11, 11), sigma=2.0)  # peak 1 cell from the edge
    cells, _ = argmax_2d(maps)
    assert torch.equal(dark_refine(maps, cells, 2.0), cells)
    flat = torch.zeros(1, 1, 9, 9)
    assert torch.equal(dark_refine(flat, argmax_2d(flat)[0], 2.0), torch.zeros(1, 1, 2))


# ---- soft-argmax / DSNT on one hand-made 3×3 map ----------------------------------------------------
# Logits 0 everywhere except log 2 at (x=2, y=0): probabilities 0.1, and 0.2 at (2, 0).
def _logits(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    z = torch.zeros(1, 1, 3, 3, dtype=dtype)
    z[0, 0, 0, 2] = math.log(2.0)
    return z


def test_softmax_2d_by_hand() -> None:
    p = softmax_2d(_logits())
    expected = torch.full((3, 3), 0.1)
    expected[0, 2] = 0.2
    torch.testing.assert_close(p[0, 0], expected)
    # temperature T divides the logits: T = 2 with doubled logits is the same distribution.
    torch.testing.assert_close(softmax_2d(2 * _logits(), temperature=2.0), p)


def test_soft_argmax_value_and_gradient_by_hand() -> None:
    z = _logits().requires_grad_(True)
    mu = soft_argmax(z)  # (1, 1, 2) cells
    # Column masses 0.3, 0.3, 0.4 → E[x] = 0.3 + 0.8 = 1.1; row masses 0.4, 0.3, 0.3 → E[y] = 0.9.
    torch.testing.assert_close(mu[0, 0], torch.tensor([1.1, 0.9]))
    # d E[x] / d z_i = p_i (x_i - E[x]): at (2, 0): 0.2 · 0.9 = 0.18; at (0, 0): 0.1 · (-1.1) = -0.11.
    (g,) = torch.autograd.grad(mu[0, 0, 0], z)
    assert g[0, 0, 0, 2].item() == pytest.approx(0.18, abs=1e-6)
    assert g[0, 0, 0, 0].item() == pytest.approx(-0.11, abs=1e-6)
    # With temperature T the gradient is divided by T.
    z2 = (2 * _logits()).requires_grad_(True)
    (g2,) = torch.autograd.grad(soft_argmax(z2, temperature=2.0)[0, 0, 0], z2)
    assert g2[0, 0, 0, 2].item() == pytest.approx(0.09, abs=1e-6)


def test_dsnt_value_and_gradient_by_hand() -> None:
    torch.testing.assert_close(normalized_linspace(3), torch.tensor([-2 / 3, 0.0, 2 / 3]))
    p = softmax_2d(_logits()).requires_grad_(True)
    mu = dsnt(p)  # (1, 1, 2) normalised
    # E[x] = 0.3·(-2/3) + 0.4·(2/3) = 0.2/3; E[y] = 0.4·(-2/3) + 0.3·(2/3) = -0.2/3.
    torch.testing.assert_close(mu[0, 0], torch.tensor([0.2 / 3, -0.2 / 3]))
    # E[x] is linear in p: d E[x] / d p_(x, y) = x-coordinate of the column.
    (g,) = torch.autograd.grad(mu[0, 0, 0], p)
    torch.testing.assert_close(g[0, 0], torch.tensor([[-2 / 3, 0.0, 2 / 3]] * 3))


def test_dsnt_and_soft_argmax_gradcheck() -> None:
    z = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: dsnt(softmax_2d(t)), (z,))
    assert torch.autograd.gradcheck(lambda t: soft_argmax(t, temperature=0.7), (z,))
    assert torch.autograd.gradcheck(
        lambda t: variance_2d(softmax_2d(t), torch.arange(5.0).double(), torch.arange(4.0).double()), (z,)
    )


def test_variance_by_hand() -> None:
    p = softmax_2d(_logits())
    var = variance_2d(p, torch.arange(3.0), torch.arange(3.0))
    # Var[x] = E[x²] - E[x]² = (0.3 + 1.6) - 1.21 = 0.69; Var[y] = (0.3 + 1.2) - 0.81 = 0.69.
    torch.testing.assert_close(var[0, 0], torch.tensor([0.69, 0.69]))


def test_softmax_runs_in_float32_under_bf16() -> None:
    z = _logits().bfloat16()
    assert softmax_2d(z).dtype == torch.float32 and dsnt(softmax_2d(z)).dtype == torch.float32


# ---- exact targets ----------------------------------------------------------------------------------
def test_bilinear_splat_has_the_exact_expectation() -> None:
    centres = torch.tensor([[[0.0, 0.0], [1.25, 2.5], [3.0, 3.0], [2.999, 0.001]]])  # (1, 4, 2) cells
    p = bilinear_splat(centres, (4, 4))
    torch.testing.assert_close(p.sum(dim=(-2, -1)), torch.ones(1, 4))
    xs = torch.arange(4.0)
    from kpreg.ops import expectation_2d

    torch.testing.assert_close(expectation_2d(p, xs, xs), centres)
    # by hand: centre (1.25, 2.5) puts 0.75·0.5 on (1, 2), 0.25·0.5 on (2, 2), 0.75·0.5 on (1, 3) …
    assert p[0, 1, 2, 1].item() == pytest.approx(0.375) and p[0, 1, 3, 2].item() == pytest.approx(0.125)


def test_disk_and_offsets_by_hand() -> None:
    mask, off = disk_and_offsets(torch.tensor([[1.2, 0.9]]), (3, 3), radius=1.0)  # (1, 3, 3), (1, 2, 3, 3)
    # cells within 1 of (1.2, 0.9): (1, 1) d²=0.05, (1, 0) 0.85, (2, 1) 0.65, (1, 2)?  0.04+1.21 > 1 no
    expected = torch.tensor([[0.0, 1.0, 0.0], [0.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(mask[0], expected)
    torch.testing.assert_close(off[0, :, 1, 2], torch.tensor([-0.8, -0.1]))  # centre − cell (x=2, y=1)
