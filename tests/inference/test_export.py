"""Export of the ``KeypointNetwork`` (backbone + head + decode) to ONNX and TorchScript, for every head in
``kpreg.heads.__all__``.

Each export is small (32 × 32 input, exported at batch 2, compared at batches 1 and 3 so that the dynamic
batch axis is exercised) and includes the flip test, whose graph holds the plain one (two decodes and the
merge); one case exports the plain model.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import json
import warnings
from pathlib import Path

import pytest
import torch

import kpreg.heads
from kpreg.backbone import Backbone
from kpreg.heads import Head, HeadSpec
from kpreg.heads.neck import SpatialHead
from kpreg.inference import export
from kpreg.inference.export import ExportError, export_onnx, export_torchscript, parity
from kpreg.network import KeypointNetwork

SIZE = (32, 32)
K = 3
FLIP_PAIRS = [(0, 1)]
PX_TOL = 1e-3  # input pixels
CONF_TOL = 1e-4
# A decoder whose graph has ops that no default has (DARK: a separable Gaussian blur, a log, a Newton step).
# The other variants are covered by benchmarks/export_parity.py (each export here costs ~4 s of one core).
DECODE_VARIANTS = {"HeatmapHead": {"dark": {"decoder": "dark"}}}
CASES = [(name, label, kwargs) for name in kpreg.heads.__all__
         for label, kwargs in {"defaults": {}, **DECODE_VARIANTS.get(name, {})}.items()]
PLAIN_CASE = ("HeatmapHead", "defaults")
needs_onnx = pytest.mark.skipif(
    any(importlib.util.find_spec(p) is None for p in ("onnx", "onnxscript", "onnxruntime")),
    reason="optional ONNX packages not installed (pip install onnx onnxscript onnxruntime)",
)


@pytest.fixture(scope="module")
def backbone() -> Backbone:
    return Backbone("test_resnet").eval()


def make_head(name: str, backbone: Backbone, **kwargs: object) -> Head:
    cls = getattr(kpreg.heads, name)
    if issubclass(cls, SpatialHead):
        kwargs.setdefault("neck_channels", 8)  # a thin neck keeps each export small
    head = cls(**kwargs)
    spec = {"in_channels": backbone.channels, "in_stride": backbone.stride, "num_keypoints": K, "input_size": SIZE}
    if "sigmas" in {f.name for f in dataclasses.fields(HeadSpec)}:
        spec["sigmas"] = (0.05,) * K
    head.build(HeadSpec(**spec))
    return head.eval()


def images(b: int) -> torch.Tensor:
    return torch.randn(b, 3, *SIZE)


def case_model(name: str, label: str, kwargs: dict, backbone: Backbone) -> tuple[KeypointNetwork, bool]:
    """The case's model; one case exports the plain model (no flip test): the others' graphs contain it."""
    plain = (name, label) == PLAIN_CASE
    model = KeypointNetwork(backbone, make_head(name, backbone, **kwargs), FLIP_PAIRS, flip_test=not plain)
    return model.eval(), plain


def assert_parity(model: KeypointNetwork, runtime: str, **paths: Path) -> None:
    for b in (1, 3):  # exported at batch 2: the batch axis is dynamic in both files
        (p,) = parity(model, images(b), **paths)
        assert p.runtime == runtime and p.max_coord_px <= PX_TOL and p.max_confidence <= CONF_TOL, (b, p)


@pytest.mark.slow  # an ONNX export takes seconds (torch.export); the TorchScript cases cover the graphs fast
@needs_onnx
@pytest.mark.parametrize(("name", "label", "kwargs"), CASES, ids=[f"{n}-{lbl}" for n, lbl, _ in CASES])
def test_onnx_runtime_matches_pytorch(name: str, label: str, kwargs: dict, backbone: Backbone, tmp_path: Path) -> None:
    import onnx

    model, plain = case_model(name, label, kwargs, backbone)
    path = export_onnx(model, tmp_path / "m.onnx", SIZE, metadata={"kpreg.keypoints": '["a", "b", "c"]'})
    assert_parity(model, "onnxruntime", onnx_path=path)
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert props["kpreg.keypoints"] == '["a", "b", "c"]' and props["kpreg.head"] == name
    assert json.loads(props["kpreg.flip_test"]) == (None if plain else [list(p) for p in FLIP_PAIRS])
    assert "(batch, 3, 32, 32)" in props["kpreg.input"]


@pytest.mark.parametrize(("name", "label", "kwargs"), CASES, ids=[f"{n}-{lbl}" for n, lbl, _ in CASES])
def test_torchscript_matches_pytorch(name: str, label: str, kwargs: dict, backbone: Backbone, tmp_path: Path) -> None:
    model, plain = case_model(name, label, kwargs, backbone)
    path = export_torchscript(model, tmp_path / "m.pt", SIZE, metadata={"kpreg.keypoints": '["a", "b", "c"]'})
    assert_parity(model, "torchscript", torchscript_path=path)
    extra = {export.METADATA_FILE: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated
        torch.jit.load(str(path), _extra_files=extra)
    meta = json.loads(extra[export.METADATA_FILE])
    assert meta["kpreg.head"] == name and meta["kpreg.keypoints"] == '["a", "b", "c"]'
    assert json.loads(meta["kpreg.flip_test"]) == (None if plain else [list(p) for p in FLIP_PAIRS])


def test_export_leaves_the_callers_model_as_it_was(backbone: Backbone, tmp_path: Path) -> None:
    own = copy.deepcopy(backbone)  # the module's backbone is shared by the other tests, in eval mode
    model = KeypointNetwork(own, make_head("FCHead", own)).train()
    export_torchscript(model, tmp_path / "m.pt")
    assert model.training and next(model.parameters()).device.type == "cpu"


def test_bad_export_requests(backbone: Backbone, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = KeypointNetwork(backbone, make_head("FCHead", backbone))
    with pytest.raises(ExportError, match="input_size 64x64 differs from the head's input size 32x32"):
        export_torchscript(model, tmp_path / "m.pt", input_size=(64, 64))
    with pytest.raises(ExportError, match="needs an ONNX file, a TorchScript file or both"):
        parity(model, images(1))
    with pytest.raises(ExportError, match="not found: .*missing.pt"):
        parity(model, images(1), torchscript_path=tmp_path / "missing.pt")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "onnxruntime" else real(n, *a))
    with pytest.raises(ExportError, match="pip install onnxruntime"):
        parity(model, images(1), onnx_path=tmp_path / "m.onnx")


def calibrated_model(recipe: str, backbone: Backbone) -> KeypointNetwork:
    """A SimCC model (it has a spread) whose confidence goes through a map fitted to made-up labels."""
    from kpreg.metrics.calibration import ConfidenceMap, make_calibrator

    g = torch.Generator().manual_seed(0)
    n = 300
    score = 0.1 * torch.rand(n, generator=g, dtype=torch.float64)  # (N,) SimCC-like raw scores
    log_spread = 3.0 * torch.rand(n, generator=g, dtype=torch.float64)  # (N,)
    idx = torch.arange(n) % K
    correct = torch.rand(n, generator=g, dtype=torch.float64) < torch.sigmoid(40 * score - 0.5 * log_spread)
    calibrator = make_calibrator(recipe).fit(torch.stack((score, log_spread), 1), correct, idx)
    head = make_head("SimCCHead", backbone)
    return KeypointNetwork(backbone, head, FLIP_PAIRS, flip_test=True,
                           confidence_map=ConfidenceMap(calibrator, K)).eval()


@pytest.mark.parametrize("recipe", ["platt_spread", "per_keypoint_isotonic"])
def test_calibrated_confidence_in_the_graph(recipe: str, backbone: Backbone, tmp_path: Path) -> None:
    """The map is the last step of the graph: equal to applying it to the plain model's output, and exported."""
    model = calibrated_model(recipe, backbone)
    x = images(2)
    with torch.no_grad():
        coords, confidence = model(x)
        raw = model.head(model.backbone(x))
        plain_coords, plain_conf = model.head.flip_merge(raw, model.head(model.backbone(x.flip(-1))), FLIP_PAIRS)
        want = model.confidence_map(plain_conf, model.head.spread(raw))
    torch.testing.assert_close(coords, plain_coords, atol=1e-4, rtol=0)
    # The network's flip test is one batch of 2B, the reference two passes: equal up to float rounding.
    torch.testing.assert_close(confidence, want, atol=1e-5, rtol=0)
    assert not torch.allclose(confidence, plain_conf)  # it is applied
    path = export_torchscript(model, tmp_path / "m.pt", SIZE)
    assert_parity(model, "torchscript", torchscript_path=path)
    extra = {export.METADATA_FILE: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.load(str(path), _extra_files=extra)
    assert json.loads(extra[export.METADATA_FILE])["kpreg.confidence"].startswith("P(correct)")


@pytest.mark.slow  # an ONNX export takes seconds (torch.export); the TorchScript cases cover the graphs fast
@needs_onnx
@pytest.mark.parametrize("recipe", ["platt_spread", "per_keypoint_isotonic"])
def test_calibrated_confidence_exports_to_onnx(recipe: str, backbone: Backbone, tmp_path: Path) -> None:
    import onnx

    model = calibrated_model(recipe, backbone)
    path = export_onnx(model, tmp_path / "m.onnx", SIZE)
    assert_parity(model, "onnxruntime", onnx_path=path)
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert props["kpreg.confidence"].startswith("P(correct)")
