"""Fair instance scores for every head in ``kpreg.heads.__all__``.

A network that reaches its loss optimum outputs what the loss pulls towards, not ``ideal_output``: SimCC's KL to a
Gaussian of σ = 6 bins gives a peak of 0.066, DSNT's JS regulariser a peak near 0.15, the heatmap's MSE a peak
near 1. Here that output is derived for every head *by its own loss*: a few hundred optimiser steps on the raw
output (started from the mean of the ideal outputs of the targets) for

* accurate keypoints: one target, the truth;
* keypoints the network cannot place: two targets, 20 px right of the truth and 20 px above / below it (the mean
  of the loss over both: what a network outputs for an appearance whose labels it has seen at both places), so
  whatever the decoder (arg-max, per-axis arg-max, expectation) the prediction is ≥ 20 px from the truth.

A calibration is fitted on such outputs (the module's recipe: ``choose_method``, cross-fitted log-loss) and applied
to new instances: the top-down instance score (``box score × mean confidence above 0.2``) of accurate keypoints is
then the box score times a confidence near 1 whatever the head's raw scale, and it falls for wrong ones. A head
that declares ``has_confidence = False`` (a constant score) gets the same calibrated value for both, which is
checked as such.
"""

from __future__ import annotations

import pytest
import torch
from testkit.heads import HEADS, SIGMAS, K, head_class

from kpreg.formats.oks import instance_score
from kpreg.heads import Head, HeadSpec
from kpreg.metrics.calibration import ConfidenceMap, choose_method, gather_calibration_set
from kpreg.metrics.correct import correct_keypoints

SIZE = 64
BOX_SCORE = 0.9
THRESHOLD = 0.1  # PCK@0.1 of the box: 6.4 px on a 64 px box
SHIFTS = (torch.tensor([20.0, 20.0]), torch.tensor([20.0, -20.0]))  # the two places a wrong keypoint is torn between
STEPS = 200


def loss_optimal(head: Head, targets: list[torch.Tensor]) -> torch.Tensor:
    """The raw output that minimises the head's loss averaged over ``targets`` (each (B, K, 2) x,y input px).

    Adam on the raw output itself, from the mean of the targets' ideal outputs (logs of zero floored at −20 so
    that a few hundred steps reach the optimum); β₂ = 0.9 so that the step size follows the gradient's scale as it
    changes by orders of magnitude (a σ leaving its floor)."""
    visibility = torch.ones(targets[0].shape[:2])
    start = torch.stack([head.ideal_output(t).detach().float().clamp(-20.0, 20.0) for t in targets]).mean(0)
    raw = start.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([raw], lr=0.1, betas=(0.9, 0.9))
    for _ in range(STEPS):
        optimizer.zero_grad()
        loss = sum(sum(head.loss(raw, t, visibility).values()).sum() for t in targets) / len(targets)
        loss.backward()
        optimizer.step()
    return raw.detach()


def predictions(head: Head, truth: torch.Tensor) -> dict[str, tuple[torch.Tensor, ...]]:
    """{"accurate" | "wrong": (coords (B, K, 2), raw confidence (B, K), spread (B, K) or None)} at the loss
    optimum for keypoints ``truth`` (B, K, 2)."""
    out = {}
    for label, targets in (("accurate", [truth]), ("wrong", [truth + s for s in SHIFTS])):
        raw = loss_optimal(head, targets)
        with torch.no_grad():
            coords, confidence = head.decode(raw)
            out[label] = (coords, confidence, head.spread(raw))
    return out


def build(name: str, base: torch.Tensor) -> Head:
    head = head_class(name)()
    head.build(HeadSpec(16, 8, K, (SIZE, SIZE), SIGMAS))
    if head.needs_fit:  # the poses it is trained on: the truths and the places wrong keypoints are torn between
        poses = torch.cat([base, *(base + s for s in SHIFTS)])
        head.fit(poses, torch.ones(poses.shape[:2]))
    return head.eval()


def jittered(base: torch.Tensor, copies: int, seed: int) -> torch.Tensor:
    """(copies · P, K, 2): each base pose moved by up to ±0.5 px per coordinate."""
    g = torch.Generator().manual_seed(seed)
    poses = base.repeat(copies, 1, 1)
    return poses + torch.rand(poses.shape, generator=g) - 0.5


@pytest.mark.parametrize("name", HEADS)
def test_calibrated_instance_score_is_fair_at_the_loss_optimum(name: str) -> None:
    g = torch.Generator().manual_seed(0)
    base = 22.0 + 20.0 * torch.rand(2, K, 2, generator=g)  # (2, K, 2) two poses; truth ± 20 px stays inside
    head = build(name, base)
    norm = torch.full((1,), float(SIZE))  # the box size: "correct" is within 0.1 of it

    # A validation set: 16 accurate and 16 wrong instances; its labelled keypoints fit the calibration.
    truth = jittered(base, 8, seed=1)  # (16, K, 2)
    val = predictions(head, truth)
    confidence = torch.cat([val[k][1] for k in val]).double()  # (32, K)
    spreads = [val[k][2] for k in val]
    spread = None if spreads[0] is None else torch.cat(spreads).double()
    correct = torch.cat([correct_keypoints(val[k][0], truth, norm.expand(len(truth)), THRESHOLD) for k in val])
    assert bool(correct[: len(truth)].all()) and not bool(correct[len(truth):].any())  # as constructed
    cset = gather_calibration_set(confidence, correct, torch.ones_like(correct), spread)
    choice = choose_method(cset.features, cset.correct, keypoint_index=cset.keypoint_index, groups=cset.groups)
    calibrate = ConfidenceMap(choice.calibrator, K)

    # New instances (other jitters): one accurate and one wrong per base pose.
    test = predictions(head, jittered(base, 1, seed=2))
    box = torch.full((2,), BOX_SCORE)
    p = {k: calibrate(conf.double(), None if sp is None else sp.double()) for k, (_, conf, sp) in test.items()}
    score = {k: torch.as_tensor(instance_score(v, box)) for k, v in p.items()}
    if head.has_confidence:
        assert bool((p["accurate"] >= 0.9).all()), (choice.name, test["accurate"][1], p["accurate"])
        assert bool((score["accurate"] >= 0.9 * BOX_SCORE).all())  # box score × a confidence near 1
        assert bool((score["wrong"] <= 0.5 * score["accurate"]).all()), (choice.name, p["wrong"])  # … that falls
    else:
        # A constant score: the calibrated value is the share of correct keypoints, for right and wrong alike.
        torch.testing.assert_close(p["accurate"], p["wrong"])
        assert float(p["accurate"].std()) == 0.0


def test_simcc_sigma6_case_before_and_after() -> None:
    """The issue's case: SimCC (split ratio 2, σ = 6 bins, KL) at its loss optimum peaks at 1 / (√(2π) · 6) =
    0.0665 bins⁻¹, below the instance score's 0.2, so the raw instance score is 0 whatever the box score."""
    head = head_class("SimCCHead")(split_ratio=2.0, sigma=6.0, loss="kl")
    head.build(HeadSpec(16, 8, K, (SIZE, SIZE), SIGMAS))
    truth = jittered(22.0 + 20.0 * torch.rand(2, K, 2, generator=torch.Generator().manual_seed(0)), 1, seed=3)
    raw = loss_optimal(head.eval(), [truth])
    with torch.no_grad():
        _, confidence = head.decode(raw)
    torch.testing.assert_close(confidence, torch.full_like(confidence, 0.0665), atol=2e-3, rtol=0)
    assert instance_score(confidence, torch.full((2,), BOX_SCORE)).tolist() == [0.0, 0.0]
