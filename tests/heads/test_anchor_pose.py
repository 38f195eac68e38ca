"""AnchorPoseHead: the head-suite checks, anchors fitted by hand, the loss, decoders, and A = 1 = FCHead."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest
import torch
from testkit.heads import random_batch

from kpreg.backbone import Backbone
from kpreg.coords import normalized_to_pixels
from kpreg.heads import FCHead, HeadSpec
from kpreg.heads.anchor_pose import AnchorPoseHead
from kpreg.losses import coord_loss_per_joint

SIZE = 64
SPEC = HeadSpec(8, 32, 2, (SIZE, SIZE))  # K = 2


@pytest.fixture(scope="module")
def backbone() -> Backbone:
    return Backbone("test_resnet").eval()


def built(k: int = 2, **kwargs: object) -> AnchorPoseHead:
    head = AnchorPoseHead(**kwargs)  # type: ignore[arg-type]
    head.build(HeadSpec(8, 32, k, (SIZE, SIZE)))
    return head


def px(u: list) -> torch.Tensor:
    """Normalised poses → input pixels of the 64-px input (one normalised unit = 32 px)."""
    return normalized_to_pixels(torch.tensor(u, dtype=torch.float32), (SIZE, SIZE))


def fitted_round_trip_error(head, keypoints: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
    """|decode(ideal_output(k)) − k| per axis of an already built (and fitted) head: no rebuild."""
    with torch.no_grad():
        coords, _ = head.eval().decode(head.ideal_output(keypoints))
    return (coords - keypoints).abs()



@pytest.mark.parametrize("decoder", ["argmax", "expectation"])
def test_round_trip_with_fitted_anchors(decoder: str) -> None:
    head = AnchorPoseHead(num_anchors=5, decoder=decoder)
    head.build(HeadSpec(8, 32, 4, (256, 256)))
    g = torch.Generator().manual_seed(0)
    keypoints = torch.rand(200, 4, 2, generator=g) * 255
    head.fit(keypoints, (torch.rand(200, 4, generator=g) > 0.2).float())
    assert head.is_fitted() and fitted_round_trip_error(head, keypoints).max().item() <= head.round_trip_tolerance()


def test_fitted_head_trains_without_warning(backbone: Backbone) -> None:
    head = AnchorPoseHead(num_anchors=3, hidden=16)
    head.build(HeadSpec(backbone.channels, backbone.stride, 4, (SIZE, SIZE)))
    images, keypoints, visibility = random_batch(4)
    head.fit(torch.rand(30, 4, 2) * (SIZE - 1), torch.ones(30, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the "fit() was not called" warning would fail here
        terms = head.train().loss(head(backbone(images)), keypoints, visibility)
    sum(t.sum() for t in terms.values()).backward()
    with pytest.warns(UserWarning, match="fit"):
        built(num_anchors=3).train().loss(torch.zeros(1, 3, 5), torch.zeros(1, 2, 2), torch.ones(1, 2))


# ---- fitting the anchors ------------------------------------------------------------------------------
def test_fit_by_hand() -> None:
    # Two separable clusters of 2-keypoint poses (normalised). Cluster A: keypoint 0 at x = −0.6 / −0.4,
    # keypoint 1 at y = 0.5 / 0.3. Cluster B: keypoint 0 at y = 0.5 / 0.7 / 0.6, keypoint 1 fixed, and
    # invisible on the third pose (its coordinates there are garbage and must not count).
    poses = px([[[-0.6, -0.5], [0.2, 0.5]], [[-0.4, -0.5], [0.2, 0.3]],
                [[0.5, 0.5], [-0.2, -0.5]], [[0.5, 0.7], [-0.2, -0.5]], [[0.5, 0.6], [0.9, 0.9]]])
    vis = torch.tensor([[1, 1], [1, 1], [1, 1], [1, 1], [1, 0]])
    head = built(num_anchors=2)
    head.fit(poses, vis)
    anchors = sorted(head.anchors.tolist())
    torch.testing.assert_close(torch.tensor(anchors), torch.tensor([[[-0.5, -0.5], [0.2, 0.4]],
                                                                    [[0.5, 0.6], [-0.2, -0.5]]]))
    # Pooled residuals from each pose's own anchor: keypoint 0 x: ±0.1 (A), 0, 0, 0 (B) → sqrt(0.02 / 5);
    # keypoint 0 y: 0, 0 (A), ∓0.1, 0 (B) → sqrt(0.02 / 5); keypoint 1 x: all 0 → the 1e-3 floor;
    # keypoint 1 y: ±0.1 (A), 0, 0 (B; the invisible pose left out) → sqrt(0.02 / 4).
    expected = torch.tensor([[math.sqrt(0.004), math.sqrt(0.004)], [1e-3, math.sqrt(0.005)]])
    torch.testing.assert_close(head.residual_std, expected, atol=1e-6, rtol=1e-4)
    again = built(num_anchors=2)
    again.fit(poses, vis)
    assert torch.equal(again.anchors, head.anchors)  # deterministic


def test_fit_with_fewer_poses_than_anchors_repeats_them_with_a_warning() -> None:
    head = built(num_anchors=4)
    poses = torch.tensor([[[10.0, 10.0], [20.0, 20.0]], [[40.0, 40.0], [50.0, 50.0]], [[10.0, 12.0], [20.0, 22.0]]])
    with pytest.warns(UserWarning, match="3 training pose.*4 anchors"):
        head.fit(poses, torch.ones(3, 2))
    assert head.is_fitted() and torch.equal(head.anchors[3], head.anchors[0])  # anchor 3 repeats cluster 0
    assert len({tuple(a.flatten().tolist()) for a in head.anchors}) == 3


def test_anchors_are_saved_in_the_checkpoint() -> None:
    head = built(num_anchors=2)
    head.fit(torch.rand(10, 2, 2) * 63, torch.ones(10, 2))
    fresh = built(num_anchors=2)
    fresh.load_state_dict(head.state_dict())
    assert torch.equal(fresh.anchors, head.anchors) and bool(fresh.fitted)
    raw = torch.randn(3, 2, 5)
    torch.testing.assert_close(fresh.eval().decode(raw)[0], head.eval().decode(raw)[0])


# ---- targets and loss by hand -------------------------------------------------------------------------
def two_anchor_head(**kwargs: object) -> AnchorPoseHead:
    """K = 1; anchors at normalised (0, 0) and (0.2, 0); std 0.1 on both axes."""
    head = built(k=1, num_anchors=2, **kwargs)
    head.anchors.copy_(torch.tensor([[[0.0, 0.0]], [[0.2, 0.0]]]))
    head.residual_std.fill_(0.1)
    head.fitted.fill_(True)
    return head


@pytest.mark.parametrize(("cover", "residual"), [(2.0, (0.5 + 1.5) / 2), (1.0, 0.5), (0.0, 0.5)])
def test_targets_cover_and_loss_by_hand(cover: float, residual: float) -> None:
    # u = (0.05, 0): nearest anchor 0 (d² 0.0025 vs 0.0225); standardised residuals (0.5, 0) and (−1.5, 0),
    # RMS over the 2 coordinates 0.354 and 1.061. Zero raw output: CE = ln 2, L1 = |r| averaged over covering.
    head = two_anchor_head(cover=cover)
    kp, vis = px([[[0.05, 0.0]]]), torch.ones(1, 1)
    nearest, r, covered = head.targets(kp, vis)
    assert nearest.tolist() == [0]
    torch.testing.assert_close(r[0, :, 0], torch.tensor([[0.5, 0.0], [-1.5, 0.0]]))
    assert covered.tolist() == [[True, cover >= 1.061]]
    terms = head.loss(torch.zeros(1, 2, 3), kp, vis)
    assert terms["classification"].item() == pytest.approx(math.log(2))
    assert terms["residual"].item() == pytest.approx(residual)
    focal = two_anchor_head(cls_loss="focal", gamma=2.0).loss(torch.zeros(1, 2, 3), kp, vis)["classification"]
    assert focal.item() == pytest.approx(0.25 * math.log(2))  # (1 − ½)² ln 2


def test_classification_is_repeated_on_each_keypoint_and_invisible_ones_do_not_choose() -> None:
    head = built(k=2, num_anchors=2)
    head.anchors.copy_(torch.tensor([[[0.0, 0.0], [0.5, 0.5]], [[0.9, 0.9], [-0.5, -0.5]]]))
    kp = px([[[0.0, 0.0], [-0.5, -0.5]]])  # keypoint 0 says anchor 0, keypoint 1 says anchor 1
    assert head.targets(kp, torch.tensor([[1.0, 0.0]]))[0].tolist() == [0]
    assert head.targets(kp, torch.tensor([[0.0, 1.0]]))[0].tolist() == [1]
    terms = head.loss(torch.randn(1, 2, 5), kp, torch.ones(1, 2))
    assert terms["classification"].shape == (1, 2)
    assert terms["classification"][0, 0] == terms["classification"][0, 1]


def test_decoders_confidence_and_spread_by_hand() -> None:
    raw = torch.zeros(1, 2, 3)
    raw[0, 0, 0] = math.log(3.0)  # p = (¾, ¼); zero residuals: the estimates are the anchors
    coords, conf = two_anchor_head().eval().decode(raw)
    assert coords[0, 0].tolist() == pytest.approx([31.5, 31.5])  # anchor 0 = the centre
    assert conf.item() == pytest.approx(0.75)
    coords, _ = two_anchor_head(decoder="expectation").eval().decode(raw)
    assert coords[0, 0].tolist() == pytest.approx([(1.05 * SIZE - 1) / 2, 31.5])  # u = ¼ · 0.2
    # mixture variance: p₀ p₁ (Δx)² with Δx = 0.2 normalised = 6.4 px
    assert two_anchor_head().spread(raw).item() == pytest.approx(0.75 * 0.25 * 6.4**2, rel=1e-5)


# ---- A = 1 is FCHead ----------------------------------------------------------------------------------
def test_single_anchor_is_fc_regression() -> None:
    g = torch.Generator().manual_seed(4)
    keypoints = torch.rand(6, 2, 2, generator=g) * 63  # (B, K, 2) input pixels
    visibility = torch.ones(6, 2)
    visibility[0, 1] = 0
    fc = FCHead(hidden=16)
    fc.build(SPEC)
    fc.train().loss(torch.zeros(6, 2, 2), keypoints, visibility)  # its first training batch sets its statistics
    head = built(num_anchors=1, hidden=16)
    head.fit(keypoints, visibility)
    torch.testing.assert_close(head.anchors[0], fc.target_mean)  # the anchor is the mean pose
    torch.testing.assert_close(head.residual_std, fc.target_std)  # and the std FC standardises with
    raw_fc = torch.randn(6, 2, 2, generator=g)  # (B, K, 2) standardised coordinates
    raw = torch.cat((torch.randn(6, 1, 1, generator=g), raw_fc.view(6, 1, 4)), dim=-1)  # (B, 1, 1 + 2K)
    terms = head.loss(raw, keypoints, visibility)
    assert torch.equal(terms["classification"], torch.zeros(6, 2))  # one class: exactly 0
    torch.testing.assert_close(terms["residual"], coord_loss_per_joint(raw_fc, fc.standardise(keypoints), "l1"))
    coords, conf = head.eval().decode(raw)
    torch.testing.assert_close(coords, fc.eval().decode(raw_fc)[0])
    assert torch.equal(conf, torch.ones(6, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        built(num_anchors=1).train().loss(torch.zeros(1, 1, 5), keypoints[:1], visibility[:1])  # no warning


# ---- arguments and configs ----------------------------------------------------------------------------
def test_bad_arguments_fail_early() -> None:
    for kwargs in ({"num_anchors": 0}, {"cls_loss": "bce"}, {"residual_loss": "huber"}, {"decoder": "mode"},
                   {"cover": -1.0}):
        with pytest.raises(ValueError):
            AnchorPoseHead(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size"):
        built(hidden=8).train()(torch.rand(1, 8, 2, 2))


CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "heads"

