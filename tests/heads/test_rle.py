"""RLEHead and its flow: the head-suite checks, the flow's log-determinants and density, and the loss by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from kpreg.backbone import Backbone
from kpreg.heads import HeadSpec
from kpreg.heads.rle import RLEHead, residual_flow

SIZE = 64


@pytest.fixture(scope="module")
def backbone() -> Backbone:
    return Backbone("test_resnet").eval()


def built(size: int = SIZE, k: int = 1, **kwargs: object) -> RLEHead:
    head = RLEHead(**kwargs)  # type: ignore[arg-type]
    head.build(HeadSpec(8, 32, k, (size, size)))
    return head


def randomised_flow(seed: int = 0, std: float = 0.3) -> nn.Module:
    """A flow far from the identity, so that its log-determinants are worth checking."""
    flow = residual_flow()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in flow.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return flow.double()


def fitted_round_trip_error(head, keypoints: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
    """|decode(ideal_output(k)) − k| per axis of an already built (and fitted) head: no rebuild."""
    with torch.no_grad():
        coords, _ = head.eval().decode(head.ideal_output(keypoints))
    return (coords - keypoints).abs()



def test_round_trip_after_fit() -> None:
    head = RLEHead()
    head.build(HeadSpec(8, 32, 4, (256, 256)))
    g = torch.Generator().manual_seed(2)
    keypoints = torch.rand(50, 4, 2, generator=g) * 255
    head.fit(keypoints, torch.ones(50, 4))
    assert head.is_fitted() and not torch.allclose(head.target_mean, torch.zeros(4, 2))
    assert fitted_round_trip_error(head, keypoints).max().item() <= head.round_trip_tolerance()


# ---- the flow ----------------------------------------------------------------------------------------
def test_each_coupling_log_det_equals_the_autograd_jacobian() -> None:
    flow = randomised_flow()
    x = torch.randn(5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 2
    assert len(flow.transform.transforms) == 6  # RLE's 3 coupling pairs
    for lazy in flow.transform.transforms:
        t = lazy()  # the coupling layer, data → base direction
        y = t(x)
        log_det = t.log_abs_det_jacobian(x, y)  # (5,)
        for i in range(x.shape[0]):
            jac = torch.autograd.functional.jacobian(lambda v, t=t: t(v[None])[0], x[i])  # (2, 2)
            assert torch.linalg.slogdet(jac).logabsdet.item() == pytest.approx(log_det[i].item(), abs=1e-10)
            # a coupling layer leaves one coordinate as it is: its Jacobian is triangular
            assert min(abs(jac[0, 1].item()), abs(jac[1, 0].item())) == 0.0
        x = y


def test_flow_is_invertible() -> None:
    dist = randomised_flow(seed=4)()
    x = torch.randn(100, 2, dtype=torch.float64) * 3
    z = dist.transform(x)
    torch.testing.assert_close(dist.transform.inv(z), x, atol=1e-10, rtol=0)


def test_flow_density_integrates_to_one() -> None:
    dist = randomised_flow(seed=5, std=0.2)()
    step = 0.06
    axis = torch.arange(-12.0, 12.0, step, dtype=torch.float64) + step / 2  # midpoints
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), dim=-1).reshape(-1, 2)  # (N, 2)
    with torch.no_grad():
        total = dist.log_prob(grid).exp().sum().item() * step**2
    assert total == pytest.approx(1.0, abs=1e-2)


def test_flow_starts_as_the_identity() -> None:
    x = torch.randn(10, 2)
    log_g = residual_flow()().log_prob(x)
    torch.testing.assert_close(log_g, -0.5 * x.pow(2).sum(-1) - math.log(2 * math.pi))


# ---- the loss by hand (identity flow: log G(x̄) = −‖x̄‖²/2 − log 2π) -----------------------------------
def raw_for(head: RLEHead, mu_px: torch.Tensor, sigma_logit: float) -> torch.Tensor:
    """(1, 1, 4) raw output with μ at ``mu_px`` (x, y input pixels) and both σ logits = ``sigma_logit``."""
    ideal = head.ideal_output(mu_px.view(1, 1, 2))
    ideal[..., 2:] = sigma_logit
    return ideal


def test_loss_terms_by_hand() -> None:
    # 64-px input: one normalised unit is 32 px. Error (3.2, −6.4) px = (0.1, −0.2) normalised; σ = ½ (logit 0):
    # x̄ = (0.2, −0.4). flow: ‖x̄‖²/2 + log 2π = 0.1 + 1.8379; log σ: 2 log ½; Laplace b = 1: 0.6 + 2 log 2.
    head = built()
    target = torch.tensor([[[30.0, 40.0]]])
    raw = raw_for(head, target[0, 0] + torch.tensor([3.2, -6.4]), 0.0)
    terms = head.loss(raw, target, torch.ones(1, 1))
    assert set(terms) == {"flow", "log_sigma", "prior"}
    assert terms["flow"].item() == pytest.approx(0.1 + math.log(2 * math.pi), abs=1e-5)
    assert terms["log_sigma"].item() == pytest.approx(2 * math.log(0.5), abs=1e-6)
    assert terms["prior"].item() == pytest.approx(0.6 + 2 * math.log(2), abs=1e-5)
    gauss = built(prior="gaussian", prior_scale=2.0).loss(raw, target, torch.ones(1, 1))["prior"]
    assert gauss.item() == pytest.approx((0.04 + 0.16) / 8 + 2 * math.log(2 * math.sqrt(2 * math.pi)), abs=1e-5)
    assert "prior" not in built(prior="none").loss(raw, target, torch.ones(1, 1))


@pytest.mark.parametrize(("kwargs", "ratio"), [
    ({"prior": "none"}, 1.0),  # log σ + e²/2σ²: σ* = |e|, the maximum-likelihood std
    ({"prior": "laplace"}, (1 + math.sqrt(5)) / 2),  # + |e|/σ: σ² − |e|σ − e² = 0, the golden ratio
    ({"prior": "laplace", "prior_scale": 2.0}, (1 + math.sqrt(17)) / 4),  # + |e|/2σ: mmpose's optimum
    ({"prior": "gaussian"}, math.sqrt(2)),  # + e²/2σ²: σ* = √2 |e|
])
def test_sigma_optimum_by_hand(kwargs: dict, ratio: float) -> None:
    # With the identity flow the loss separates per axis; its σ-gradient vanishes at σ* = ratio · |e|.
    head = built(**kwargs).double()
    target = torch.tensor([[[32.0, 32.0]]], dtype=torch.float64)
    e = 0.05  # normalised, both axes (1.6 px)
    sigma = ratio * e
    raw = raw_for(head, target[0, 0] + e * 32, math.log(sigma / (1 - sigma))).requires_grad_(True)
    sum(head.loss(raw, target, torch.ones(1, 1)).values()).sum().backward()
    assert raw.grad[0, 0, 2:].abs().max().item() < 1e-7  # SIGMA_EPS = 1e-9 shifts σ by 2e-8 relative
    off = raw_for(head, target[0, 0] + e * 32, math.log(2 * sigma / (1 - 2 * sigma))).requires_grad_(True)
    sum(head.loss(off, target, torch.ones(1, 1)).values()).sum().backward()
    assert off.grad[0, 0, 2:].min().item() > 1e-3  # σ too large: the gradient pushes it down


def test_prior_scale_two_is_mmpose_rle_loss() -> None:
    # mmpose's RLELoss per keypoint: Σ_axes [log σ − log G(x̄)] + Σ_axes [log(2σ) + |x̄|] (log G is broadcast
    # over both axes). That is 2 × (our terms with a Laplace prior of scale 2) − 6 log 2.
    head = built(k=3, prior_scale=2.0).double()
    head.flow = randomised_flow(seed=7, std=0.2)
    g = torch.Generator().manual_seed(8)
    raw = torch.randn(2, 3, 4, generator=g, dtype=torch.float64)
    target = torch.rand(2, 3, 2, generator=g, dtype=torch.float64) * 63
    ours = sum(head.loss(raw, target, torch.ones(2, 3)).values())  # (B, K)
    mu = head.mean_normalised(raw)
    sigma = head.sigma(raw)
    u = (2 * target + 1) / SIZE - 1
    xbar = (u - mu) / sigma
    log_phi = head.flow().log_prob(xbar.reshape(-1, 2)).view(2, 3, 1)
    mmpose = ((sigma.log() - log_phi) + (torch.log(2 * sigma) + xbar.abs())).sum(-1)
    torch.testing.assert_close(mmpose, 2 * ours - 6 * math.log(2))


def test_gradcheck_float64() -> None:
    head = built(k=2).double()
    head.flow = randomised_flow(seed=9, std=0.2)
    g = torch.Generator().manual_seed(10)
    raw = torch.randn(2, 2, 4, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.rand(2, 2, 2, generator=g, dtype=torch.float64) * 63
    for prior in ("laplace", "gaussian", "none"):
        head.prior = prior  # type: ignore[assignment]
        assert torch.autograd.gradcheck(lambda r: sum(head.loss(r, target, torch.ones(2, 2)).values()), (raw,))


# ---- decoding, confidence, spread, fit ------------------------------------------------------------------
def test_decode_confidence_and_spread_by_hand() -> None:
    head = built().eval()
    raw = raw_for(head, torch.tensor([10.0, 50.0]), 0.0)  # σ = ½ on both axes
    raw[0, 0, 3] = math.log(0.1 / 0.9)  # σ_y = 0.1
    coords, conf = head.decode(raw)
    torch.testing.assert_close(coords, torch.tensor([[[10.0, 50.0]]]))
    assert conf.item() == pytest.approx(1 - (0.5 + 0.1) / 2)  # RLE's 1 − mean σ
    assert head.spread(raw).item() == pytest.approx((0.5 * 32) ** 2 + (0.1 * 32) ** 2, rel=1e-5)


def test_fit_sets_the_standardisation_from_visible_keypoints() -> None:
    head = built(k=3)
    kp = torch.tensor([[[0.0, 0.0], [10.0, 10.0], [5.0, 5.0]],
                       [[32.0, 16.0], [99.0, 99.0], [5.0, 5.0]],
                       [[63.0, 32.0], [20.0, 30.0], [5.0, 5.0]]])  # (N, K, 2) input pixels
    vis = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 0]])  # keypoint 2 is never visible
    head.fit(kp, vis)
    u0 = (2 * torch.tensor([[0.0, 0.0], [32.0, 16.0], [63.0, 32.0]]) + 1) / SIZE - 1  # keypoint 0, normalised
    torch.testing.assert_close(head.target_mean[0], u0.mean(0))
    torch.testing.assert_close(head.target_std[0], u0.std(0, unbiased=False))
    u1 = (2 * torch.tensor([[10.0, 10.0], [20.0, 30.0]]) + 1) / SIZE - 1  # the invisible (99, 99) is left out
    torch.testing.assert_close(head.target_mean[1], u1.mean(0))
    assert head.target_mean[2].tolist() == [0.0, 0.0] and head.target_std[2].tolist() == [0.5, 0.5]
    assert "target_mean" in head.state_dict()  # saved in and restored from the checkpoint


def test_invisible_keypoints_with_absurd_values_contribute_exactly_nothing() -> None:
    head = built(k=2, hidden=8)
    raw = torch.randn(1, 2, 4, requires_grad=True)
    kp = torch.tensor([[[20.0, 30.0], [1e30, -1e30]]])  # the second is invisible and absurd
    vis = torch.tensor([[1.0, 0.0]])
    terms = head.loss(raw, kp, vis)
    assert all(torch.isfinite(t).all() for t in terms.values())
    total = (sum(terms.values()) * vis).sum()
    total.backward()
    assert torch.isfinite(raw.grad).all() and raw.grad[0, 1].abs().max().item() == 0.0


def test_bad_arguments_fail_early() -> None:
    with pytest.raises(ValueError, match="prior"):
        RLEHead(prior="student")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive"):
        RLEHead(prior_scale=0.0)
    with pytest.raises(ValueError, match="coupling"):
        RLEHead(flow_couplings=1)
    head = built(hidden=8)
    with pytest.raises(ValueError, match="batch_size"):
        head.train()(torch.rand(1, 8, 2, 2))
