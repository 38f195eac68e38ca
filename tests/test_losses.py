"""kpreg.losses against hand-computed values, gradients included."""

from __future__ import annotations

import math

import pytest
import torch

from kpreg.losses import (
    bce_per_joint,
    coord_loss_per_joint,
    epsilon_insensitive,
    focal_per_joint,
    heatmap_mse,
    js_divergence,
    js_regulariser,
    masked_mean,
    normalized_gaussian,
    reduce_keypoint_losses,
    temporal_difference,
    variance_regulariser,
)
from kpreg.ops import softmax_2d


def test_masked_mean_ignores_invisible_and_is_zero_when_none_is_visible() -> None:
    per_joint = torch.tensor([[1.0, 100.0], [3.0, 5.0]])
    assert masked_mean(per_joint, torch.tensor([[1, 0], [1, 0]])).item() == 2.0
    z = masked_mean(per_joint, torch.zeros(2, 2))
    assert z.item() == 0.0 and torch.isfinite(z)


def test_coordinate_losses_by_hand() -> None:
    pred, target = torch.tensor([[[3.0, 0.5]]]), torch.tensor([[[0.0, 0.0]]])  # dx = 3, dy = 0.5
    assert coord_loss_per_joint(pred, target, "l1").item() == pytest.approx(3.5)
    assert coord_loss_per_joint(pred, target, "l2").item() == pytest.approx(9.25)
    # smooth-L1 (β = 1): |d| - ½ above 1, ½ d² below: 2.5 + 0.125
    assert coord_loss_per_joint(pred, target, "smooth_l1").item() == pytest.approx(2.625)
    assert coord_loss_per_joint(pred, target, "euclidean").item() == pytest.approx(math.sqrt(9.25))
    with pytest.raises(ValueError, match="unknown coordinate loss"):
        coord_loss_per_joint(pred, target, "l3")  # type: ignore[arg-type]


def test_euclidean_gradient_is_finite_at_zero() -> None:
    pred = torch.zeros(1, 1, 2, requires_grad=True)
    (g,) = torch.autograd.grad(coord_loss_per_joint(pred, torch.zeros(1, 1, 2), "euclidean").sum(), pred)
    assert torch.isfinite(g).all()


def test_heatmap_mse_by_hand() -> None:
    pred, target = torch.ones(1, 2, 2, 2), torch.zeros(1, 2, 2, 2)
    target[0, 1] = 1.0  # joint 1 is perfect, joint 0 is off by 1 everywhere
    per_joint = heatmap_mse(pred, target)  # (1, 2)
    assert per_joint.tolist() == [[1.0, 0.0]]
    assert reduce_keypoint_losses(per_joint, torch.tensor([[1, 1]])).item() == pytest.approx(0.5)
    assert reduce_keypoint_losses(per_joint, torch.tensor([[0, 1]])).item() == 0.0


# ---- the one reduction of per-keypoint losses ----------------------------------------------------------
# Two samples, three keypoints; sample 1 has keypoint 2 invisible (its loss, 100, must never count).
LOSSES = torch.tensor([[1.0, 2.0, 3.0], [4.0, 6.0, 100.0]])
VISIBLE = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])


def test_reduction_is_the_masked_mean() -> None:
    assert reduce_keypoint_losses(LOSSES, VISIBLE).item() == pytest.approx((1 + 2 + 3 + 4 + 6) / 5)
    assert reduce_keypoint_losses(LOSSES, VISIBLE).item() == masked_mean(LOSSES, VISIBLE).item()


def test_reduction_with_keypoint_weights_is_a_weighted_mean() -> None:
    w = torch.tensor([1.0, 1.0, 2.0])  # e.g. mmpose's 1.5 for ankles: a ratio, the scale does not matter
    expected = (1 + 2 + 2 * 3 + 4 + 6) / (1 + 1 + 2 + 1 + 1)
    assert reduce_keypoint_losses(LOSSES, VISIBLE, w).item() == pytest.approx(expected)
    assert reduce_keypoint_losses(LOSSES, VISIBLE, 10 * w).item() == pytest.approx(expected)


def test_ohkm_takes_the_top_k_visible_keypoints_per_sample() -> None:
    # k = 2: sample 0 → mean(3, 2) = 2.5; sample 1 → mean(6, 4) = 5 (the invisible 100 is never mined).
    assert reduce_keypoint_losses(LOSSES, VISIBLE, ohkm_topk=2).item() == pytest.approx((2.5 + 5.0) / 2)
    # k larger than the visible count: all visible keypoints of that sample (sample 1 has 2).
    assert reduce_keypoint_losses(LOSSES, VISIBLE, ohkm_topk=3).item() == pytest.approx((2.0 + 5.0) / 2)
    # a sample without a visible keypoint does not count in the mean over samples
    vis = VISIBLE.clone()
    vis[1] = 0
    assert reduce_keypoint_losses(LOSSES, vis, ohkm_topk=2).item() == pytest.approx(2.5)
    with pytest.raises(ValueError, match="ohkm_topk"):
        reduce_keypoint_losses(LOSSES, VISIBLE, ohkm_topk=0)


def test_ohkm_gradient_reaches_only_the_mined_keypoints() -> None:
    losses = LOSSES.clone().requires_grad_(True)
    reduce_keypoint_losses(losses, VISIBLE, ohkm_topk=2).backward()
    # d/dl of ((l02 + l01) / 2 + (l11 + l10) / 2) / 2: 1/4 on the mined, 0 elsewhere
    assert losses.grad.tolist() == [[0.0, 0.25, 0.25], [0.25, 0.25, 0.0]]


def test_reduction_of_an_all_invisible_batch_is_an_exact_zero_with_a_finite_gradient() -> None:
    losses = LOSSES.clone().requires_grad_(True)
    for topk in (None, 2):
        total = reduce_keypoint_losses(losses, torch.zeros(2, 3), ohkm_topk=topk)
        assert total.item() == 0.0
        total.backward()
        assert torch.isfinite(losses.grad).all()


# ---- variance regulariser: the 3×3 map with p = 0.1 everywhere and 0.2 at (x=2, y=0) -----------------
def _logits(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    z = torch.zeros(1, 1, 3, 3, dtype=dtype)
    z[0, 0, 0, 2] = math.log(2.0)
    return z


def test_variance_regulariser_value_and_gradient_by_hand() -> None:
    z = _logits().requires_grad_(True)
    reg = variance_regulariser(softmax_2d(z), sigma=1.0)  # (1, 1)
    # Var[x] = Var[y] = 0.69 cells² (see test_ops): (0.69 - 1)² · 2 = 0.1922
    assert reg.item() == pytest.approx(0.1922, abs=1e-6)
    # Hand gradient through the softmax: with g_i = dR/dp_i = 2(Vx - σ²)(x_i - μx)² + 2(Vy - σ²)(y_i - μy)²
    # (on the simplex), dR/dz_i = p_i (g_i - Σ_j p_j g_j) and Σ_j p_j g_j = 2(Vx - σ²)Vx + 2(Vy - σ²)Vy.
    (grad,) = torch.autograd.grad(reg.sum(), z)
    v, mx, my = 0.69, 1.1, 0.9
    mean_g = 2 * (v - 1) * v * 2

    def hand(x: int, y: int, p: float) -> float:
        g = 2 * (v - 1) * (x - mx) ** 2 + 2 * (v - 1) * (y - my) ** 2
        return p * (g - mean_g)

    assert grad[0, 0, 0, 2].item() == pytest.approx(hand(2, 0, 0.2), abs=1e-6)  # = -0.02976
    assert grad[0, 0, 0, 2].item() == pytest.approx(-0.02976, abs=1e-6)
    assert grad[0, 0, 1, 1].item() == pytest.approx(hand(1, 1, 0.1), abs=1e-6)


def test_variance_regulariser_is_zero_for_the_target_width_and_gradchecks() -> None:
    # Two cells with ½ each: Var[x] = ¼ → σ = ½ gives 0 on x; a single row gives Var[y] = 0 so σ² = ¼ misses.
    p = torch.tensor([[[[0.5, 0.5]]]])  # (1, 1, 1, 2)
    assert variance_regulariser(p, sigma=0.5).item() == pytest.approx((0 - 0.25) ** 2)
    z = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: variance_regulariser(softmax_2d(t), 1.3), (z,))


# ---- Jensen–Shannon ---------------------------------------------------------------------------------
def test_js_divergence_by_hand() -> None:
    p = torch.tensor([[[[0.5, 0.5]]]], requires_grad=True)
    q = torch.tensor([[[[1.0, 0.0]]]])
    js = js_divergence(p, q)
    # m = (¾, ¼): KL(p‖m) = ½ ln(4/3) … JS = ½·½ ln(4/3) + ½ ln(4/3) = ¾ ln(4/3)
    assert js.item() == pytest.approx(0.75 * math.log(4 / 3), abs=1e-6)
    # dJS/dp_i = ½ ln(p_i / m_i): (½ ln(2/3), ½ ln 2)
    (g,) = torch.autograd.grad(js.sum(), p)
    torch.testing.assert_close(g[0, 0, 0], torch.tensor([0.5 * math.log(2 / 3), 0.5 * math.log(2.0)]))
    assert js_divergence(q, 1 - q).item() == pytest.approx(math.log(2.0), abs=1e-6)  # disjoint: ln 2
    assert js_divergence(q, q).item() == pytest.approx(0.0, abs=1e-7)


def test_normalized_gaussian_and_js_regulariser_by_hand() -> None:
    target = normalized_gaussian(torch.tensor([[[1.0, 1.0]]]), (3, 3), sigma=1.0)  # (1, 1, 3, 3)
    z = 1 + 4 * math.exp(-0.5) + 4 * math.exp(-1.0)
    assert target[0, 0, 1, 1].item() == pytest.approx(1 / z)
    assert target[0, 0, 0, 0].item() == pytest.approx(math.exp(-1.0) / z)
    assert js_regulariser(target, torch.tensor([[[1.0, 1.0]]]), 1.0).item() == pytest.approx(0.0, abs=1e-6)
    # A uniform map against it, by the definition with plain floats.
    q = [math.exp(-((x - 1) ** 2 + (y - 1) ** 2) / 2) / z for y in range(3) for x in range(3)]
    hand = sum(0.5 * (1 / 9) * math.log((1 / 9) / m) + 0.5 * qi * math.log(qi / m)
               for qi in q for m in [0.5 * (1 / 9 + qi)])
    uniform = torch.full((1, 1, 3, 3), 1 / 9)
    assert js_regulariser(uniform, torch.tensor([[[1.0, 1.0]]]), 1.0).item() == pytest.approx(hand, abs=1e-6)


def test_js_regulariser_gradcheck() -> None:
    z = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    centres = torch.tensor([[[1.2, 0.7], [2.5, 1.9]]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t, c: js_regulariser(softmax_2d(t), c, 0.8), (z, centres))


# ---- per-cell classification ------------------------------------------------------------------------
def test_bce_and_focal_by_hand() -> None:
    logits = torch.zeros(1, 1, 1, 2)  # p = ½ everywhere
    target = torch.tensor([[[[1.0, 0.0]]]])
    assert bce_per_joint(logits, target).item() == pytest.approx(math.log(2.0))
    # focal: α_t (1 - p_t)^γ · ln 2 per cell = (0.25 + 0.75) · ¼ · ln 2, over 1 positive
    assert focal_per_joint(logits, target).item() == pytest.approx(0.25 * math.log(2.0))


# ---- 1-D bin losses (SimCC, multi-bin, GFL) ---------------------------------------------------------
# logits log(1, 2, 1) → softmax p = (¼, ½, ¼): every value below is a multiple of ln 2.
LN2 = math.log(2.0)


def _bin_logits() -> torch.Tensor:
    return torch.tensor([[0.0, LN2, 0.0]], dtype=torch.float64, requires_grad=True)


def test_kl_to_gaussian_like_target_by_hand() -> None:
    from kpreg.losses import kl_to_target

    logits, target = _bin_logits(), torch.tensor([[0.5, 0.5, 0.0]], dtype=torch.float64)
    # Σ t (log t − log p) = ½ ln ½ + ½ ln ½ − ½ ln ¼ − ½ ln ½ = ½ ln 2; the zero target bin adds 0 (xlogy).
    loss = kl_to_target(logits, target)
    assert loss.item() == pytest.approx(0.5 * LN2)
    loss.sum().backward()
    torch.testing.assert_close(logits.grad, torch.tensor([[-0.25, 0.0, 0.25]], dtype=torch.float64))  # p − t
    assert kl_to_target(target.clamp(min=1e-30).log(), target).item() == pytest.approx(0.0, abs=1e-12)


def test_kl_uses_the_normalised_gaussian_target() -> None:
    from kpreg.ops import normalized_gaussian_1d

    g = normalized_gaussian_1d(torch.tensor([3.0]), 7, sigma=1.0)  # (1, 7)
    assert g.sum().item() == pytest.approx(1.0)
    e = torch.exp(-torch.arange(-3.0, 4.0) ** 2 / 2.0)
    torch.testing.assert_close(g[0], e / e.sum())


def test_label_smoothed_cross_entropy_by_hand() -> None:
    from kpreg.losses import label_smoothed_cross_entropy

    logits = _bin_logits()
    # target 0.7 · onehot(1) + 0.3 / 3 = (0.1, 0.8, 0.1): −(0.1 ln ¼ + 0.8 ln ½ + 0.1 ln ¼) = 1.2 ln 2
    loss = label_smoothed_cross_entropy(logits, torch.tensor([1]), 0.3)
    assert loss.item() == pytest.approx(1.2 * LN2)
    assert loss.item() == pytest.approx(torch.nn.functional.cross_entropy(
        logits.detach(), torch.tensor([1]), label_smoothing=0.3).item())
    loss.sum().backward()
    torch.testing.assert_close(logits.grad, torch.tensor([[0.15, -0.3, 0.15]], dtype=torch.float64))


def test_distribution_focal_loss_by_hand() -> None:
    from kpreg.losses import distribution_focal_loss

    logits = _bin_logits()
    # y = 0.25: −((1 − 0.25) ln S₀ + 0.25 ln S₁) = 0.75 · 2 ln 2 + 0.25 ln 2 = 1.75 ln 2
    loss = distribution_focal_loss(logits, torch.tensor([0.25], dtype=torch.float64))
    assert loss.item() == pytest.approx(1.75 * LN2)
    loss.sum().backward()
    torch.testing.assert_close(logits.grad, torch.tensor([[-0.5, 0.25, 0.25]], dtype=torch.float64))
    # on the last bin the whole mass is there (no bin n to split with): −ln S₂ = 2 ln 2
    assert distribution_focal_loss(_bin_logits(), torch.tensor([2.0])).item() == pytest.approx(2 * LN2)


def test_softmax_focal_loss_by_hand_and_gradcheck() -> None:
    from kpreg.losses import softmax_focal_loss

    idx = torch.tensor([1])
    # p_t = ½: −α (1 − ½)² ln ½ = 0.25 · 0.25 · ln 2
    assert softmax_focal_loss(_bin_logits(), idx, gamma=2.0, alpha=0.25).item() == pytest.approx(0.0625 * LN2)
    assert softmax_focal_loss(_bin_logits(), idx, gamma=0.0, alpha=1.0).item() == pytest.approx(LN2)  # = CE
    logits = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: softmax_focal_loss(z, torch.tensor([0, 3]), 2.0, 0.5), (logits,))


def test_bin_losses_gradcheck() -> None:
    from kpreg.losses import distribution_focal_loss, kl_to_target, label_smoothed_cross_entropy

    logits = torch.randn(2, 6, dtype=torch.float64, requires_grad=True)
    target = torch.softmax(torch.randn(2, 6, dtype=torch.float64), -1)
    assert torch.autograd.gradcheck(lambda z: kl_to_target(z, target), (logits,))
    assert torch.autograd.gradcheck(lambda z: label_smoothed_cross_entropy(z, torch.tensor([2, 5]), 0.1), (logits,))
    assert torch.autograd.gradcheck(
        lambda z: distribution_focal_loss(z, torch.tensor([1.3, 4.9], dtype=torch.float64)), (logits,))


# ---- unsupervised losses on video: ε-insensitive distances --------------------------------------------------
def test_epsilon_insensitive_is_zero_inside_and_linear_beyond() -> None:
    d = torch.tensor([[0.0, 1.0, 2.5]], requires_grad=True)
    out = epsilon_insensitive(d, 1.0)
    torch.testing.assert_close(out, torch.tensor([[0.0, 0.0, 1.5]]))
    out.sum().backward()
    torch.testing.assert_close(d.grad, torch.tensor([[0.0, 0.0, 1.0]]))  # no gradient up to ε, slope 1 beyond
    per_keypoint = epsilon_insensitive(torch.tensor([[2.0, 2.0]]), torch.tensor([1.0, 3.0]))  # ε per keypoint (K,)
    torch.testing.assert_close(per_keypoint, torch.tensor([[1.0, 0.0]]))


def test_temporal_difference_by_hand_with_its_gradient() -> None:
    # One clip of 3 frames, 2 keypoints. Keypoint 0 moves by (3, 4) (5 px) then stays; keypoint 1 moves 0.5 px twice.
    coords = torch.tensor([[[[0.0, 0.0], [10.0, 10.0]],
                            [[3.0, 4.0], [10.5, 10.0]],
                            [[3.0, 4.0], [11.0, 10.0]]]], requires_grad=True)  # (1, 3, 2, 2)
    loss = temporal_difference(coords, epsilon=1.0)  # (1, 2, 2)
    torch.testing.assert_close(loss, torch.tensor([[[4.0, 0.0], [0.0, 0.0]]]), atol=1e-5, rtol=0)
    loss.sum().backward()
    # d(‖x1 − x0‖ − ε)/dx1 = (x1 − x0)/‖x1 − x0‖ = (0.6, 0.8); x0 gets the opposite; the still pair and keypoint 1
    # (inside ε) give nothing, and the gradient stays finite where a keypoint did not move at all.
    expected = torch.zeros(1, 3, 2, 2)
    expected[0, 0, 0] = torch.tensor([-0.6, -0.8])
    expected[0, 1, 0] = torch.tensor([0.6, 0.8])
    torch.testing.assert_close(coords.grad, expected, atol=1e-5, rtol=0)


def test_temporal_difference_without_epsilon_is_the_step_length() -> None:
    coords = torch.tensor([[[[1.0, 1.0]], [[1.0, 3.0]], [[4.0, 7.0]]]])  # (1, 3, 1, 2)
    torch.testing.assert_close(temporal_difference(coords, 0.0), torch.tensor([[[2.0], [5.0]]]), atol=1e-5, rtol=0)
