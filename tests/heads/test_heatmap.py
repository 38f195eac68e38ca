"""HeatmapHead's own behaviour: its decoders and its arguments."""

from __future__ import annotations

import pytest
import torch
from testkit.heads import round_trip_error

import kpreg.heads
from kpreg.heads import HeadSpec


def test_heatmap_dark_beats_quarter_beats_argmax() -> None:
    errs = {d: round_trip_error(kpreg.heads.HeatmapHead(output_stride=4, decoder=d)).mean() for d in
            ("argmax", "quarter", "dark")}
    assert errs["dark"] < 1e-3 < errs["quarter"] < errs["argmax"]


def test_heatmap_mse_terms_are_zero_at_the_target() -> None:
    head = kpreg.heads.HeatmapHead(output_stride=4, sigma=2.0)
    head.build(HeadSpec(8, 32, 2, (32, 32)))
    keypoints = torch.tensor([[[10.3, 20.7], [5.0, 6.0]]])
    terms = head.loss(head.targets(keypoints), keypoints, torch.ones(1, 2))
    assert set(terms) == {"heatmap_mse"} and terms["heatmap_mse"].abs().max() == 0.0


def test_bad_decoder_fails_early() -> None:
    with pytest.raises(ValueError, match="decoder"):
        kpreg.heads.HeatmapHead(decoder="median")  # type: ignore[arg-type]
