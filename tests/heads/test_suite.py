"""One suite for every head in ``kpreg.heads.__all__``: adding a head there (and its part in configs/heads/) is
enough to test it. Nothing here names a head: what differs between heads (whether they have an output stride,
the variants worth round-tripping, their round-trip tolerance) is declared by the head class."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from testkit.heads import (
    FLIP_PAIRS,
    HEADS,
    SIGMAS,
    SIZE,
    K,
    fit_if_needed,
    head_class,
    make_head,
    random_batch,
    round_trip_error,
    total_loss,
)

from kpreg.backbone import Backbone
from kpreg.coords import flip_points
from kpreg.heads import Head, HeadSpec

HEAD_PARTS = Path(__file__).resolve().parents[2] / "configs" / "heads"


@pytest.fixture(scope="module")
def backbone() -> Backbone:
    return Backbone("test_resnet").eval()


@pytest.mark.parametrize("name", HEADS)
def test_shapes_range_and_backward(name: str, backbone: Backbone) -> None:
    head = make_head(name, backbone)
    images, keypoints, visibility = random_batch()
    fit_if_needed(head, keypoints, visibility)
    raw = head(backbone(images))
    loss, terms = total_loss(head, raw, keypoints, visibility)
    assert terms and all(t.shape == (2, K) and t.dtype == torch.float32 for t in terms.values())
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert all(torch.isfinite(t[visibility > 0]).all() for t in terms.values())
    loss.backward()
    grads = [p.grad for p in head.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)  # the loss reaches the head's parameters
    head.eval()
    with torch.no_grad():
        coords, scores = head.decode(head(backbone(images)))
    assert coords.shape == (2, K, 2) and scores.shape == (2, K)
    assert torch.isfinite(coords).all() and torch.isfinite(scores).all()
    maps = head.heatmaps(raw.detach())
    assert maps is None or maps.shape[:2] == (2, K)
    spread = head.spread(raw.detach())
    assert spread is None or (spread.shape == (2, K) and (spread >= 0).all())


@pytest.mark.parametrize("name", HEADS)
def test_flip_merge_is_mirror_symmetric_on_a_symmetric_image(name: str, backbone: Backbone) -> None:
    head = make_head(name, backbone).eval()
    images = torch.randn(1, 3, SIZE, SIZE)
    images = images + images.flip(-1)  # its own mirror image
    with torch.no_grad():
        raw, raw_flipped = head(backbone(images)), head(backbone(images.flip(-1)))
        coords, scores = head.flip_merge(raw, raw_flipped, FLIP_PAIRS)
    mirrored = flip_points(coords, SIZE, FLIP_PAIRS)  # (1, K, 2)
    torch.testing.assert_close(coords, mirrored, atol=1e-4, rtol=0)
    torch.testing.assert_close(coords[0, 2:, 0], torch.full((2,), (SIZE - 1) / 2), atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", HEADS)
def test_all_invisible_batch_gives_an_exact_zero_loss(name: str, backbone: Backbone) -> None:
    head = make_head(name, backbone)
    images, keypoints, _ = random_batch()
    raw = head(backbone(images))
    loss, _ = total_loss(head, raw, keypoints, torch.zeros(2, K))
    assert loss.item() == 0.0
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in head.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", HEADS)
def test_bf16_autocast_forward_and_loss_are_finite(name: str, backbone: Backbone) -> None:
    head = make_head(name, backbone)
    images, keypoints, visibility = random_batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        raw = head(backbone(images))
        loss, _ = total_loss(head, raw, keypoints, visibility)
        coords, scores = head.decode(raw)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert coords.dtype == torch.float32 and torch.isfinite(coords).all() and torch.isfinite(scores).all()


# ---- round trip decode(ideal_output(k)), for every variant the head declares ---------------------------
VARIANTS = [(name, label) for name in HEADS for label in head_class(name).variants]


def test_every_head_declares_its_name_and_variants() -> None:
    names = [head_class(n).name for n in HEADS]
    assert all(names) and len(set(names)) == len(names)
    for name in HEADS:
        variants = head_class(name).variants
        assert variants and next(iter(variants.values())) == {}  # the first variant is the defaults


@pytest.mark.parametrize(("name", "label"), VARIANTS)
def test_every_variant_trains(name: str, label: str, backbone: Backbone) -> None:
    """Each declared option (a loss, an assignment, a decoder …) builds, gives finite per-keypoint terms whose reduced
    loss reaches the head's parameters, and decodes: an option cannot be declared without being wired."""
    head = make_head(name, backbone, **head_class(name).variants[label])
    images, keypoints, visibility = random_batch()
    fit_if_needed(head, keypoints, visibility)
    loss, terms = total_loss(head, head(backbone(images)), keypoints, visibility)
    assert all(t.shape == (2, K) and torch.isfinite(t[visibility > 0]).all() for t in terms.values())
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())
    with torch.no_grad():
        coords, scores = head.eval().decode(head(backbone(images)))
    assert torch.isfinite(coords).all() and torch.isfinite(scores).all()


@pytest.mark.parametrize("stride", [4, 8, 16, 32])
@pytest.mark.parametrize(("name", "label"), VARIANTS)
def test_round_trip_within_the_declared_tolerance(name: str, label: str, stride: int) -> None:
    cls = head_class(name)
    kwargs = dict(cls.variants[label])
    if cls.has_output_stride:
        kwargs["output_stride"] = stride
    elif stride != 4:
        pytest.skip(f"{name} has no output stride")
    head = cls(**kwargs)
    err = round_trip_error(head)
    assert err.max() <= head.round_trip_tolerance(), (label, float(err.max()))


def skip_without_soft_coords(cls: type) -> None:
    """The differentiable keypoint is optional for a head: one that declares none is refused by the unsupervised
    losses with one message (tests/training/test_unsupervised.py) and has nothing to test here."""
    if not cls.soft_coords_source:
        pytest.skip(f"{cls.__name__} declares no differentiable keypoint (soft_coords_source)")


@pytest.mark.parametrize("stride", [4, 8, 16, 32])
@pytest.mark.parametrize(("name", "label"), VARIANTS)
def test_soft_coords_round_trip_within_the_declared_tolerance(name: str, label: str, stride: int) -> None:
    """The differentiable keypoint of the unsupervised losses recovers the keypoint from the ideal output."""
    cls = head_class(name)
    skip_without_soft_coords(cls)
    kwargs = dict(cls.variants[label])
    if cls.has_output_stride:
        kwargs["output_stride"] = stride
    elif stride != 4:
        pytest.skip(f"{name} has no output stride")
    head = cls(**kwargs)
    err = round_trip_error(head, soft=True)
    assert err.max() <= head.soft_round_trip_tolerance(), (label, float(err.max()))


@pytest.mark.parametrize(("name", "label"), VARIANTS)
def test_soft_coords_carry_gradients_to_the_head(name: str, label: str, backbone: Backbone) -> None:
    """A head's declared differentiable keypoint carries a loss to the head's parameters; where it is decode itself,
    it is decode's coordinates."""
    cls = head_class(name)
    skip_without_soft_coords(cls)
    head = make_head(name, backbone, **cls.variants[label])
    images, keypoints, visibility = random_batch()
    fit_if_needed(head, keypoints, visibility)
    raw = head(backbone(images))
    coords = head.soft_coords(raw)
    assert coords.shape == (2, K, 2) and torch.isfinite(coords).all()
    coords.square().sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())
    if cls.soft_coords_source == "decode":
        torch.testing.assert_close(coords.detach(), head.decode(raw.detach())[0])


@pytest.mark.parametrize("name", [n for n in HEADS if head_class(n).has_output_stride])
@pytest.mark.parametrize("stride", [4, 8, 16, 32])
def test_output_stride_sets_the_grid(name: str, stride: int, backbone: Backbone) -> None:
    head = make_head(name, backbone, output_stride=stride)
    raw = head(backbone(torch.randn(1, 3, SIZE, SIZE)))
    assert head.grid_size == (SIZE // stride, SIZE // stride)
    ideal = head.ideal_output(torch.full((1, K, 2), SIZE / 2))
    assert raw.shape == ideal.shape  # the network's output has the grid the head decodes


@pytest.mark.parametrize("name", HEADS)
def test_default_construction_builds_and_runs(name: str, backbone: Backbone) -> None:
    head = head_class(name)()  # no arguments: sensible defaults
    head.build(HeadSpec(backbone.channels, backbone.stride, K, (32, 32), SIGMAS))
    with torch.no_grad():
        coords, _ = head.eval().decode(head(backbone(torch.randn(1, 3, 32, 32))))
    assert coords.shape == (1, K, 2)


@pytest.mark.parametrize("name", HEADS)
def test_init_args_are_recorded_for_the_checkpoint(name: str) -> None:
    head = head_class(name)()
    assert set(head.init_args) >= {p for p in head.init_args}  # every argument, defaults included
    rebuilt = head_class(name)(**head.init_args)
    assert rebuilt.init_args == head.init_args


# ---- head parts --------------------------------------------------------------------------------------
def test_every_head_has_a_head_part_and_every_part_builds_its_head() -> None:
    parts = {p.stem: yaml.safe_load(p.read_text()) for p in HEAD_PARTS.glob("*.yaml")}
    for name in HEADS:
        assert head_class(name).name in parts, f"configs/heads/{head_class(name).name}.yaml is missing"
    for stem, part in parts.items():
        assert set(part) == {"model"} and set(part["model"]) == {"head"}, f"{stem}: a head part holds model.head only"
        head_cfg = part["model"]["head"]
        module_name, _, class_name = head_cfg["class_path"].rpartition(".")
        assert class_name in HEADS, f"{stem}: {class_name} is not in kpreg.heads.__all__"
        head = head_class(class_name)(**(head_cfg.get("init_args") or {}))
        assert isinstance(head, Head) and head.name == stem
