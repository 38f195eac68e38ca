"""SimCC's case: COCO instance scores and OKS AP with detected boxes, before and after calibration, on a
generated COCO-format fixture.

SimCC with the shipped COCO settings (split ratio 2, σ = 6 bins, KL loss, 256 × 192 input) at its loss optimum
outputs its target distribution (the minimiser of a KL to a target is the target; of the mean KL over several
targets, their mixture), whose peak is 1 / (√(2π) · 6) = 0.066 < 0.2: every keypoint confidence is below the
instance score's threshold, so every instance scores 0 and the detector's ranking and OKS-NMS's order are lost.

The fixture (seeded): images of 640 × 480 with 1–3 people, 17 COCO keypoints inside each person's box, all
labelled, OKS area 0.53 × box area. Detections of one image:

* a good box per person (box score U(0.6, 1)): the network sees each keypoint at the truth plus N(0, 2 px) (input
  pixels), except that with probability 0.2 a keypoint is occluded and the network is torn between the truth (40 %)
  and a place 40 px away (60 %);
* with probability 0.5 a duplicate of a person's box, shifted by up to 10 % (box score 0.8 × the good one's), the
  keypoints at N(0, 6 px);
* 1–2 false positives (box score U(0.5, 0.95)), boxes on the background: every keypoint torn between two places.

Calibration is fitted the way ``kpreg`` fits it at validation (``choose_method``: cross-fitted log-loss; correct =
error ≤ 0.1 × the box's larger side) on a validation fixture of other images (another seed), from ground-truth
boxes as kpreg's COCO validation crops them, then applied to the test fixture's detections.

    python benchmarks/fair_coco_score.py [--images 300] [--json out.json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere without installing kpreg
from _report import write_json  # noqa: E402

from kpreg.coords import pixels_to_cells  # noqa: E402
from kpreg.formats.coco import (  # noqa: E402
    COCO_KEYPOINT_NAMES,
    COCO_SIGMAS,
    COCO_SKELETON,
    load_coco,
    prepare_gt,
    results_to_coco,
)
from kpreg.formats.oks import instance_score, make_results  # noqa: E402
from kpreg.heads import HeadSpec, SimCCHead  # noqa: E402
from kpreg.metrics.calibration import ConfidenceMap, choose_method, gather_calibration_set  # noqa: E402
from kpreg.metrics.correct import correct_keypoints  # noqa: E402
from kpreg.metrics.oks import evaluate_keypoints  # noqa: E402
from kpreg.ops import normalized_gaussian_1d  # noqa: E402

INPUT = (256, 192)  # (H, W), COCO's top-down input
K = len(COCO_KEYPOINT_NAMES)
IMAGE = (480, 640)  # (H, W)
PADDING = 1.25  # the box is widened to the input's aspect ratio, then padded (kpreg's top-down crop)


def make_head() -> SimCCHead:
    head = SimCCHead(split_ratio=2.0, sigma=6.0, loss="kl")
    head.build(HeadSpec(32, 32, K, INPUT, tuple(float(s) for s in COCO_SIGMAS)))
    return head.eval()


def crop_of(box: np.ndarray) -> tuple[np.ndarray, float]:
    """Box (x, y, w, h) original px → (crop origin (2,), input px per original px)."""
    x, y, w, h = box
    aspect = INPUT[1] / INPUT[0]
    w, h = (h * aspect, h) if w < h * aspect else (w, w / aspect)
    w, h = w * PADDING, h * PADDING
    centre = np.array([box[0] + box[2] / 2.0, box[1] + box[3] / 2.0])
    return centre - np.array([w, h]) / 2.0, INPUT[1] / w


def loss_optimum(head: SimCCHead, places: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """SimCC's raw output at the optimum of its mean KL over target places (B, K, P, 2) x,y input px, weighted
    (B, K, P): per axis the logs of the mixture of the targets' normalised Gaussians → (B, K, nx + ny)."""
    bins = pixels_to_cells(places, 1.0 / head.split_ratio)  # (B, K, P, 2) sub-bin positions
    logs = []
    for axis, n in enumerate(head.num_bins):
        targets = normalized_gaussian_1d(bins[..., axis].clamp(0.0, n - 1.0), n, head.sigma)  # (B, K, P, n)
        logs.append((weights[..., None] * targets).sum(-2).clamp(min=1e-30).log())  # (B, K, n)
    return torch.cat(logs, dim=-1)


def fixture(images: int, seed: int) -> dict[str, Any]:
    """Ground truth (a COCO dict) and detections with what the network sees in each."""
    rng = np.random.default_rng(seed)
    gt_images, annotations, detections = [], [], []
    for image_id in range(1, images + 1):
        gt_images.append({"id": image_id, "width": IMAGE[1], "height": IMAGE[0], "file_name": f"{image_id}.jpg"})
        for _ in range(rng.integers(1, 4)):
            w = rng.uniform(80, 200)
            h = min(w * rng.uniform(1.5, 2.5), IMAGE[0] - 2)
            box = np.array([rng.uniform(0, IMAGE[1] - w), rng.uniform(0, IMAGE[0] - h), w, h])
            kp = box[:2] + rng.uniform(0.05, 0.95, (K, 2)) * box[2:]  # (K, 2) original px
            ann_id = len(annotations) + 1
            annotations.append({"id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                                "bbox": box.tolist(), "area": float(0.53 * w * h), "num_keypoints": K,
                                "keypoints": np.concatenate([kp, np.full((K, 1), 2.0)], 1).reshape(-1).tolist()})
            score = rng.uniform(0.6, 1.0)
            detections.append({"image_id": image_id, "box": box, "score": score, "truth": kp, "kind": "good"})
            if rng.random() < 0.5:
                shifted = box + np.concatenate([rng.uniform(-0.1, 0.1, 2) * box[2:], [0.0, 0.0]])
                detections.append({"image_id": image_id, "box": shifted, "score": 0.8 * score, "truth": kp,
                                   "kind": "duplicate"})
        for _ in range(rng.integers(1, 3)):
            w = rng.uniform(80, 200)
            h = min(w * rng.uniform(1.5, 2.5), IMAGE[0] - 2)
            box = np.array([rng.uniform(0, IMAGE[1] - w), rng.uniform(0, IMAGE[0] - h), w, h])
            detections.append({"image_id": image_id, "box": box, "score": rng.uniform(0.5, 0.95), "truth": None,
                                "kind": "false positive"})
    gt = prepare_gt({"images": gt_images, "annotations": annotations,
                     "categories": [{"id": 1, "name": "person", "keypoints": list(COCO_KEYPOINT_NAMES),
                                     "skeleton": [[a + 1, b + 1] for a, b in COCO_SKELETON]}]})
    return {"gt": gt, "detections": detections, "rng": rng}


def predict(head: SimCCHead, detections: list[dict[str, Any]], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Decode the loss-optimal output of every detection: coords (N, K, 2) original px, raw confidence and
    spread (N, K)."""
    places, weights, origins, zooms = [], [], [], []
    for det in detections:
        origin, zoom = crop_of(det["box"])
        origins.append(origin)
        zooms.append(zoom)
        if det["truth"] is None:  # background: every keypoint torn between two places of the crop
            p = rng.uniform(0.1, 0.9, (K, 2, 2)) * np.array([INPUT[1], INPUT[0]])
            w = np.full((K, 2), 0.5)
        else:
            seen = (det["truth"] - origin) * zoom  # (K, 2) input px
            noise = 2.0 if det["kind"] == "good" else 6.0
            first = seen + rng.normal(0.0, noise, (K, 2))
            angle = rng.uniform(0, 2 * np.pi, K)
            second = seen + 40.0 * np.stack([np.cos(angle), np.sin(angle)], 1)  # (K, 2) a wrong place
            occluded = rng.random(K) < 0.2
            p = np.stack([first, second], 1)  # (K, 2, 2)
            w = np.where(occluded[:, None], [0.4, 0.6], [1.0, 0.0])  # (K, 2)
        places.append(p)
        weights.append(w)
    raw = loss_optimum(head, torch.tensor(np.array(places)), torch.tensor(np.array(weights)))
    with torch.no_grad():
        coords, confidence = head.decode(raw)  # (N, K, 2) input px, (N, K)
        spread = head.spread(raw)  # (N, K) input px²
    zoom = np.array(zooms)[:, None, None]
    orig = coords.double().numpy() / zoom + np.array(origins)[:, None, :]  # (N, K, 2) original px
    return {"coords": orig, "confidence": confidence.double().numpy(), "spread": spread.double().numpy()}


def fit_calibration(head: SimCCHead, images: int, seed: int) -> tuple[ConfidenceMap, str]:
    """Fitted on a validation fixture's ground-truth boxes (kpreg's COCO validation), correct = error ≤ 0.1 × the
    box's larger side."""
    val = fixture(images, seed)
    boxes = [{"image_id": a["image_id"], "box": np.array(a["bbox"]), "score": 1.0,
              "truth": np.array(a["keypoints"]).reshape(K, 3)[:, :2], "kind": "good"} for a in val["gt"]["annotations"]]
    pred = predict(head, boxes, val["rng"])
    truth = torch.tensor(np.array([b["truth"] for b in boxes]))  # (N, K, 2)
    size = torch.tensor([max(b["box"][2], b["box"][3]) for b in boxes], dtype=torch.float64)  # (N,)
    correct = correct_keypoints(torch.tensor(pred["coords"]), truth, size, 0.1)  # (N, K)
    cset = gather_calibration_set(torch.tensor(pred["confidence"]), correct, torch.ones_like(correct),
                                  torch.tensor(pred["spread"]), sample_ids=torch.tensor([b["image_id"] for b in boxes]))
    choice = choose_method(cset.features, cset.correct, keypoint_index=cset.keypoint_index, groups=cset.groups)
    return ConfidenceMap(choice.calibrator, K), choice.name


def coco_ap(test: dict[str, Any], pred: dict[str, np.ndarray], confidence: np.ndarray) -> dict[str, float]:
    dets = test["detections"]
    area = np.array([(d["box"][2] * PADDING) * (d["box"][3] * PADDING) for d in dets])  # the NMS area: padded box
    results = make_results(pred["coords"], confidence, np.array([d["image_id"] for d in dets]),
                           np.array([d["score"] for d in dets]), area, 1, COCO_SIGMAS)
    coco_gt = load_coco(test["gt"])
    return evaluate_keypoints(coco_gt, results_to_coco(results, coco_gt), COCO_SIGMAS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=300, help="images in the test and in the validation fixture")
    parser.add_argument("--quick", action="store_true", help="40 images (a smoke run)")
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args()
    images = 40 if args.quick else args.images
    torch.manual_seed(0)
    head = make_head()
    calibrate, method = fit_calibration(head, images, seed=1)
    test = fixture(images, seed=2)
    pred = predict(head, test["detections"], test["rng"])
    with torch.no_grad():
        calibrated = calibrate(torch.tensor(pred["confidence"]), torch.tensor(pred["spread"])).numpy()  # (N, K)
    kinds = np.array([d["kind"] for d in test["detections"]])
    box = np.array([d["score"] for d in test["detections"]])
    rows: dict[str, dict[str, float]] = {}
    for label, conf in (("raw", pred["confidence"]), ("calibrated", calibrated)):
        score = instance_score(conf, box)  # (N,)
        ap = coco_ap(test, pred, conf)
        rows[label] = {"keypoint confidence, good boxes": float(conf[kinds == "good"].mean()),
                       "instance score / box score, good boxes": float((score / box)[kinds == "good"].mean()),
                       "instance score / box score, duplicates": float((score / box)[kinds == "duplicate"].mean()),
                       "instance score / box score, false positives":
                           float((score / box)[kinds == "false positive"].mean()),
                       "AP": ap["AP"], "AP50": ap["AP50"], "AP75": ap["AP75"], "AR": ap["AR"]}
    box_only = coco_ap(test, pred, np.ones_like(calibrated))  # instance score = box score: the detector alone
    counts = {k: int((kinds == k).sum()) for k in ("good", "duplicate", "false positive")}
    print(f"SimCC (split ratio 2, σ = 6 bins, KL) at its loss optimum; {images} test images, detections "
          f"{counts}; calibration: {method}, fitted on {images} other images' ground-truth boxes\n")
    print("| | raw confidence | calibrated |\n|:---|---:|---:|")
    for key in rows["raw"]:
        print(f"| {key} | {rows['raw'][key]:.3f} | {rows['calibrated'][key]:.3f} |")
    print(f"\nfor reference, instance score = box score (keypoints ignored): AP {box_only['AP']:.3f}, "
          f"AP50 {box_only['AP50']:.3f}, AR {box_only['AR']:.3f}")
    write_json(args.json, {"images": images, "detections": counts, "method": method, "rows": rows,
                           "box_score_only": box_only})


if __name__ == "__main__":
    main()
