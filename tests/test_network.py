"""``KeypointNetwork``, the one forward path: for every head in ``kpreg.heads.__all__``, the batched flip test equals
two separate passes merged by the head, and the confidence map is its last step."""

from __future__ import annotations

import pytest
import torch

import kpreg.heads
from kpreg.backbone import Backbone
from kpreg.heads import Head, HeadSpec
from kpreg.heads.neck import SpatialHead
from kpreg.metrics.calibration import ConfidenceMap, make_calibrator
from kpreg.network import KeypointNetwork

SIZE = (32, 32)
K = 3
FLIP_PAIRS = [(0, 1)]


@pytest.fixture(scope="module")
def backbone() -> Backbone:
    return Backbone("test_resnet").eval()


def make_head(name: str, backbone: Backbone) -> Head:
    cls = getattr(kpreg.heads, name)
    head = cls(neck_channels=8) if issubclass(cls, SpatialHead) else cls()
    head.build(HeadSpec(backbone.channels, backbone.stride, K, SIZE, (0.05,) * K))
    if head.needs_fit:
        head.fit(torch.rand(32, K, 2, generator=torch.Generator().manual_seed(1)) * 31, torch.ones(32, K))
    return head.eval()


@pytest.mark.parametrize("name", kpreg.heads.__all__)
def test_the_flip_test_is_one_batched_pass_merged_by_the_head(name: str, backbone: Backbone) -> None:
    head = make_head(name, backbone)
    x = torch.randn(2, 3, *SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        raw, raw_flipped = head(backbone(x)), head(backbone(x.flip(-1)))
        plain = KeypointNetwork(backbone, head, FLIP_PAIRS, flip_test=False).run(x)
        flipped = KeypointNetwork(backbone, head, FLIP_PAIRS, flip_test=True).run(x)
    for got, want in ((plain, head.decode(raw)), (flipped, head.flip_merge(raw, raw_flipped, FLIP_PAIRS))):
        torch.testing.assert_close(got.coords, want[0], atol=1e-4, rtol=0)  # (B, K, 2) input pixels
        torch.testing.assert_close(got.raw_confidence, want[1], atol=1e-5, rtol=0)  # (B, K)
    torch.testing.assert_close(flipped.raw, raw, atol=1e-5, rtol=1e-5)  # the unflipped pass's output
    spread = head.spread(raw)
    if spread is None:
        assert flipped.spread is None
    else:  # the unflipped pass's spread, also with the flip test
        torch.testing.assert_close(flipped.spread, spread, atol=1e-4, rtol=1e-4)
    assert plain.coords.shape == (2, K, 2) and plain.raw_confidence.shape == (2, K)


def test_the_confidence_map_is_the_last_step(backbone: Backbone) -> None:
    head = make_head("SimCCHead", backbone)  # a head with a spread
    g = torch.Generator().manual_seed(0)
    n = 300
    features = torch.stack((0.1 * torch.rand(n, generator=g, dtype=torch.float64),
                            3.0 * torch.rand(n, generator=g, dtype=torch.float64)), 1)  # (N, 2) score, log spread
    correct = torch.rand(n, generator=g, dtype=torch.float64) < torch.sigmoid(40 * features[:, 0] - features[:, 1])
    confidence_map = ConfidenceMap(make_calibrator("platt_spread").fit(features, correct, torch.arange(n) % K), K)
    network = KeypointNetwork(backbone, head, FLIP_PAIRS, flip_test=True, confidence_map=confidence_map)
    x = torch.randn(2, 3, *SIZE, generator=g)
    with torch.no_grad():
        coords, confidence = network(x)
        out = network.run(x)
    torch.testing.assert_close(coords, out.coords)
    torch.testing.assert_close(confidence, confidence_map(out.raw_confidence, out.spread))
    assert not torch.allclose(confidence, out.raw_confidence)
    assert network.describe_confidence().startswith("P(correct): calibrated")
    network.confidence_map = None
    with torch.no_grad():
        torch.testing.assert_close(network(x)[1], out.raw_confidence)
    assert network.describe_confidence() == "the head's raw score (not calibrated)"


def test_channels_last_gives_the_same_values(backbone: Backbone) -> None:
    head = make_head("HeatmapHead", backbone)
    x = torch.randn(2, 3, *SIZE, generator=torch.Generator().manual_seed(3))
    plain = KeypointNetwork(backbone, head, FLIP_PAIRS, flip_test=True)
    fast = KeypointNetwork(backbone, head, FLIP_PAIRS, flip_test=True, channels_last=True)
    with torch.no_grad():
        for got, want in zip(fast(x), plain(x)):
            torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
