"""FCHead's own behaviour: standardised targets, their running statistics, the hidden layer that cannot die."""

from __future__ import annotations

import pytest
import torch
from testkit.heads import SIZE, K, make_head, random_batch

import kpreg.heads
from kpreg.backbone import Backbone
from kpreg.heads import HeadSpec


@pytest.fixture(scope="module")
def backbone() -> Backbone:
    return Backbone("test_resnet").eval()


def test_fc_round_trip_with_fitted_statistics(backbone: Backbone) -> None:
    head = make_head("FCHead", backbone)
    _, keypoints, visibility = random_batch(8)
    head.loss(torch.zeros(8, K, 2), keypoints, visibility)  # first training batch sets the statistics
    assert not torch.allclose(head.target_mean, torch.zeros(K, 2))
    coords, _ = head.eval().decode(head.ideal_output(keypoints))
    assert (coords - keypoints).abs().max() <= 1e-3


def test_fc_statistics_update_only_in_training(backbone: Backbone) -> None:
    head = make_head("FCHead", backbone).eval()
    _, keypoints, visibility = random_batch(4)
    head.loss(torch.zeros(4, K, 2), keypoints, visibility)
    assert torch.equal(head.target_mean, torch.zeros(K, 2))  # eval: frozen
    head.train().loss(torch.zeros(4, K, 2), keypoints, visibility)
    assert not torch.equal(head.target_mean, torch.zeros(K, 2))


def test_fc_l1_terms_by_hand() -> None:
    head = kpreg.heads.FCHead(hidden=0, init_std=0.5).eval()  # eval: statistics stay mean 0, std 0.5
    head.build(HeadSpec(4, 32, 1, (4, 4)))
    # keypoint x = 2.5 px in a 4-px input → u = (2·2.5 + 1) / 4 − 1 = 0.5 → standardised 1.0; y = 0.5 → u = −0.5 → −1
    terms = head.loss(torch.zeros(1, 1, 2), torch.tensor([[[2.5, 0.5]]]), torch.ones(1, 1))
    assert terms["coord"].tolist() == [[2.0]]  # |0 − 1| + |0 − (−1)|


def test_fc_hidden_units_cannot_die_for_the_whole_batch() -> None:
    """The hidden layer is Linear → BatchNorm → ReLU. Pooled backbone features are positive and similar for
    every image, so a plain Linear → ReLU unit whose weights turn negative is off for all images and never
    gets a gradient again (the synthetic study lost 96–99 % of its units that way). With the batch
    centring, the same weights still leave every unit active on part of the batch and passing gradient."""
    head = kpreg.heads.FCHead(hidden=8)
    head.build(HeadSpec(4, 32, K, (SIZE, SIZE)))
    linear = head.mlp[2]
    with torch.no_grad():
        linear.weight.fill_(-1.0)  # the "dead" state: every pre-activation negative for positive features
    features = 0.2 + 0.05 * torch.rand(16, 4, 2, 2)  # (B, C, h, w): positive, little spread between images
    assert (linear(features.mean((2, 3))) < 0).all()  # a plain ReLU would output 0 everywhere
    hidden = head.train().mlp[:5](features)  # (B, hidden) after the ReLU
    active = (hidden > 0).float().mean(0)  # (hidden,) share of the batch on which each unit fires
    assert ((active > 0) & (active < 1)).all()
    head(features).sum().backward()
    assert (linear.weight.grad.abs().sum(1) > 0).all()  # every unit still learns


def test_fc_hidden_layer_needs_two_samples_in_training() -> None:
    head = kpreg.heads.FCHead(hidden=8)
    head.build(HeadSpec(4, 32, K, (SIZE, SIZE)))
    with pytest.raises(ValueError, match="batch_size"):
        head.train()(torch.rand(1, 4, 2, 2))
    assert head.eval()(torch.rand(1, 4, 2, 2)).shape == (1, K, 2)  # inference on one image is fine
    kpreg.heads.FCHead(hidden=0).train()  # the single linear layer has no such limit
