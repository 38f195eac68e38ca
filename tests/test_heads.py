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


# ---- distribution heads (issue 9) ---------------------------------------------------------------------
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
    losses = _multibin_8px().loss(raw, kp, vis)
    res = (0.5 + 5 / 6) / 2 - 1 / 18
    assert losses["classification"].item() == pytest.approx(2 * math.log(2))
    assert losses["residual"].item() == pytest.approx(2 * res)
    losses["loss"].backward()
    # d CE / d logits = p − onehot = (−½, ½); d residual / d r = sign(r − t) / n_cover = (−½, ½) per axis
    torch.testing.assert_close(raw.grad[0, 0, 0], torch.tensor([-0.5, 0.5, -0.5, 0.5]))
    focal = _multibin_8px(cls_loss="focal", gamma=2.0, alpha=1.0).loss(raw, kp, vis)["classification"]
    assert focal.item() == pytest.approx(2 * 0.25 * math.log(2))  # (1 − ½)² ln 2 per axis


def test_multibin_hierarchical_loss_by_hand() -> None:
    # 2 sub-bins per bin: bin 0 spans [−1.5, 4.5] (sub-centres 0, 3), bin 1 [2.5, 8.5] (sub-centres 4, 7),
    # sub half-width 1.5. x = 3 falls in sub-bin 1 of bin 0 (residual 0) and sub-bin 0 of bin 1 (residual
    # −1 / 1.5). Zero output: per covering bin CE ln 2 + smooth-L1; averaged over the 2 bins, 2 axes.
    raw = torch.zeros(1, 1, 2, 2 * 2 + 2 * 2 * 2)
    losses = _multibin_8px(sub_bins=2).loss(raw, torch.full((1, 1, 2), 3.0), torch.ones(1, 1))
    sub = (2 * math.log(2) + 0.0 + (2 / 3 - 1 / 18)) / 2
    assert losses["sub_bins"].item() == pytest.approx(2 * sub)


@pytest.mark.parametrize("sub_bins", [0, 3])
@pytest.mark.parametrize("decoder", ["argmax", "expectation"])
def test_multibin_round_trip_every_variant(sub_bins: int, decoder: str) -> None:
    head = kpreg.heads.MultiBinHead(output_stride=8, num_bins=5, overlap=0.3, sub_bins=sub_bins, decoder=decoder)
    assert _round_trip(head).max() <= EXACT_TOL
    keypoints = torch.tensor([[[10.0, 200.0]]])
    head.build(HeadSpec(8, 32, 1, (256, 256)))
    assert head.loss(head.ideal_output(keypoints), keypoints, torch.ones(1, 1))["residual"].item() < 1e-6


@pytest.mark.parametrize("loss", ["kl", "ce", "dfl"])
def test_simcc_losses_run_and_dfl_is_minimal_at_the_ideal_output(loss: str) -> None:
    head = kpreg.heads.SimCCHead(loss=loss, split_ratio=2.0, sigma=2.0)  # type: ignore[arg-type]
    head.build(HeadSpec(8, 32, K, (SIZE, SIZE)))
    keypoints = 8 + torch.rand(2, K, 2) * 48
    ideal = head.ideal_output(keypoints)
    raw = (ideal + 0.5 * torch.randn_like(ideal)).requires_grad_(True)
    total = head.loss(raw, keypoints, torch.ones(2, K))["loss"]
    total.backward()
    assert torch.isfinite(raw.grad).all() and raw.grad.abs().sum() > 0
    if loss == "dfl":  # the hat is DFL's target: its log is the optimum
        assert head.loss(ideal, keypoints, torch.ones(2, K))["loss"] < total


def test_simcc_bins_follow_the_pixel_centre_convention() -> None:
    head = kpreg.heads.SimCCHead(split_ratio=2.0, decoder="argmax")
    head.build(HeadSpec(8, 32, 1, (4, 4)))  # 8 bins per axis, centred on −0.25, 0.25, …, 3.25
    raw = torch.full((1, 1, 16), -10.0)
    raw[0, 0, 0] = 10.0  # x: bin 0
    raw[0, 0, 8 + 7] = 10.0  # y: bin 7
    coords, conf = head.decode(raw)
    torch.testing.assert_close(coords, torch.tensor([[[-0.25, 3.25]]]))
    assert conf.item() > 0.99


def test_spread_is_the_variance_in_input_pixels() -> None:
    # A 50/50 split between two bins 1 px apart has variance ¼ px² per axis.
    head = kpreg.heads.SimCCHead(split_ratio=1.0)
    head.build(HeadSpec(8, 32, 1, (4, 4)))
    raw = torch.full((1, 1, 8), -1e4)
    raw[0, 0, [1, 2, 4 + 3]] = 0.0  # x split between pixels 1 and 2, y certain
    assert head.spread(raw).item() == pytest.approx(0.25)
    # soft-argmax / DSNT: cells² × stride²; a 50/50 split between two cells at stride 4 is 4 px².
    dsnt = kpreg.heads.DSNTHead(output_stride=4)
    dsnt.build(HeadSpec(8, 32, 1, (16, 16)))
    maps = torch.full((1, 1, 4, 4), -1e4)
    maps[0, 0, 1, 1:3] = 0.0
    assert dsnt.spread(maps).item() == pytest.approx(4.0)
    assert kpreg.heads.OffsetHead().spread(maps) is None  # no distribution: the base class's None
