"""The coordinate heads on maps (soft-argmax, DSNT, heatmap + offset): their ideal outputs and arguments."""

from __future__ import annotations

import math

import pytest
import torch
from testkit.heads import SIZE, K

import kpreg.heads
from kpreg.heads import HeadSpec


@pytest.mark.parametrize(("head", "term"), [
    (kpreg.heads.OffsetHead(neck_channels=8), "offset"),
    (kpreg.heads.SoftArgmaxHead(neck_channels=8), "coord"),
    (kpreg.heads.DSNTHead(neck_channels=8, regulariser="none"), "euclidean"),
], ids=["offset", "softargmax", "dsnt"])
def test_ideal_outputs_have_near_zero_coordinate_losses(head: kpreg.heads.Head, term: str) -> None:
    g = torch.Generator().manual_seed(1)
    keypoints = 16 + torch.rand(2, K, 2, generator=g) * 32  # (B, K, 2) input pixels, central half
    head.build(HeadSpec(8, 32, K, (SIZE, SIZE)))
    assert head.loss(head.ideal_output(keypoints), keypoints, torch.ones(2, K))[term].abs().max() < 1e-5


def test_dsnt_terms_are_weighted_by_lambda() -> None:
    keypoints = torch.tensor([[[10.0, 20.0]]])
    raw = torch.randn(1, 1, 8, 8)
    terms = {}
    for weight in (1.0, 3.0):
        head = kpreg.heads.DSNTHead(output_stride=4, reg_weight=weight)
        head.build(HeadSpec(8, 32, 1, (32, 32)))
        terms[weight] = head.loss(raw, keypoints, torch.ones(1, 1))
    torch.testing.assert_close(terms[3.0]["regulariser"], 3.0 * terms[1.0]["regulariser"])
    torch.testing.assert_close(terms[3.0]["euclidean"], terms[1.0]["euclidean"])


def test_bad_arguments_fail_early() -> None:
    with pytest.raises(ValueError):
        kpreg.heads.DSNTHead(regulariser="kl")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        kpreg.heads.OffsetHead(radius=0.5)
    with pytest.raises(ValueError):
        kpreg.heads.SoftArgmaxHead(temperature=0.0)
    assert math.isfinite(kpreg.heads.OffsetHead().radius)


def test_spread_is_the_variance_in_input_pixels() -> None:
    # soft-argmax / DSNT: cells² × stride²; a 50/50 split between two cells at stride 4 is 4 px².
    dsnt = kpreg.heads.DSNTHead(output_stride=4)
    dsnt.build(HeadSpec(8, 32, 1, (16, 16)))
    maps = torch.full((1, 1, 4, 4), -1e4)
    maps[0, 0, 1, 1:3] = 0.0
    assert dsnt.spread(maps).item() == pytest.approx(4.0)
    assert kpreg.heads.OffsetHead().spread(maps) is None  # no distribution: the base class's None
