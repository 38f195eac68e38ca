"""MultiBinHead's own math: its losses by hand (flat and hierarchical) and the round trip of every variant."""

from __future__ import annotations

import math

import pytest
import torch
from testkit.heads import round_trip_error

import kpreg.heads
from kpreg.heads import Head, HeadSpec
from kpreg.losses import reduce_keypoint_losses


def _multibin_8px(**kwargs: object) -> Head:
    # 8×8 input, 2 bins per axis, overlap ½: spacing 4, centres 1.5 and 5.5, half-width 3.
    head = kpreg.heads.MultiBinHead(num_bins=2, overlap=0.5, **kwargs)
    head.build(HeadSpec(8, 32, 1, (8, 8)))
    return head


def test_multibin_loss_by_hand() -> None:
    # x = y = 3: both bins cover it (|3 − 1.5| = 1.5, |3 − 5.5| = 2.5 ≤ 3); class 0 (nearest centre);
    # residual targets 1.5 / 3 = 0.5 and −2.5 / 3. Zero output: CE = ln 2 per axis; smooth-L1 (β = 1/9)
    # |r| − β/2 on each covering bin, averaged: (0.5 + 5/6) / 2 − 1/18.
    kp, vis = torch.full((1, 1, 2), 3.0), torch.ones(1, 1)
    raw = torch.zeros(1, 1, 2, 4, requires_grad=True)
    terms = _multibin_8px().loss(raw, kp, vis)
    res = (0.5 + 5 / 6) / 2 - 1 / 18
    assert terms["classification"].item() == pytest.approx(2 * math.log(2))
    assert terms["residual"].item() == pytest.approx(2 * res)
    reduce_keypoint_losses(sum(terms.values()), vis).backward()
    # d CE / d logits = p − onehot = (−½, ½); d residual / d r = sign(r − t) / n_cover = (−½, ½) per axis
    torch.testing.assert_close(raw.grad[0, 0, 0], torch.tensor([-0.5, 0.5, -0.5, 0.5]))
    focal = _multibin_8px(cls_loss="focal", gamma=2.0, alpha=1.0).loss(raw, kp, vis)["classification"]
    assert focal.item() == pytest.approx(2 * 0.25 * math.log(2))  # (1 − ½)² ln 2 per axis


def test_multibin_hierarchical_loss_by_hand() -> None:
    # 2 sub-bins per bin: bin 0 spans [−1.5, 4.5] (sub-centres 0, 3), bin 1 [2.5, 8.5] (sub-centres 4, 7),
    # sub half-width 1.5. x = 3 falls in sub-bin 1 of bin 0 (residual 0) and sub-bin 0 of bin 1 (residual
    # −1 / 1.5). Zero output: per covering bin CE ln 2 + smooth-L1; averaged over the 2 bins, 2 axes.
    raw = torch.zeros(1, 1, 2, 2 * 2 + 2 * 2 * 2)
    terms = _multibin_8px(sub_bins=2).loss(raw, torch.full((1, 1, 2), 3.0), torch.ones(1, 1))
    sub = (2 * math.log(2) + 0.0 + (2 / 3 - 1 / 18)) / 2
    assert terms["sub_bins"].item() == pytest.approx(2 * sub)


def test_multibin_residual_weight_scales_its_term() -> None:
    raw, kp, vis = torch.zeros(1, 1, 2, 4), torch.full((1, 1, 2), 3.0), torch.ones(1, 1)
    once = _multibin_8px().loss(raw, kp, vis)["residual"]
    twice = _multibin_8px(residual_weight=2.0).loss(raw, kp, vis)["residual"]
    torch.testing.assert_close(twice, 2 * once)


@pytest.mark.parametrize("sub_bins", [0, 3])
@pytest.mark.parametrize("decoder", ["argmax", "expectation"])
def test_multibin_round_trip_every_variant(sub_bins: int, decoder: str) -> None:
    head = kpreg.heads.MultiBinHead(output_stride=8, num_bins=5, overlap=0.3, sub_bins=sub_bins, decoder=decoder)
    assert round_trip_error(head).max() <= 1e-3
    keypoints = torch.tensor([[[10.0, 200.0]]])
    head.build(HeadSpec(8, 32, 1, (256, 256)))
    assert head.loss(head.ideal_output(keypoints), keypoints, torch.ones(1, 1))["residual"].abs().max() < 1e-6


def test_bad_arguments_fail_early() -> None:
    with pytest.raises(ValueError):
        kpreg.heads.MultiBinHead(cls_loss="hinge")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        kpreg.heads.MultiBinHead(overlap=1.5)
