"""Any timm model as a feature extractor (``features_only``) with its channels and stride exposed."""

from __future__ import annotations

import difflib
import os
from typing import Any

import timm
import torch
from torch import nn


class BackboneError(ValueError):
    """A backbone that cannot be built as configured (unknown name, missing weights file)."""


class Backbone(nn.Module):
    """A timm model returning one feature map ``(B, C, H / stride, W / stride)``.

    Args:
        name: any timm model name that supports ``features_only`` (``timm.list_models()``).
        pretrained: load timm's default pretrained weights (needs network access or a local HF cache).
        pretrained_file: load weights from a local file instead (``.pth``/``.safetensors``, a timm
            state dict); implies ``pretrained`` and never touches the network.
        feature_index: which feature level to return, indexing timm's ``feature_info`` (-1 = deepest).
        timm_kwargs: extra keyword arguments for ``timm.create_model`` (e.g. ``img_size`` for a ViT,
            ``output_stride`` to dilate a ResNet).
    """

    def __init__(
        self,
        name: str,
        pretrained: bool = False,
        pretrained_file: str | None = None,
        feature_index: int = -1,
        timm_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        kwargs = dict(timm_kwargs or {})
        if pretrained_file is not None:
            if not os.path.isfile(pretrained_file):
                raise BackboneError(f"pretrained_file not found: {pretrained_file}")
            # timm's own loader reads a local file when the pretrained config points at it.
            kwargs["pretrained_cfg_overlay"] = dict(file=os.path.abspath(pretrained_file))
            pretrained = True
        self.name = name
        levels = self._create(name, pretrained, kwargs).feature_info
        num_levels = len(levels.channels())
        if not -num_levels <= feature_index < num_levels:
            raise BackboneError(
                f"feature_index {feature_index} out of range for '{name}' ({num_levels} feature levels: "
                f"strides {levels.reduction()})"
            )
        self.feature_index = feature_index % num_levels
        self.body = self._create(name, pretrained, {**kwargs, "out_indices": (self.feature_index,)})
        self.channels: int = self.body.feature_info.channels()[-1]
        self.stride: int = self.body.feature_info.reduction()[-1]

    @staticmethod
    def _create(name: str, pretrained: bool, kwargs: dict[str, Any]) -> nn.Module:
        if not timm.is_model(name):
            close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise BackboneError(f"unknown timm model name '{name}'.{hint}")
        try:
            return timm.create_model(name, pretrained=pretrained, features_only=True, **kwargs)
        except RuntimeError as err:  # e.g. a model without features_only support, a bad weights file
            raise BackboneError(f"cannot build timm model '{name}' with features_only: {err}") from err

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised images → (B, C, H / stride, W / stride) features."""
        return self.body(images)[-1]
