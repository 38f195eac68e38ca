"""Parity of the one forward path per head: the ``KeypointNetwork`` in PyTorch against two separate passes merged
by the head, ONNX Runtime and TorchScript; prints a markdown table.

Every variant each head of ``kpreg.heads.__all__`` declares (``Head.variants``: its defaults, its decoders …),
on a COCO-sized input (256 × 192, 17 keypoints, COCO's flip pairs), with ``test_resnet`` (timm's tiny
ResNet, random weights: no download) and the head's full default neck. Each network runs with the flip test off
and on, and raw or calibrated (a confidence map fitted on made-up labels, with the spread where the head has
one); it is exported (``kpreg.inference.export``) and run on the same 4 random crops by PyTorch, ONNX Runtime
(CPU) and the TorchScript trace. "two passes": the image and its mirror through the network one after the other,
merged by ``Head.flip_merge``, then the map (the network runs them as one batch of 2B). Cells: max |Δ coords|
in input pixels / max |Δ confidence|. Needs ``pip install onnx onnxscript onnxruntime``.

    python benchmarks/export_parity.py [--json out.json]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere without installing kpreg
import kpreg.heads as heads  # noqa: E402
from benchmarks._report import write_json  # noqa: E402
from kpreg.backbone import Backbone  # noqa: E402
from kpreg.formats.coco import COCO_FLIP_PAIRS  # noqa: E402
from kpreg.heads import Head, HeadSpec  # noqa: E402
from kpreg.inference.export import export_onnx, export_torchscript, parity  # noqa: E402
from kpreg.metrics.calibration import ConfidenceMap, make_calibrator  # noqa: E402
from kpreg.network import KeypointNetwork  # noqa: E402

INPUT = (256, 192)
K = 17


def cases() -> dict[str, Head]:
    """Every declared variant of every registered head, by its label."""
    return {label: getattr(heads, name)(**init_args)
            for name in heads.__all__ for label, init_args in getattr(heads, name).variants.items()}


def fitted_map(head: Head, backbone: Backbone, crops: torch.Tensor) -> ConfidenceMap:
    """A confidence map fitted on the head's own raw scores of ``crops`` against made-up correctness, with the
    log spread where the head has one (so the map's whole graph is exercised)."""
    with torch.no_grad():
        out = KeypointNetwork(backbone, head).eval().run(crops)
    score = out.raw_confidence.double().flatten()  # (N,)
    features = score[:, None] if out.spread is None else torch.stack((score, out.spread.double().flatten().clamp(min=1e-6).log()), 1)
    correct = torch.arange(len(score)) % 3 != 0  # (N,) a mix of both classes
    recipe = "platt" if out.spread is None else "platt_spread"
    return ConfidenceMap(make_calibrator(recipe).fit(features, correct, torch.arange(len(score)) % K), K)


def two_passes(model: KeypointNetwork, crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference: the crops and their mirrors through the network in two passes, merged, then the map."""
    with torch.no_grad():
        raw = model.raw(crops)
        if model.flip_test:
            coords, confidence = model.head.flip_merge(raw, model.raw(crops.flip(-1)), model.flip_pairs)
        else:
            coords, confidence = model.head.decode(raw)
        return coords, model.calibrate(confidence, model.head.spread(raw))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the numbers to this JSON file")
    args = parser.parse_args()
    torch.manual_seed(0)
    backbone = Backbone("test_resnet").eval()
    crops = torch.randn(4, 3, *INPUT, generator=torch.Generator().manual_seed(1))
    rows: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, head in cases().items():
            head.build(HeadSpec(backbone.channels, backbone.stride, K, INPUT, (0.05,) * K))
            if head.needs_fit:  # e.g. anchor poses: fitted on random poses, as the module would on training poses
                g = torch.Generator().manual_seed(2)
                head.fit(torch.rand(64, K, 2, generator=g) * (INPUT[1] - 1), torch.ones(64, K))
            head.eval()
            calibration = fitted_map(head, backbone, crops)
            for calibrated in (False, True):
                for flip in (False, True):
                    model = KeypointNetwork(backbone, head, COCO_FLIP_PAIRS, flip_test=flip,
                                            confidence_map=calibration if calibrated else None).eval()
                    suffix = "".join((", flip test" if flip else "", ", calibrated" if calibrated else ""))
                    with torch.no_grad():
                        coords, confidence = model(crops)
                    ref_coords, ref_confidence = two_passes(model, crops)
                    rows.setdefault(name, {})[f"two passes{suffix}"] = [
                        float((coords - ref_coords).abs().max()), float((confidence - ref_confidence).abs().max())]
                    onnx_path = export_onnx(model, Path(tmp) / "m.onnx")
                    ts_path = export_torchscript(model, Path(tmp) / "m.pt")
                    for p in parity(model, crops, onnx_path, ts_path):
                        rows[name][f"{p.runtime}{suffix}"] = [p.max_coord_px, p.max_confidence]
    columns = list(next(iter(rows.values())))
    print(f"\nParity vs the KeypointNetwork in PyTorch, {INPUT[0]}×{INPUT[1]} input, {K} keypoints, 4 random crops, "
          "test_resnet; max |Δ coords| (input px) / max |Δ confidence|\n")
    print("| head | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for name, cols in rows.items():
        print(f"| {name} | " + " | ".join(f"{px:.1e} / {conf:.1e}" for px, conf in cols.values()) + " |")
    write_json(args.json, {"input": list(INPUT), "keypoints": K, "rows": rows})


if __name__ == "__main__":
    main()
