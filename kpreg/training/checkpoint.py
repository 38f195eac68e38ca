"""Checkpoints that know their model: reading them safely, and refusing one that is another model.

Every kpreg checkpoint carries, besides the weights (``network.backbone.*``, ``network.head.*``),
``checkpoint["kpreg"]`` (``KeypointModule.describe()``): the head's class and arguments, the backbone, the keypoint
names, skeleton, flip pairs, OKS sigmas, the input size, how the network runs (feature level, flip test, memory
layout), the calibration and the resolved config, all as plain data, so ``torch.load(weights_only=True)`` reads it
and nothing needs the config that trained it. Evaluating or resuming under a config that disagrees is one error
naming both sides.

Format 1 checkpoints named the tensors ``backbone.*`` / ``head.*`` and kept the network's settings only in the
config; ``upgrade_checkpoint`` reads them into the current layout.
"""

from __future__ import annotations

import inspect
import pickle
from pathlib import Path
from typing import Any

import torch

from kpreg.classpath import ClassPathError, import_class_path

CHECKPOINT_FORMAT = 2
NETWORK_PREFIX = "network."  # the KeypointNetwork's tensors inside a KeypointModule's state_dict


class CheckpointMismatchError(ValueError):
    """A checkpoint that is not this model (another head, keypoint set, input size, or tensors that do not fit)."""


# The parts of a model's identity that must agree (KeypointModule.describe() keys), and how to name them.
IDENTITY_FIELDS: tuple[tuple[str, str], ...] = (
    ("head.class_path", "head"),
    ("head.init_args", "head arguments"),
    ("backbone", "backbone"),
    ("num_keypoints", "keypoint count"),
    ("keypoint_names", "keypoint names"),
    ("input_size", "input size"),
)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` on the CPU, with a clear error for a missing or unreadable file."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointMismatchError(f"checkpoint {path} is a folder: name the .ckpt file (e.g. "
                                      f"{path / 'checkpoints' / 'best.ckpt'})")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointMismatchError(f"cannot read checkpoint {path}: the file is empty (0 bytes; a copy or a save "
                                      "that was interrupted?)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, IndexError, KeyError, ValueError, pickle.UnpicklingError) as err:
        # junk bytes: an unpickling error; a cut zip archive: a RuntimeError from its reader
        reason = (str(err).splitlines() or [type(err).__name__])[0]
        raise CheckpointMismatchError(f"cannot read checkpoint {path} (truncated or not a checkpoint?): "
                                      f"{reason}") from None
    if not isinstance(checkpoint, dict):
        raise CheckpointMismatchError(f"{path} is not a Lightning checkpoint (a {type(checkpoint).__name__})")
    return upgrade_checkpoint(checkpoint)


def upgrade_checkpoint(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """A format-1 checkpoint brought to the current layout, in place (see the module docstring); others unchanged."""
    record = checkpoint.get("kpreg")
    if isinstance(record, dict) and int(record.get("format", 1)) >= CHECKPOINT_FORMAT:
        return checkpoint
    state = checkpoint.get("state_dict")
    if isinstance(state, dict):
        old = ("backbone.", "head.")
        checkpoint["state_dict"] = {(NETWORK_PREFIX + k if k.startswith(old) else k): v for k, v in state.items()}
    if isinstance(record, dict):
        model = (record.get("config") or {}).get("model") or {}
        record.setdefault("network", {
            "feature_index": int(model.get("feature_index", -1)),
            "backbone_kwargs": dict(model.get("backbone_kwargs") or {}),
            "flip_test": bool(model.get("flip_test", True)),
            "channels_last": bool(model.get("channels_last", False)),
        })
        record["format"] = CHECKPOINT_FORMAT
    return checkpoint


def _get(tree: dict[str, Any], dotted: str) -> Any:
    node: Any = tree
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _norm(value: Any) -> Any:
    """Compare lists and tuples alike, ints and floats alike."""
    if isinstance(value, (list, tuple)):
        return [_norm(v) for v in value]
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in value.items()}
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    return value


def _head_defaults(class_path: str | None) -> dict[str, Any]:
    """The default arguments of the head class at ``class_path`` ({} when it cannot be imported)."""
    try:
        cls = import_class_path(class_path or "")
        parameters = inspect.signature(cls.__init__).parameters.values()
    except (ClassPathError, ValueError, TypeError):
        return {}
    return {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}


def identity_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The identity fields on which a checkpoint's ``kpreg`` record and the current model differ, as lines."""
    lines = []
    for field, label in IDENTITY_FIELDS:
        a, b = _get(saved, field), _get(current, field)
        if a is None or b is None:
            continue  # a field one side does not record (older checkpoints) cannot disagree
        if field == "head.init_args":
            # An argument only one side records is one the head gained after the older side was written: the
            # older side then ran with its default.
            defaults = _head_defaults(_get(current, "head.class_path") or _get(saved, "head.class_path"))
            a = {**{k: defaults[k] for k in b if k not in a and k in defaults}, **a}
            b = {**{k: defaults[k] for k in a if k not in b and k in defaults}, **b}
            keys = sorted(set(a) | set(b))
            diffs = [f"{k}={a.get(k)!r} vs {b.get(k)!r}" for k in keys if _norm(a.get(k)) != _norm(b.get(k))]
            if diffs:
                lines.append(f"{label}: checkpoint vs config: {', '.join(diffs)}")
        elif _norm(a) != _norm(b):
            lines.append(f"{label}: checkpoint {a!r} vs config {b!r}")
    return lines


def check_checkpoint_identity(checkpoint: dict[str, Any], current: dict[str, Any], name: str | Path) -> None:
    """Raise ``CheckpointMismatchError`` if ``checkpoint`` records another model than ``current`` describes."""
    saved = checkpoint.get("kpreg")
    if not isinstance(saved, dict):
        return  # written before checkpoints recorded their model: only the tensor check applies
    diffs = identity_differences(saved, current)
    if diffs:
        raise CheckpointMismatchError(
            f"{name} is another model than the config describes:\n  " + "\n  ".join(diffs)
            + "\n(evaluate with the run's own config.yaml, or pass --allow_checkpoint_mismatch true to use it anyway)"
        )


def check_state_dict_compatible(model: torch.nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
    """Raise ``CheckpointMismatchError`` naming every tensor that is missing, unexpected or mis-shaped."""
    own = model.state_dict()
    problems = []
    for name, tensor in state_dict.items():
        if name not in own:
            problems.append(f"unexpected tensor '{name}' {tuple(tensor.shape)}")
        elif own[name].shape != tensor.shape:
            problems.append(f"'{name}': checkpoint {tuple(tensor.shape)} vs model {tuple(own[name].shape)}")
    problems += [f"missing tensor '{name}'" for name in own if name not in state_dict]
    if problems:
        shown = "\n  ".join(problems[:12]) + (f"\n  … and {len(problems) - 12} more" if len(problems) > 12 else "")
        raise CheckpointMismatchError(
            "the checkpoint does not fit this model (another head, keypoint count or backbone?):\n  " + shown
        )


def load_backbone_weights(backbone: torch.nn.Module, ckpt_path: str) -> None:
    """Load the backbone tensors of a kpreg checkpoint (``weights_only=True``) into ``backbone``."""
    if not Path(ckpt_path).is_file():
        raise FileNotFoundError(f"init_backbone_from: checkpoint not found: {ckpt_path}")
    checkpoint = read_checkpoint(ckpt_path)
    state_dict = checkpoint.get("state_dict", checkpoint)
    prefix = NETWORK_PREFIX + "backbone."
    backbone_state = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    if not backbone_state:
        raise CheckpointMismatchError(f"init_backbone_from: {ckpt_path} has no '{prefix}*' tensors")
    try:
        check_state_dict_compatible(backbone, backbone_state)
    except CheckpointMismatchError as err:
        raise CheckpointMismatchError(f"init_backbone_from {ckpt_path}: {err} (another backbone?)") from None
    backbone.load_state_dict(backbone_state)
