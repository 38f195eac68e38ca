"""One suite for every head in ``kpreg.heads.__all__``: adding a head there is enough to test it."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml

import kpreg.heads
from kpreg.backbone import Backbone
from kpreg.coords import flip_points
from kpreg.heads import Head, HeadSpec
from kpreg.heads.neck import FlattenHead, SpatialHead

HEADS = list(kpreg.heads.__all__)
SIZE = 64  # input H = W
K = 4
FLIP_PAIRS = [(0, 1)]  # joints 0/1 are a left/right pair, 2/3 are on their own


@pytest.fixture(scope="module")
def backbone() -> Backbone:
    return Backbone("test_resnet").eval()


def make_head(name: str, backbone: Backbone, **kwargs: object) -> Head:
    cls = getattr(kpreg.heads, name)
    if issubclass(cls, SpatialHead):
        kwargs.setdefault("neck_channels", 16)  # a thin neck keeps the suite fast; defaults are tested below
    head = cls(**kwargs)
    head.build(HeadSpec(backbone.channels, backbone.stride, K, (SIZE, SIZE)))
    return head


def random_batch(b: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    images = torch.randn(b, 3, SIZE, SIZE)
    keypoints = torch.rand(b, K, 2) * (SIZE - 1)  # (B, K, 2) x,y input pixels
    visibility = torch.ones(b, K)
    visibility[0, 1] = 0
    return images, keypoints, visibility


@pytest.mark.parametrize("name", HEADS)
def test_shapes_range_and_backward(name: str, backbone: Backbone) -> None:
    head = make_head(name, backbone)
    images, keypoints, visibility = random_batch()
    raw = head(backbone(images))
    losses = head.loss(raw, keypoints, visibility)
    assert losses["loss"].ndim == 0 and torch.isfinite(losses["loss"])
    assert all(torch.isfinite(v) for v in losses.values())
    losses["loss"].backward()
    grads = [p.grad for p in head.parameters()]
    assert grads and all(g is not None for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)  # the loss reaches the head's parameters
    head.eval()
    with torch.no_grad():
        coords, scores = head.decode(head(backbone(images)))
    assert coords.shape == (2, K, 2) and scores.shape == (2, K)
    assert coords.min() >= -0.5 and coords.max() <= SIZE - 0.5  # inside the input
    maps = head.heatmaps(raw.detach())
    assert maps is None or maps.shape[:2] == (2, K)


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
def test_all_invisible_batch_gives_a_finite_zero_loss(name: str, backbone: Backbone) -> None:
    head = make_head(name, backbone)
    images, keypoints, _ = random_batch()
    raw = head(backbone(images))
    losses = head.loss(raw, keypoints, torch.zeros(2, K))
    assert losses["loss"].item() == 0.0
    losses["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in head.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", HEADS)
def test_bf16_autocast_forward_and_loss_are_finite(name: str, backbone: Backbone) -> None:
    head = make_head(name, backbone)
    images, keypoints, visibility = random_batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        raw = head(backbone(images))
        losses = head.loss(raw, keypoints, visibility)
        coords, scores = head.decode(raw)
    assert losses["loss"].dtype == torch.float32 and torch.isfinite(losses["loss"])
    assert coords.dtype == torch.float32 and torch.isfinite(coords).all() and torch.isfinite(scores).all()


# ---- round trip decode(ideal_output(k)) --------------------------------------------------------------
EXACT_TOL = 1e-3  # input pixels


def _round_trip(head: Head, stride_input: int = 256) -> torch.Tensor:
    """(N, K, 2) |error| per axis, input pixels, keypoints in the central half of a 256² input."""
    head.build(HeadSpec(8, 32, K, (stride_input, stride_input)))
    g = torch.Generator().manual_seed(0)
    keypoints = stride_input / 4 + torch.rand(32, K, 2, generator=g) * stride_input / 2
    coords, _ = head.eval().decode(head.ideal_output(keypoints))
    return (coords - keypoints).abs()


@pytest.mark.parametrize("stride", [4, 8, 16, 32])
@pytest.mark.parametrize("name", HEADS)
def test_round_trip_on_exact_targets(name: str, stride: int) -> None:
    cls = getattr(kpreg.heads, name)
    head = cls(output_stride=stride) if issubclass(cls, SpatialHead) else cls()
    err = _round_trip(head)
    if name == "HeatmapHead":
        err = _round_trip(cls(output_stride=stride, decoder="argmax"))
        assert err.max() <= stride / 2 + 1e-4  # an integer cell is at most half a cell off per axis
    elif name == "SimCCHead":
        # argmax (the default) is at most half a bin off per axis, 0.5 / split_ratio input pixels; the
        # expectation of the ideal (hat) output is exact.
        assert err.max() <= 0.5 / head.split_ratio + 1e-4
        assert _round_trip(cls(output_stride=stride, decoder="expectation")).max() <= EXACT_TOL
    else:
        assert err.max() <= EXACT_TOL


def test_fc_round_trip_with_fitted_statistics(backbone: Backbone) -> None:
    head = make_head("FCHead", backbone)
    _, keypoints, visibility = random_batch(8)
    head.loss(torch.zeros(8, K, 2), keypoints, visibility)  # first training batch sets the statistics
    assert not torch.allclose(head.target_mean, torch.zeros(K, 2))
    coords, _ = head.eval().decode(head.ideal_output(keypoints))
    assert (coords - keypoints).abs().max() <= EXACT_TOL


def test_heatmap_dark_beats_quarter_beats_argmax() -> None:
    errs = {d: _round_trip(kpreg.heads.HeatmapHead(output_stride=4, decoder=d)).mean() for d in
            ("argmax", "quarter", "dark")}
    assert errs["dark"] < 1e-3 < errs["quarter"] < errs["argmax"]


@pytest.mark.parametrize("name", [n for n in HEADS if issubclass(getattr(kpreg.heads, n), SpatialHead)])
@pytest.mark.parametrize("stride", [4, 8, 16, 32])
def test_output_stride_sets_the_grid(name: str, stride: int, backbone: Backbone) -> None:
    head = make_head(name, backbone, output_stride=stride)
    raw = head(backbone(torch.randn(1, 3, SIZE, SIZE)))
    if isinstance(head, FlattenHead):  # the maps are flattened inside the head: check the grid it read
        assert head.grid_size == (SIZE // stride, SIZE // stride) and raw.shape[:2] == (1, K)
    else:
        assert raw.shape[-2:] == (SIZE // stride, SIZE // stride)


# ---- configs -----------------------------------------------------------------------------------------
CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "synthetic"
CONFIG_NAMES = ["heatmap", "fc", "softargmax", "dsnt", "offset", "simcc", "multibin"]
PER_RUN_KEYS = {  # the keys that may differ between the synthetic configs
    ("model", "head"),
    ("trainer", "default_root_dir"),
    ("trainer", "logger", "init_args", "name"),
    ("trainer", "logger", "init_args", "save_dir"),
    ("trainer", "logger", "init_args", "tags"),
}


def _flatten(tree: object, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], object]:
    if isinstance(tree, dict) and prefix not in PER_RUN_KEYS:
        out: dict[tuple[str, ...], object] = {}
        for k, v in tree.items():
            out.update(_flatten(v, (*prefix, k)))
        return out
    return {prefix: tree}


def test_synthetic_configs_differ_only_in_the_head_and_run_names() -> None:
    flat = {n: _flatten(yaml.safe_load((CONFIGS / f"{n}.yaml").read_text())) for n in CONFIG_NAMES}
    reference = flat["heatmap"]
    heads = set()
    for name, cfg in flat.items():
        assert cfg.keys() == reference.keys(), name
        differing = {k for k in cfg if cfg[k] != reference[k]}
        assert differing <= PER_RUN_KEYS, (name, differing - PER_RUN_KEYS)
        heads.add(cfg[("model", "head")]["class_path"])
    assert heads == {f"kpreg.heads.{n}" for n in HEADS}  # every head has a config


@pytest.mark.parametrize("name", HEADS)
def test_default_construction_builds_and_runs(name: str, backbone: Backbone) -> None:
    head = getattr(kpreg.heads, name)()  # no arguments: sensible defaults
    head.build(HeadSpec(backbone.channels, backbone.stride, K, (32, 32)))
    with torch.no_grad():
        coords, _ = head.eval().decode(head(backbone(torch.randn(1, 3, 32, 32))))
    assert coords.shape == (1, K, 2)


def test_config_heads_instantiate() -> None:
    for name in CONFIG_NAMES:
        head_cfg = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())["model"]["head"]
        cls = getattr(kpreg.heads, head_cfg["class_path"].rsplit(".", 1)[1])
        assert isinstance(cls(**head_cfg.get("init_args", {})), Head)


def test_bad_arguments_fail_early() -> None:
    with pytest.raises(ValueError):
        kpreg.heads.HeatmapHead(decoder="median")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        kpreg.heads.DSNTHead(regulariser="kl")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        kpreg.heads.OffsetHead(radius=0.5)
    with pytest.raises(ValueError):
        kpreg.heads.SoftArgmaxHead(temperature=0.0)
    assert math.isfinite(kpreg.heads.OffsetHead().radius)


# ---- head-specific behaviour -------------------------------------------------------------------------
def test_ideal_outputs_have_near_zero_coordinate_losses() -> None:
    g = torch.Generator().manual_seed(1)
    keypoints = 16 + torch.rand(2, K, 2, generator=g) * 32  # (B, K, 2) input pixels, central half
    vis = torch.ones(2, K)
    for head, key in [(kpreg.heads.OffsetHead(neck_channels=8), "offset"),
                      (kpreg.heads.SoftArgmaxHead(neck_channels=8), "coord"),
                      (kpreg.heads.DSNTHead(neck_channels=8, regulariser="none"), "euclidean")]:
        head.build(HeadSpec(8, 32, K, (SIZE, SIZE)))
        assert head.loss(head.ideal_output(keypoints), keypoints, vis)[key].item() < 1e-5, key


def test_fc_statistics_update_only_in_training(backbone: Backbone) -> None:
    head = make_head("FCHead", backbone).eval()
    _, keypoints, visibility = random_batch(4)
    head.loss(torch.zeros(4, K, 2), keypoints, visibility)
    assert torch.equal(head.target_mean, torch.zeros(K, 2))  # eval: frozen
    head.train().loss(torch.zeros(4, K, 2), keypoints, visibility)
    assert not torch.equal(head.target_mean, torch.zeros(K, 2))
