"""OKS loss: values and gradients by hand, agreement with the OKS metric, and its errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kpreg.formats.oks import oks
from kpreg.losses import masked_mean
from kpreg.oks_loss import OKSScaleMissingError, oks_loss

NOSE = 0.026  # COCOeval sigma of the nose: k = 0.052


def test_value_by_hand() -> None:
    # d = 5 px (3-4-5), s = 100 px (area 10⁴), k = 2 · 0.05 = 0.1: e = 25 / (2 · 10⁴ · 0.01) = 0.125.
    pred = torch.tensor([[[13.0, 24.0]]])
    target = torch.tensor([[[10.0, 20.0]]])
    loss = oks_loss(pred, target, torch.tensor([100.0]), [0.05])
    assert loss.shape == (1, 1)
    assert loss.item() == pytest.approx(1.0 - math.exp(-0.125), rel=1e-6)


def test_masked_mean_is_one_minus_the_metric_oks() -> None:
    g = torch.Generator().manual_seed(0)
    target = torch.rand(3, 5, 2, generator=g, dtype=torch.float64) * 64
    pred = target + torch.randn(3, 5, 2, generator=g, dtype=torch.float64) * 3
    vis = torch.tensor([[1, 1, 0, 1, 1], [1, 0, 0, 0, 1], [1, 1, 1, 1, 1]], dtype=torch.float64)
    scale = torch.tensor([20.0, 35.0, 50.0], dtype=torch.float64)
    sigmas = [0.026, 0.025, 0.079, 0.107, 0.089]
    per_kp = oks_loss(pred, target, scale, sigmas)  # (B, K)
    gt = np.concatenate([target.numpy(), vis.numpy()[..., None]], axis=-1)  # (B, K, 3) with v
    metric = oks(pred.numpy(), gt, (scale**2).numpy(), sigmas)  # (B,) per-sample OKS
    for b in range(3):  # one sample at a time: the masked mean over its visible keypoints is 1 − OKS
        assert masked_mean(per_kp[b : b + 1], vis[b : b + 1]).item() == pytest.approx(1.0 - metric[b], abs=1e-12)


def test_gradient_is_zero_at_the_target_and_linear_near_it() -> None:
    s, k = 40.0, 2 * NOSE
    target = torch.tensor([[[30.0, 30.0]]], dtype=torch.float64)
    at = target.clone().requires_grad_(True)
    oks_loss(at, target, torch.tensor([s], dtype=torch.float64), [NOSE]).sum().backward()
    assert torch.equal(at.grad, torch.zeros_like(at))  # exactly 0 at d = 0, no NaN
    for d in (1e-3, 1e-2, 0.1):
        near = (target + torch.tensor([d, 0.0], dtype=torch.float64)).requires_grad_(True)
        oks_loss(near, target, torch.tensor([s], dtype=torch.float64), [NOSE]).sum().backward()
        hand = d / (s**2 * k**2)  # ∂/∂x of d²/(2s²k²), the exp factor → 1 as d → 0
        assert near.grad[0, 0, 0].item() == pytest.approx(hand, rel=(d / (s * k)) ** 2)  # exp(−e) ≥ 1 − e
        assert near.grad[0, 0, 1].item() == 0.0


def test_gradcheck_float64() -> None:
    g = torch.Generator().manual_seed(1)
    target = torch.rand(2, 3, 2, generator=g, dtype=torch.float64) * 20
    pred = (target + torch.randn(2, 3, 2, generator=g, dtype=torch.float64)).requires_grad_(True)
    scale = torch.tensor([6.0, 9.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p, s: oks_loss(p, target, s, [0.05, 0.08, 0.1]), (pred, scale))


def test_saturates_far_away_and_is_bounded() -> None:
    target = torch.zeros(1, 1, 2)
    far = torch.tensor([[[1e4, 0.0]]], requires_grad=True)
    loss = oks_loss(far, target, torch.tensor([10.0]), [NOSE])
    loss.sum().backward()
    assert loss.item() == 1.0 and far.grad.abs().max().item() == 0.0  # no pull from a hopeless keypoint


def test_degenerate_scale_stays_finite() -> None:
    pred = torch.tensor([[[1.0, 1.0]]], requires_grad=True)
    loss = oks_loss(pred, torch.zeros(1, 1, 2), torch.zeros(1), [NOSE])  # area 0 → raised to 1 px²
    loss.sum().backward()
    assert torch.isfinite(loss).all() and torch.isfinite(pred.grad).all()


def test_bf16_inputs_compute_in_float32() -> None:
    loss = oks_loss(torch.ones(1, 1, 2, dtype=torch.bfloat16), torch.zeros(1, 1, 2), torch.tensor([10.0]), [0.1])
    assert loss.dtype == torch.float32


def test_errors_name_the_problem() -> None:
    kp = torch.zeros(2, 3, 2)
    with pytest.raises(OKSScaleMissingError, match="scale"):
        oks_loss(kp, kp, None, [0.1] * 3)
    assert issubclass(OKSScaleMissingError, ValueError)  # the CLI reports it as one line
    with pytest.raises(ValueError, match="2 sigmas for 3 keypoints"):
        oks_loss(kp, kp, torch.ones(2), [0.1, 0.1])
    with pytest.raises(ValueError, match="scale has shape"):
        oks_loss(kp, kp, torch.ones(3), [0.1] * 3)
    with pytest.raises(ValueError, match="must both be"):
        oks_loss(kp, torch.zeros(2, 3, 3), torch.ones(2), [0.1] * 3)
