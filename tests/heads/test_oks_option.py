"""The OKS loss as an option of the coordinate-regressing heads (FC, soft-argmax, DSNT, RLE's mean): the term is the
OKS loss of what the head decodes, its value and gradient by hand on tiny inputs (through each head's own mapping
from raw output to pixels), a zero gradient at d = 0, and one clear error where sigmas or scales are missing."""

from __future__ import annotations

import math

import pytest
import torch

import kpreg.heads
import kpreg.heads.oks_option
from kpreg.heads import Head, HeadSpec
from kpreg.heads.oks_option import OKSLossOption
from kpreg.oks_loss import OKSScaleMissingError, OKSSigmasMissingError, oks_loss
from kpreg.training.module import KeypointModule

# (head class, the argument that selects the OKS loss); the rest of each head's arguments are its defaults.
OKS_HEADS = [
    (kpreg.heads.FCHead, "loss"),
    (kpreg.heads.SoftArgmaxHead, "loss"),
    (kpreg.heads.DSNTHead, "loss"),
    (kpreg.heads.RLEHead, "mean_loss"),
]
IDS = [cls.__name__ for cls, _ in OKS_HEADS]
# The heads that offer the option, as their classes declare it.
OFFERED = [c for c in (getattr(kpreg.heads, name) for name in kpreg.heads.__all__) if issubclass(c, OKSLossOption)]


def oks_head(cls: type[Head], arg: str, spec: HeadSpec, **kwargs: object) -> Head:
    if "neck_channels" in cls.__init__.__code__.co_varnames:
        kwargs.setdefault("neck_channels", 8)
    head = cls(**{arg: "oks"}, **kwargs)
    head.build(spec)
    return head.eval()  # eval: FC's running statistics stay where they are


# ---- the term is the OKS loss of the decoded coordinates ------------------------------------------------------
@pytest.mark.parametrize(("cls", "arg"), OKS_HEADS, ids=IDS)
def test_the_term_is_the_oks_loss_of_the_decoded_coordinates(cls: type[Head], arg: str) -> None:
    sigmas = (0.05, 0.08, 0.1)
    head = oks_head(cls, arg, HeadSpec(8, 32, 3, (32, 32), sigmas))
    g = torch.Generator().manual_seed(0)
    keypoints = 8 + 16 * torch.rand(2, 3, 2, generator=g)  # (B, K, 2) input pixels
    ideal = head.ideal_output(keypoints)
    raw = ideal + 0.3 * torch.randn(ideal.shape, generator=g)  # a prediction a few pixels off
    scale = torch.tensor([12.0, 20.0])  # (B,) input pixels
    terms = head.loss(raw, keypoints, torch.ones(2, 3), scale)
    coords, _ = head.decode(raw)  # (B, K, 2) input pixels
    torch.testing.assert_close(terms["oks"], oks_loss(coords, keypoints, scale, sigmas))
    assert 0.0 < float(terms["oks"].min()) and float(terms["oks"].max()) < 1.0


# ---- value and gradient by hand -----------------------------------------------------------------------------
# Every case below puts the prediction 1 px left of the target with s = 2 px and σ = 0.25 (k = 0.5, s·k = 1 px):
# e = d² / (2 s² k²) = 1/2, L = 1 − e^{−1/2}, and ∂L/∂p_x = (p_x − t_x) / (s k)² · e^{−1/2} = −e^{−1/2} per pixel.
E = math.exp(-0.5)


@pytest.mark.parametrize(("cls", "arg"), [(kpreg.heads.FCHead, "loss"), (kpreg.heads.RLEHead, "mean_loss")],
                         ids=["FCHead", "RLEHead"])
def test_pooled_heads_value_and_gradient_by_hand(cls: type[Head], arg: str) -> None:
    # 8×8 input, no statistics yet: mean 0, std 0.5 (init_std). Raw 0 → u = 0 → pixel ((0 + 1)·8 − 1)/2 = 3.5, and
    # ∂pixel/∂raw = std · W/2 = 2, so ∂L/∂raw_x = 2 · (−e^{−1/2}).
    head = oks_head(cls, arg, HeadSpec(4, 32, 1, (8, 8), (0.25,)), hidden=0)
    raw = head.ideal_output(torch.full((1, 1, 2), 3.5)).detach().requires_grad_(True)  # μ at (3.5, 3.5)
    assert raw[..., :2].abs().max() == 0.0
    term = head.loss(raw, torch.tensor([[[4.5, 3.5]]]), torch.ones(1, 1), torch.tensor([2.0]))["oks"]
    assert term.item() == pytest.approx(1.0 - E, rel=1e-6)
    term.sum().backward()
    torch.testing.assert_close(raw.grad[..., :2], torch.tensor([[[-2.0 * E, 0.0]]]))
    if raw.shape[-1] > 2:  # RLE: the OKS term does not reach the σ logits
        assert raw.grad[..., 2:].abs().max() == 0.0


@pytest.mark.parametrize("cls", [kpreg.heads.SoftArgmaxHead, kpreg.heads.DSNTHead], ids=["SoftArgmaxHead", "DSNTHead"])
def test_map_heads_value_and_gradient_by_hand(cls: type[Head]) -> None:
    # A 4×8 input at stride 4 is a 1×2 grid. Logits (0, 0): p = (½, ½), x = ½ cell → pixel (½ + ½)·4 − ½ = 3.5,
    # y = pixel 1.5; ∂x/∂z₁ = 4 p₀ p₁ = 1 = −∂x/∂z₀ (the same for DSNT's normalised expectation). Target (4.5, 1.5):
    # ∂L/∂z = (+e^{−1/2}, −e^{−1/2}).
    kwargs = {"regulariser": "none"} if cls is kpreg.heads.DSNTHead else {}
    head = oks_head(cls, "loss", HeadSpec(8, 32, 1, (4, 8), (0.25,)), output_stride=4, **kwargs)
    raw = torch.zeros(1, 1, 1, 2, requires_grad=True)
    terms = head.loss(raw, torch.tensor([[[4.5, 1.5]]]), torch.ones(1, 1), torch.tensor([2.0]))
    assert set(terms) == {"oks"}
    assert terms["oks"].item() == pytest.approx(1.0 - E, rel=1e-6)
    terms["oks"].sum().backward()
    torch.testing.assert_close(raw.grad, torch.tensor([[[[E, -E]]]]))


@pytest.mark.parametrize(("cls", "arg"), OKS_HEADS, ids=IDS)
def test_gradient_vanishes_as_d_goes_to_zero(cls: type[Head], arg: str) -> None:
    """At the head's ideal output (d ≈ 0) the loss and its gradient are ≈ 0: the OKS loss is smooth at d = 0, unlike
    an L1 or Euclidean loss, whose gradient keeps its size there."""
    head = oks_head(cls, arg, HeadSpec(8, 32, 2, (32, 32), (0.05, 0.1)))
    keypoints = torch.tensor([[[10.3, 12.7], [20.1, 17.6]]])
    raw = head.ideal_output(keypoints).detach().requires_grad_(True)
    term = head.loss(raw, keypoints, torch.ones(1, 2), torch.tensor([16.0]))["oks"]
    assert term.abs().max() < 1e-8
    term.sum().backward()
    assert raw.grad.abs().max() < 1e-4


def test_rle_likelihood_trains_sigma_and_the_flow_only() -> None:
    head = oks_head(kpreg.heads.RLEHead, "mean_loss", HeadSpec(4, 32, 2, (16, 16), (0.1, 0.1)), hidden=0)
    raw = torch.randn(3, 2, 4, requires_grad=True)
    terms = head.loss(raw, 16 * torch.rand(3, 2, 2), torch.ones(3, 2), torch.full((3,), 8.0))
    assert set(terms) == {"oks", "flow", "log_sigma", "prior"}
    nll = sum(v for k, v in terms.items() if k != "oks").sum()
    (grad_nll,) = torch.autograd.grad(nll, raw, retain_graph=True)
    assert grad_nll[..., :2].abs().max() == 0.0 and grad_nll[..., 2:].abs().max() > 0  # μ detached, σ trained
    (grad_oks,) = torch.autograd.grad(terms["oks"].sum(), raw)
    assert grad_oks[..., 2:].abs().max() == 0.0 and grad_oks[..., :2].abs().max() > 0


# ---- errors ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("cls", "arg"), OKS_HEADS, ids=IDS)
def test_missing_or_miscounted_sigmas_fail_at_build_time(cls: type[Head], arg: str) -> None:
    with pytest.raises(OKSSigmasMissingError, match=rf"{cls.__name__}: {arg} 'oks' .* declares none"):
        oks_head(cls, arg, HeadSpec(8, 32, 2, (16, 16)))
    with pytest.raises(OKSSigmasMissingError, match=r"per keypoint \(2\), but the data declares 1 \(0.1\)"):
        oks_head(cls, arg, HeadSpec(8, 32, 2, (16, 16), (0.1,)))
    head = cls()  # the default loss needs no sigmas
    head.build(HeadSpec(8, 32, 2, (16, 16)))


def test_every_head_that_offers_the_option_is_tested_here() -> None:
    assert {cls: cls.oks_argument for cls in OFFERED} == dict(OKS_HEADS)


@pytest.mark.parametrize("sigmas", [(), (0.1,), (0.1, 0.0), (0.1, -0.05)], ids=["none", "one", "zero", "negative"])
@pytest.mark.parametrize("cls", OFFERED, ids=[c.__name__ for c in OFFERED])
def test_refused_sigmas_fail_when_the_head_is_built(
    cls: type[Head], sigmas: tuple[float, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    head = cls(**{cls.oks_argument: "oks"})  # choosing the option needs no data
    monkeypatch.setattr(kpreg.heads.oks_option, "oks_loss", None)  # the check is explicit, not a call of the loss
    found = "none" if not sigmas else rf"{len(sigmas)} \({', '.join(f'{s:g}' for s in sigmas)}\)"
    with pytest.raises(OKSSigmasMissingError, match=rf"^{cls.__name__}: {cls.oks_argument} 'oks' needs one positive "
                                                    rf"OKS sigma per keypoint \(2\), but the data declares {found}: "):
        head.build(HeadSpec(8, 32, 2, (16, 16), sigmas))
    assert not hasattr(head, "spec")  # refused before any layer was built


@pytest.mark.parametrize(("cls", "arg"), OKS_HEADS, ids=IDS)
def test_a_batch_without_scale_fails_with_one_clear_error(cls: type[Head], arg: str) -> None:
    head = oks_head(cls, arg, HeadSpec(8, 32, 2, (16, 16), (0.1, 0.1)))
    raw = head.ideal_output(torch.full((1, 2, 2), 8.0))
    with pytest.raises(OKSScaleMissingError, match="needs each sample's scale"):
        head.loss(raw, torch.full((1, 2, 2), 8.0), torch.ones(1, 2), None)


def test_the_module_refuses_an_oks_head_on_data_without_sigmas() -> None:
    with pytest.raises(OKSSigmasMissingError, match="FCHead: loss 'oks'"):
        KeypointModule(kpreg.heads.FCHead(loss="oks"), backbone="test_resnet", num_keypoints=2, input_size=(32, 32))


def test_unknown_loss_names_fail_early() -> None:
    with pytest.raises(ValueError, match="oks"):
        kpreg.heads.FCHead(loss="okss")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        kpreg.heads.SoftArgmaxHead(loss="okss")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        kpreg.heads.DSNTHead(loss="okss")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mean_loss"):
        kpreg.heads.RLEHead(mean_loss="l1")  # type: ignore[arg-type]
