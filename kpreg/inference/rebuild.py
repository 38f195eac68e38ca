"""A trained ``KeypointNetwork`` rebuilt from its checkpoint alone, with its ``ModelInfo``.

Every kpreg checkpoint records its model (``checkpoint["kpreg"]``, ``KeypointModule.describe``): the head's
class and arguments, the backbone and its feature level, the keypoints, the input size, the flip test, the memory
layout and the calibration. That is enough to rebuild the network without the config, the datamodule or
Lightning: the head class is imported from its recorded path and must be a ``kpreg.heads.Head``; the backbone is
built without pretrained weights (the checkpoint's replace them). A config given as well is checked against the
record, and a disagreement is one error naming both sides.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from kpreg.backbone import Backbone
from kpreg.classpath import ClassPathError, import_class_path
from kpreg.heads.base import Head, HeadSpec
from kpreg.inference.model_info import ModelInfo
from kpreg.metrics.calibration import confidence_map_of
from kpreg.network import KeypointNetwork, check_flip_test_sound
from kpreg.training.checkpoint import (
    NETWORK_PREFIX,
    CheckpointMismatchError,
    check_state_dict_compatible,
    identity_differences,
    read_checkpoint,
)


@dataclass
class RebuiltModel:
    """The network of a checkpoint, in eval mode on the CPU, and what pre- and post-processing need."""

    network: KeypointNetwork
    info: ModelInfo
    record: dict[str, Any]  # the checkpoint's ``kpreg`` record


def head_class(class_path: str, source: str) -> type[Head]:
    """Import a head class from its dotted path; it must subclass ``kpreg.heads.Head``."""
    try:
        cls = import_class_path(class_path)
    except ClassPathError as err:
        raise CheckpointMismatchError(f"{source}: the head class: {err}") from None
    if not (isinstance(cls, type) and issubclass(cls, Head)):
        raise CheckpointMismatchError(f"{source}: {class_path!r} is not a kpreg head (a kpreg.heads.Head subclass)")
    return cls


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def load_config(config: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """A run's ``config.yaml`` (path) or an already parsed config (mapping) → dict."""
    if isinstance(config, Mapping):
        return dict(config)
    path = Path(config)
    if not path.is_file():
        raise FileNotFoundError(f"config not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise CheckpointMismatchError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(data, dict):
        raise CheckpointMismatchError(f"{path}: a config is a mapping, got {type(data).__name__}")
    return data


def check_config(record: Mapping[str, Any], config: Mapping[str, Any], ckpt: str, config_name: str) -> None:
    """Raise ``CheckpointMismatchError`` if the config's model (head, its arguments, backbone, feature level)
    is another one than the checkpoint records. Keys the config leaves out cannot disagree."""
    model = config.get("model") or {}
    if not isinstance(model, Mapping):
        raise CheckpointMismatchError(f"{config_name}: 'model' must be a mapping")
    saved_head = record["head"]
    current: dict[str, Any] = {}
    head = model.get("head")
    if isinstance(head, Mapping) and head.get("class_path"):
        cls = head_class(str(head["class_path"]), config_name)
        current["head"] = {"class_path": _qualified(cls),
                           "init_args": {**saved_head.get("init_args", {}), **(head.get("init_args") or {})}}
    for key in ("backbone", "num_keypoints", "keypoint_names", "input_size"):
        if model.get(key) is not None:
            current[key] = model[key]
    saved = {**record, "head": {**saved_head,
                                "class_path": _qualified(head_class(saved_head["class_path"], ckpt))}}
    lines = identity_differences(saved, current)
    saved_level = (record.get("network") or {}).get("feature_index")
    level = model.get("feature_index")
    if level is not None and saved_level is not None and int(level) != int(saved_level):
        lines.append(f"backbone feature_index: checkpoint {saved_level} vs config {level}")
    if lines:
        raise CheckpointMismatchError(f"{ckpt} is another model than {config_name} describes:\n  "
                                      + "\n  ".join(lines))


def rebuild(ckpt: str | Path, config: str | Path | Mapping[str, Any] | None = None,
            flip_test: bool | None = None) -> RebuiltModel:
    """Rebuild a checkpoint's network with its weights and calibration; ``config`` (optional) is checked against it.
    ``flip_test``: None follows the run's evaluation setting (``ModelInfo.flip_test``)."""
    source = str(ckpt)
    checkpoint = read_checkpoint(ckpt)
    record = checkpoint.get("kpreg")
    if not isinstance(record, dict):
        raise CheckpointMismatchError(
            f"{source} does not record its model (checkpoint['kpreg'] is missing): evaluate it with its run's "
            "config, or re-save it by resuming training")
    if not isinstance(record.get("head"), Mapping) or "class_path" not in record["head"]:
        raise CheckpointMismatchError(f"{source}: the model record has no head class_path")
    if config is not None:
        check_config(record, load_config(config), source,
                     str(config) if not isinstance(config, Mapping) else "the config")
    info = ModelInfo.from_record(record, source)
    if flip_test:  # asked for: the one rule of evaluate.py too
        check_flip_test_sound(info.flip_pairs, record.get("flip_augmentation"), f"{source}: the flip test")
    settings = record.get("network") or {}
    backbone = Backbone(
        info.backbone,
        pretrained=False,  # the checkpoint's weights replace any pretrained ones
        feature_index=int(settings.get("feature_index", -1)),
        timm_kwargs=settings.get("backbone_kwargs"),
    )
    head = head_class(record["head"]["class_path"], source)(**(record["head"].get("init_args") or {}))
    head.build(HeadSpec(backbone.channels, backbone.stride, info.num_keypoints, info.input_size,
                        tuple(float(s) for s in record.get("sigmas") or ())))
    network = KeypointNetwork(backbone, head, info.flip_pairs, info.flip_test if flip_test is None else flip_test,
                              confidence_map=confidence_map_of(checkpoint),
                              channels_last=bool(settings.get("channels_last", False)))
    state_dict = checkpoint.get("state_dict")
    if not isinstance(state_dict, Mapping):
        raise CheckpointMismatchError(f"{source} has no state_dict")
    weights = {k[len(NETWORK_PREFIX):]: v for k, v in state_dict.items() if k.startswith(NETWORK_PREFIX)}
    try:
        check_state_dict_compatible(network, weights)
    except CheckpointMismatchError as err:
        raise CheckpointMismatchError(f"{source}: {err}") from None
    network.load_state_dict(weights)
    if network.channels_last:
        network.to(memory_format=torch.channels_last)
    return RebuiltModel(network.eval(), info, record)
