"""The neck reaches the head's grid from any backbone stride (8, 14, 16, 32 …), and keeps cell centres on kpreg's
pixel-centre grid while doing so."""

from __future__ import annotations

import pytest
import torch
from testkit.heads import HEADS, K, head_class

from kpreg.backbone import Backbone
from kpreg.coords import cells_to_pixels
from kpreg.heads import HeadSpec
from kpreg.heads.neck import ToGrid, build_neck, default_neck_channels

# (backbone, feature level, timm arguments, input size): strides 8, 14 (a ViT with 14-pixel patches, the DINOv2
# family's), 16 and 32.
BACKBONES = {
    8: ("test_resnet", 2, {}, 64),
    14: ("test_vit", -1, {"img_size": 112, "patch_size": 14}, 112),
    16: ("test_vit", -1, {"img_size": 64}, 64),
    32: ("test_resnet", -1, {}, 64),
}
SPATIAL = [n for n in HEADS if head_class(n).has_output_stride]


@pytest.fixture(scope="module", params=sorted(BACKBONES), ids=lambda s: f"backbone-stride{s}")
def backbone(request: pytest.FixtureRequest) -> tuple[Backbone, int]:
    name, level, kwargs, size = BACKBONES[request.param]
    model = Backbone(name, feature_index=level, timm_kwargs=kwargs).eval()
    assert model.stride == request.param
    return model, size


@pytest.mark.parametrize("output_stride", [4, 8])
@pytest.mark.parametrize("name", SPATIAL)
def test_the_whole_model_outputs_the_grid_the_head_decodes(name: str, output_stride: int,
                                                           backbone: tuple[Backbone, int]) -> None:
    model, size = backbone
    head = head_class(name)(output_stride=output_stride, neck_channels=8)
    head.build(HeadSpec(model.channels, model.stride, K, (size, size)))
    with torch.no_grad():
        raw = head(model(torch.randn(2, 3, size, size)))
    g = torch.Generator().manual_seed(0)
    keypoints = size / 4 + torch.rand(2, K, 2, generator=g) * size / 2  # (2, K, 2) input pixels
    ideal = head.ideal_output(keypoints)
    assert raw.shape == ideal.shape  # the network's output is on the grid the head encodes and decodes
    coords, _ = head.eval().decode(ideal)
    assert (coords - keypoints).abs().max() <= head.round_trip_tolerance()


def test_to_grid_keeps_cell_centres_on_the_pixel_grid() -> None:
    """A map whose value is each cell's centre x in input pixels, at stride 14, resized to the stride-4 grid of the
    same 112-pixel input, holds the stride-4 cells' centres: bilinear interpolation reproduces a linear function
    exactly between the outermost centres, so the resize maps cell centres as kpreg.coords does."""
    src = cells_to_pixels(torch.arange(8, dtype=torch.float64), 14).expand(1, 1, 8, 8)  # (1, 1, 8, 8) px
    out = ToGrid((28, 28))(src)  # (1, 1, 28, 28)
    centres = cells_to_pixels(torch.arange(28, dtype=torch.float64), 4)  # (28,) px
    inside = (centres >= 6.5) & (centres <= 7 * 14 + 6.5)  # between the first and last source centres
    torch.testing.assert_close(out[0, 0, 0, inside], centres[inside])


def test_neck_layers_for_a_stride_that_is_not_a_power_of_two() -> None:
    neck, channels = build_neck("deconv", 64, 14, 4, 32, (28, 28))  # stride 14 → 7 by one deconvolution, → 4 resized
    kinds = [type(m).__name__ for m in neck]
    assert kinds.count("ConvTranspose2d") == 1 and kinds[-1] == "ToGrid" and channels == 32
    assert neck(torch.randn(1, 64, 8, 8)).shape == (1, 32, 28, 28)
    pooled, _ = build_neck("deconv", 64, 14, 28, 32, (4, 4))  # coarser than the backbone: pooled to the grid
    assert pooled(torch.randn(1, 64, 8, 8)).shape == (1, 64, 4, 4)


def test_neck_none_needs_the_backbone_stride_and_default_width() -> None:
    with pytest.raises(ValueError, match="neck 'none'"):
        build_neck("none", 64, 14, 4, 32, (28, 28))
    assert default_neck_channels(2048) == 256 and default_neck_channels(128) == 64
