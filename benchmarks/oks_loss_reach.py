"""How far a regression head starts from its targets, in units of the OKS loss's tolerance, on the synthetic figures.

The OKS loss ``1 − exp(−d² / (2 s² k²))`` (``kpreg/oks_loss.py``) has its largest gradient at ``d = s·k`` and
saturates beyond: relative to that maximum the gradient is ``g(u) = u · exp(−u²/2) / exp(−1/2)`` with
``u = d / (s·k)``. This prints, per keypoint, the distance of the training set's mean pose (where FC, RLE and anchor
poses start) from each training keypoint in units of ``s·k``, and the share of keypoints whose gradient there is
below 5 % of the maximum: what the OKS loss has to pull with when a head is trained from scratch.

    python benchmarks/oks_loss_reach.py [--samples 2000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kpreg.data.synthetic_datamodule import SyntheticPoseDataModule  # noqa: E402

WEAK = 0.05  # "little pull": a gradient below 5 % of the OKS loss's largest


def reach(samples: int) -> dict:
    dm = SyntheticPoseDataModule(image_size=64, num_train=samples, num_val=4)
    dm.setup("fit")
    data = [dm.datasets["train"][i] for i in range(samples)]
    keypoints = torch.stack([s["keypoints"] for s in data])  # (N, K, 2) input px
    visible = torch.stack([s["visibility"] for s in data]) > 0  # (N, K)
    scale = torch.stack([s["scale"] for s in data])  # (N,) input px, s = sqrt(area)
    mean_pose = (keypoints * visible[..., None]).sum(0) / visible.sum(0).clamp(min=1)[:, None]  # (K, 2)
    k = 2 * torch.tensor(dm.sigmas, dtype=torch.float32)  # (K,) COCOeval sigma → k
    d = (keypoints - mean_pose).norm(dim=-1)  # (N, K) input px
    u = d / (scale[:, None] * k)  # (N, K) in tolerances
    g = u * torch.exp(-u ** 2 / 2) / math.exp(-0.5)  # (N, K) gradient / its maximum
    rows = {}
    for j, name in enumerate(dm.keypoint_names):
        m = visible[:, j]
        rows[name] = {"tolerance_px": float((scale * k[j])[m].median()), "start_error_px": float(d[m, j].median()),
                      "tolerances": float(u[m, j].median()), "weak_share": float((g[m, j] < WEAK).float().mean())}
    return {"samples": samples, "median_scale_px": float(scale.median()), "keypoints": rows,
            "all": {"tolerances": float(u[visible].median()), "weak_share": float((g[visible] < WEAK).float().mean())}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=2000, help="training figures to measure")
    parser.add_argument("--quick", action="store_true", help="200 figures (the smoke test)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    result = reach(200 if args.quick else args.samples)
    print(f"{result['samples']} training figures, median scale s = {result['median_scale_px']:.1f} input px")
    print("| keypoint | s·k (px) | start error (px) | start error / s·k | gradient < 5 % of max |")
    print("|---|---:|---:|---:|---:|")
    for name, r in result["keypoints"].items():
        print(f"| {name} | {r['tolerance_px']:.2f} | {r['start_error_px']:.2f} | {r['tolerances']:.2f} | "
              f"{100 * r['weak_share']:.1f} % |")
    print(f"| all | | | {result['all']['tolerances']:.2f} | {100 * result['all']['weak_share']:.1f} % |")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
