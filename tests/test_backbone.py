import pytest
import timm
import torch

from kpreg.backbone import Backbone, BackboneError


@pytest.mark.parametrize(
    "name, kwargs",
    [("test_resnet", {}), ("test_convnext", {}), ("test_efficientnet", {}), ("test_vit", {"img_size": 64})],
)
def test_channels_and_stride_match_the_features(name: str, kwargs: dict) -> None:
    backbone = Backbone(name, timm_kwargs=kwargs)
    out = backbone(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, backbone.channels, 64 // backbone.stride, 64 // backbone.stride)


def test_feature_index_selects_a_level() -> None:
    deep, mid = Backbone("test_resnet"), Backbone("test_resnet", feature_index=2)
    assert mid.stride == deep.stride // 4
    assert mid(torch.randn(1, 3, 64, 64)).shape[-1] == 64 // mid.stride
    with pytest.raises(BackboneError, match="out of range"):
        Backbone("test_resnet", feature_index=9)


def test_pretrained_file_loads_local_weights(tmp_path) -> None:
    source = timm.create_model("test_resnet", pretrained=False)
    state = source.state_dict()
    name = next(k for k in state if k.endswith("weight") and state[k].ndim == 4)  # the first conv
    state[name] = torch.full_like(state[name], 0.125)
    path = tmp_path / "weights.pth"
    torch.save(state, path)
    backbone = Backbone("test_resnet", pretrained_file=str(path))
    assert torch.all(backbone.body.state_dict()[name] == 0.125)


def test_clear_errors() -> None:
    with pytest.raises(BackboneError, match="unknown timm model name 'resnet181'.*resnet18"):
        Backbone("resnet181")
    with pytest.raises(BackboneError, match="pretrained_file not found"):
        Backbone("test_resnet", pretrained_file="/nonexistent/weights.pth")
