"""Export parity per head: ONNX Runtime and TorchScript against PyTorch; prints a markdown table.

Every variant each head of ``kpreg.heads.__all__`` declares (``Head.variants``: its defaults, its decoders …),
on a COCO-sized input (256 × 192, 17 keypoints, COCO's flip pairs), with ``test_resnet`` (timm's tiny
ResNet, random weights: no download) and the head's full default neck. Each model is exported once with
and once without the flip test in the graph (``kpreg.inference.export``) and run on the same 4 random
crops by PyTorch, ONNX Runtime (CPU) and the TorchScript trace. Cells: max |Δ coords| in input pixels /
max |Δ confidence|. Needs ``pip install onnx onnxscript onnxruntime``.

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
from kpreg.inference.export import InferenceModel, export_onnx, export_torchscript, parity  # noqa: E402

INPUT = (256, 192)
K = 17


def cases() -> dict[str, Head]:
    """Every declared variant of every registered head, by its label."""
    return {label: getattr(heads, name)(**init_args)
            for name in heads.__all__ for label, init_args in getattr(heads, name).variants.items()}


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
            for flip in (False, True):
                model = InferenceModel(backbone, head, COCO_FLIP_PAIRS if flip else None)
                onnx_path = export_onnx(model, Path(tmp) / "m.onnx")
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
    write_json(args.json, {"input": list(INPUT), "keypoints": K, "rows": rows})


if __name__ == "__main__":
    main()
