"""Export parity per head: ONNX Runtime and TorchScript against PyTorch; prints a markdown table.

Every head of ``kpreg.heads.__all__`` in every setting it declares (``Head.variants``: its decoders and the
options worth benchmarking), on a COCO-sized input (256 × 192, 17 keypoints, COCO's flip pairs), with
``test_resnet`` (timm's tiny ResNet, random weights: no download) and the head's full default neck. A head that
learns from the training keypoints (``needs_fit``, e.g. anchor poses) is fitted on random poses first, so that
its decoding runs on distinct anchors. Each model is exported with and without the flip test in the graph
(``kpreg.inference.export``; ``--flip on|off`` keeps one) and run on the same 4 random crops by PyTorch, ONNX
Runtime (CPU) and the TorchScript trace. Cells: max |Δ coords| in input pixels / max |Δ confidence|. Needs
``pip install onnx onnxscript onnxruntime``; about 10 s of one core per exported pair.

    python benchmarks/export_parity.py [--flip both|on|off] [--first-variant-only] [--json out.json]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere without installing kpreg
import kpreg.heads  # noqa: E402
from benchmarks._report import write_json  # noqa: E402
from kpreg.backbone import Backbone  # noqa: E402
from kpreg.formats.coco import COCO_FLIP_PAIRS, COCO_SIGMAS  # noqa: E402
from kpreg.heads import Head, HeadSpec  # noqa: E402
from kpreg.inference.export import InferenceModel, export_onnx, export_torchscript, parity  # noqa: E402

INPUT = (256, 192)
K = 17


def cases(first_only: bool = False) -> dict[str, Head]:
    """label → a fresh head, for every head class of ``kpreg.heads.__all__`` and each of its declared variants."""
    out: dict[str, Head] = {}
    for name in kpreg.heads.__all__:
        cls = getattr(kpreg.heads, name)
        variants = cls.variants or {name: {}}
        for label, kwargs in list(variants.items())[:1 if first_only else None]:
            out[label] = cls(**kwargs)
    return out


def build(head: Head, backbone: Backbone) -> Head:
    head.build(HeadSpec(backbone.channels, backbone.stride, K, INPUT, tuple(float(s) for s in COCO_SIGMAS)))
    if head.needs_fit:  # random poses spread over the input: distinct anchors to decode against
        g = torch.Generator().manual_seed(2)
        keypoints = torch.rand(256, K, 2, generator=g) * torch.tensor([INPUT[1] - 1.0, INPUT[0] - 1.0])
        head.fit(keypoints, torch.ones(256, K))
    return head.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flip", choices=("both", "on", "off"), default="both",
                        help="export with the flip test in the graph, without, or both (default)")
    parser.add_argument("--first-variant-only", action="store_true", help="each head's default setting only")
    parser.add_argument("--json", help="also write the numbers to this JSON file")
    args = parser.parse_args()
    flips = {"both": (False, True), "on": (True,), "off": (False,)}[args.flip]
    torch.manual_seed(0)
    backbone = Backbone("test_resnet").eval()
    crops = torch.randn(4, 3, *INPUT, generator=torch.Generator().manual_seed(1))
    rows: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, head in cases(args.first_variant_only).items():
            build(head, backbone)
            for flip in flips:
                model = InferenceModel(backbone, head, COCO_FLIP_PAIRS if flip else None)
                onnx_path = export_onnx(model, Path(tmp) / "m.onnx")
                with warnings.catch_warnings():  # shape tests fixed by the export's input size (see export.py)
                    warnings.simplefilter("ignore", torch.jit.TracerWarning)
                    ts_path = export_torchscript(model, Path(tmp) / "m.pt")
                for p in parity(model, crops, onnx_path, ts_path):
                    key = f"{p.runtime}{', flip test' if flip else ''}"
                    rows.setdefault(name, {})[key] = [p.max_coord_px, p.max_confidence]
    columns = list(next(iter(rows.values())))
    print(f"\nExport parity vs PyTorch, {INPUT[0]}×{INPUT[1]} input, {K} keypoints, 4 random crops, test_resnet; "
          "max |Δ coords| (input px) / max |Δ confidence|\n")
    print("| head | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for name, cols in rows.items():
        print(f"| {name} | " + " | ".join(f"{px:.1e} / {conf:.1e}" for px, conf in cols.values()) + " |")
    worst = {c: max(cols[c][0] for cols in rows.values()) for c in columns}
    print("\nlargest coordinate difference per column: " + ", ".join(f"{c} {v:.1e} px" for c, v in worst.items()))
    write_json(args.json, {"input": list(INPUT), "keypoints": K, "rows": rows, "max_coord_px": worst})


if __name__ == "__main__":
    main()
