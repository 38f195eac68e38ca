"""SimCCHead's own math: its three losses, its bin convention, its spread."""

from __future__ import annotations

import pytest
import torch
from testkit.heads import SIZE, K

import kpreg.heads
from kpreg.heads import HeadSpec
from kpreg.losses import reduce_keypoint_losses


@pytest.mark.parametrize("loss", ["kl", "ce", "dfl"])
def test_simcc_losses_run_and_dfl_is_minimal_at_the_ideal_output(loss: str) -> None:
    head = kpreg.heads.SimCCHead(loss=loss, split_ratio=2.0, sigma=2.0)  # type: ignore[arg-type]
    head.build(HeadSpec(8, 32, K, (SIZE, SIZE)))
    keypoints = 8 + torch.rand(2, K, 2) * 48
    vis = torch.ones(2, K)
    ideal = head.ideal_output(keypoints)
    raw = (ideal + 0.5 * torch.randn_like(ideal)).requires_grad_(True)
    terms = head.loss(raw, keypoints, vis)
    assert set(terms) == {loss}
    total = reduce_keypoint_losses(sum(terms.values()), vis)
    total.backward()
    assert torch.isfinite(raw.grad).all() and raw.grad.abs().sum() > 0
    if loss == "dfl":  # the hat is DFL's target: its log is the optimum
        assert reduce_keypoint_losses(head.loss(ideal, keypoints, vis)["dfl"], vis) < total


def test_simcc_bins_follow_the_pixel_centre_convention() -> None:
    head = kpreg.heads.SimCCHead(split_ratio=2.0, decoder="argmax")
    head.build(HeadSpec(8, 32, 1, (4, 4)))  # 8 bins per axis, centred on −0.25, 0.25, …, 3.25
    raw = torch.full((1, 1, 16), -10.0)
    raw[0, 0, 0] = 10.0  # x: bin 0
    raw[0, 0, 8 + 7] = 10.0  # y: bin 7
    coords, conf = head.decode(raw)
    torch.testing.assert_close(coords, torch.tensor([[[-0.25, 3.25]]]))
    assert conf.item() > 0.99


def test_spread_is_the_variance_in_input_pixels() -> None:
    # A 50/50 split between two bins 1 px apart has variance ¼ px² per axis.
    head = kpreg.heads.SimCCHead(split_ratio=1.0)
    head.build(HeadSpec(8, 32, 1, (4, 4)))
    raw = torch.full((1, 1, 8), -1e4)
    raw[0, 0, [1, 2, 4 + 3]] = 0.0  # x split between pixels 1 and 2, y certain
    assert head.spread(raw).item() == pytest.approx(0.25)
