#!/usr/bin/env python
"""Evaluation throughput: scoring 10,000 predictions with PCKh and with COCO OKS AP (target: ≤ 2 s each on
one core).

* PCKh (16 MPII joints): the streaming metric ``kpreg.metrics.pckh.PCKh`` fed in validation-sized batches
  (``--batch``) then ``compute()``, and the one-shot array function ``pckh_table``.
* OKS AP (17 COCO keypoints): ``kpreg.metrics.oks.OKSAP`` on a generated COCO-style ground truth with
  ``--n`` instances (``--per-image`` per image, boxes, areas, some unlabelled keypoints): ``update`` in batches,
  then ``compute()`` = instance rescoring, OKS-NMS per image, ``COCO.loadRes`` and pycocotools' ``COCOeval``
  (evaluate, accumulate, summarize). Building the metric (parsing the GT) happens once per run, not per
  scoring, and is reported separately.

Predictions are the ground truth plus Gaussian noise, so the scores are mid-range (no shortcut where every
match is perfect). Each figure is the median of ``--repeats`` runs, on one thread by default, as wall-clock time and
as the process's CPU time (the steadier figure on a shared machine).

    python benchmarks/eval_speed.py
    python benchmarks/eval_speed.py --quick      # 500 predictions, one repeat
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere without installing kpreg
from _report import write_json  # benchmarks/ is on sys.path when a script runs

from kpreg.formats.coco import COCO_KEYPOINT_NAMES, COCO_SKELETON  # noqa: E402
from kpreg.metrics.oks import OKSAP  # noqa: E402
from kpreg.metrics.pckh import PCKh, pckh_table  # noqa: E402


def median_time(fn: Callable[[], Any], repeats: int) -> tuple[tuple[float, float], Any]:
    """((median wall s, median CPU s of the process), last result). On a shared machine the process may get only
    part of a core: the CPU time is then what the work costs on one core."""
    wall, cpu, out = [], [], None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return (statistics.median(wall), statistics.median(cpu)), out


# ---- PCKh -------------------------------------------------------------------------------------------------
def pckh_data(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    gt = rng.uniform(0, 640, size=(n, 16, 2))  # (N, 16, 2) x,y original pixels
    head_size = rng.uniform(30, 120, size=n)  # (N,) px
    pred = gt + rng.normal(scale=0.3, size=gt.shape) * head_size[:, None, None]  # errors ~ 0.3 head sizes
    visible = rng.random((n, 16)) > 0.15  # (N, 16)
    return {"pred": pred, "gt": gt, "visible": visible, "head_size": head_size}


def pckh_metric_run(d: dict[str, np.ndarray], batch: int) -> dict[str, float]:
    tensors = {k: torch.from_numpy(v) for k, v in d.items()}
    metric = PCKh()
    for s in range(0, len(d["pred"]), batch):
        sl = slice(s, s + batch)
        metric.update(tensors["pred"][sl], tensors["gt"][sl], tensors["visible"][sl], tensors["head_size"][sl])
    return metric.compute()


# ---- OKS AP -----------------------------------------------------------------------------------------------
def coco_gt(n: int, per_image: int, seed: int = 0) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """A COCO keypoint GT dict with ``n`` person instances, and their (N, 17, 2) keypoints and (N,) image ids."""
    rng = np.random.default_rng(seed)
    k = len(COCO_KEYPOINT_NAMES)
    num_images = -(-n // per_image)
    images = [{"id": i + 1, "file_name": f"{i + 1:06d}.jpg", "width": 640, "height": 480} for i in range(num_images)]
    wh = rng.uniform(40, 300, size=(n, 2))  # (N, 2) box sizes: small, medium and large instances
    xy0 = rng.uniform(0, 300, size=(n, 2))  # (N, 2) box corners
    kpts = xy0[:, None] + rng.uniform(0.1, 0.9, size=(n, k, 2)) * wh[:, None]  # (N, K, 2) px
    labelled = rng.random((n, k)) > 0.2  # (N, K)
    image_id = np.arange(n) // per_image + 1  # (N,)
    anns = []
    for i in range(n):
        v = np.where(labelled[i], 2, 0)
        flat = np.concatenate([np.where(labelled[i, :, None], kpts[i], 0.0), v[:, None]], axis=1).reshape(-1)
        anns.append({"id": i + 1, "image_id": int(image_id[i]), "category_id": 1, "iscrowd": 0,
                     "bbox": [*xy0[i].tolist(), *wh[i].tolist()], "area": float(wh[i, 0] * wh[i, 1] * 0.6),
                     "num_keypoints": int(labelled[i].sum()), "keypoints": flat.tolist()})
    category = {"id": 1, "name": "person", "supercategory": "person", "keypoints": list(COCO_KEYPOINT_NAMES),
                "skeleton": [[a + 1, b + 1] for a, b in COCO_SKELETON]}
    return {"images": images, "annotations": anns, "categories": [category]}, kpts, image_id


def oks_run(metric: OKSAP, kpts: np.ndarray, image_id: np.ndarray, batch: int, seed: int = 1) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    pred = torch.from_numpy(kpts + rng.normal(scale=4.0, size=kpts.shape))  # (N, K, 2) px
    scores = torch.from_numpy(rng.uniform(0.0, 1.0, size=kpts.shape[:2]))  # (N, K)
    ids = torch.from_numpy(image_id)
    metric.reset()
    for s in range(0, len(pred), batch):
        metric.update(pred[s:s + batch], scores[s:s + batch], ids[s:s + batch])
    return {k: float(v) for k, v in metric.compute().items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000, help="predictions / GT instances")
    parser.add_argument("--per-image", type=int, default=2, help="GT instances per image (OKS AP)")
    parser.add_argument("--batch", type=int, default=64, help="update() batch size")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default="runs/benchmarks/eval_speed.json", help="where the JSON goes ('' = not written)")
    parser.add_argument("--quick", action="store_true", help="500 predictions, one repeat")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.repeats = 500, 1
    torch.set_num_threads(args.threads)

    d = pckh_data(args.n)
    t_pckh_metric, pckh = median_time(lambda: pckh_metric_run(d, args.batch), args.repeats)
    t_pckh_table, _ = median_time(lambda: pckh_table(**d), args.repeats)

    gt, kpts, image_id = coco_gt(args.n, args.per_image)
    t_build, metric = median_time(lambda: OKSAP(gt), 1)
    t_oks, oks = median_time(lambda: oks_run(metric, kpts, image_id, args.batch), args.repeats)

    rows = [
        ("PCKh, `PCKh` metric (update in batches + compute)", t_pckh_metric, f"PCKh@0.5 {pckh['Mean']:.1f}"),
        ("PCKh, `pckh_table` (arrays)", t_pckh_table, ""),
        ("OKS AP, `OKSAP` (update in batches + compute: rescoring, OKS-NMS, COCOeval)", t_oks, f"AP {oks['AP']:.3f}"),
        ("OKS AP, building `OKSAP` (parse the GT; once per run)", t_build, ""),
    ]
    print(f"Scoring {args.n} predictions on {torch.get_num_threads()} thread(s), median of {args.repeats}\n")
    print("| what | wall s | CPU s | result |")
    print("|---|---:|---:|---|")
    for name, (wall, cpu), res in rows:
        print(f"| {name} | {wall:.3f} | {cpu:.3f} | {res} |")
    result = {"setting": {k: v for k, v in vars(args).items() if k != "json"},
              "wall_cpu_s": {"pckh_metric": t_pckh_metric, "pckh_table": t_pckh_table, "oks_ap": t_oks,
                             "oks_build": t_build}, "pckh": pckh, "oks": oks}
    write_json(args.json, result)


if __name__ == "__main__":
    main()
