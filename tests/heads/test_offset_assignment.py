"""OffsetHead's ``assignment: free_anchor``: wired to ``kpreg.heads.assignment`` in cells (its offsets are stored in
units of ``radius``), its logits start at RetinaNet's prior, and the same hand numbers as the pure functions'."""

from __future__ import annotations

import math

import pytest
import torch

from kpreg.heads import HeadSpec, OffsetHead
from kpreg.heads.assignment import free_anchor_terms
from kpreg.ops import disk_and_offsets

# A 12×12 input at stride 4 is a 3×3 grid; input pixel 5.5 is the centre of the middle cell (cell 1: (1 + ½)·4 − ½).
SPEC = HeadSpec(8, 32, 1, (12, 12), (0.1,))
KEYPOINT = torch.tensor([[[5.5, 5.5]]])  # (B, K, 2) input pixels
CENTRE = torch.tensor([[[1.0, 1.0]]])  # the same point in cells


def free_anchor_head(**kwargs: object) -> OffsetHead:
    head = OffsetHead(output_stride=4, neck_channels=8, assignment="free_anchor", **kwargs)
    head.build(SPEC)
    return head


def raw_output(logits: torch.Tensor, offsets_cells: torch.Tensor, radius: float) -> torch.Tensor:
    """(B, K, 3, h, w) raw output from logits and offsets in cells (the head stores offsets in radius units)."""
    return torch.cat((logits[:, :, None], offsets_cells / radius), dim=2)


def test_terms_are_the_free_anchor_terms_in_cells() -> None:
    head = free_anchor_head(radius=2.0, tau=0.7, kernel="gaussian", alpha=0.4, gamma=1.5)
    g = torch.Generator().manual_seed(0)
    raw = torch.randn(2, 1, 3, 3, 3, generator=g)
    keypoints = 1 + 9 * torch.rand(2, 1, 2, generator=g)  # (B, K, 2) input pixels
    terms = head.loss(raw, keypoints, torch.ones(2, 1))
    cells = (keypoints + 0.5) / 4 - 0.5  # (B, K, 2) cells
    expected = free_anchor_terms(raw[:, :, 0], raw[:, :, 1:] * 2.0, cells, 2.0, 0.7, "gaussian", 0.4, 1.5)
    assert set(terms) == {"positive", "negative"}
    for name in terms:
        torch.testing.assert_close(terms[name], expected[name])


def test_hand_numbers_through_the_head_with_offsets_in_radius_units() -> None:
    # radius 1.2: the bag is the centre and its 4 neighbours (diagonals are √2 > 1.2 away). Logits 0 and exact offsets
    # (stored ÷ 1.2): P_cls = ½, P_loc = 1 everywhere, so the positive term is α·ln 2 = ½ ln 2 and the negative term
    # exactly 0; forgetting the ×radius would put P_loc < 1 and make the negative term positive.
    head = free_anchor_head(radius=1.2)
    _, exact = disk_and_offsets(CENTRE, (3, 3), 1.2)  # (B, K, 2, h, w) keypoint − cell centre, cells
    raw = raw_output(torch.zeros(1, 1, 3, 3), exact, 1.2).requires_grad_(True)
    terms = head.loss(raw, KEYPOINT, torch.ones(1, 1))
    assert terms["positive"].item() == pytest.approx(0.5 * math.log(2))
    assert terms["negative"].item() == 0.0
    sum(terms.values()).sum().backward()
    # −0.05 on each of the 5 candidates' logits (tests/heads/test_assignment.py derives it), 0 on the diagonals.
    bag = torch.tensor([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=torch.float32)
    torch.testing.assert_close(raw.grad[0, 0, 0], -0.05 * bag)


def test_logits_start_at_the_retinanet_prior() -> None:
    head = free_anchor_head()
    assert torch.allclose(head.final.bias.view(1, 3)[:, 0], torch.tensor(-math.log(99.0)))
    assert head.final.bias.view(1, 3)[:, 1:].abs().max() < 1.0  # offsets keep their default initialisation
    with torch.no_grad():
        head.final.weight.zero_()  # features then do not matter: the map is the bias
        _, confidence = head.eval().decode(head(torch.randn(1, 8, 1, 1)))
    assert confidence.item() == pytest.approx(0.01)
    disk = OffsetHead(output_stride=4, neck_channels=8)
    disk.build(SPEC)
    assert disk.final.bias.view(1, 3)[:, 0].abs().max() < 1.0  # the disk assignment keeps torch's initialisation


def test_decoding_does_not_depend_on_the_assignment() -> None:
    raw = torch.randn(2, 1, 3, 3, 3)
    disk = OffsetHead(output_stride=4, neck_channels=8)
    disk.build(SPEC)
    torch.testing.assert_close(free_anchor_head().decode(raw), disk.decode(raw))


def test_the_disk_arguments_are_not_silently_mixed_in() -> None:
    # cls_loss and offset_weight belong to the disk: with free_anchor they change nothing.
    raw = torch.randn(1, 1, 3, 3, 3)
    base = free_anchor_head().loss(raw, KEYPOINT, torch.ones(1, 1))
    other = free_anchor_head(cls_loss="focal", offset_weight=5.0).loss(raw, KEYPOINT, torch.ones(1, 1))
    for name in base:
        torch.testing.assert_close(base[name], other[name])


def test_bad_arguments_fail_early() -> None:
    with pytest.raises(ValueError, match="assignment"):
        OffsetHead(assignment="hungarian")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="kernel"):
        OffsetHead(assignment="free_anchor", kernel="cauchy")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tau"):
        OffsetHead(assignment="free_anchor", tau=0.0)
    with pytest.raises(ValueError, match="alpha"):
        OffsetHead(assignment="free_anchor", alpha=1.5)
