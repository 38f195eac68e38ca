"""COCO OKS AP fed straight from a batch's ``meta`` (the sample contract), for COCO-format datamodules.

``KeypointModule`` calls ``metric.update(pred, scores, meta)``; ``OKSAP`` wants the image id, the box
score and the NMS area explicitly. This adapter reads them from ``meta`` (``image_id``, ``box_score``,
``area``), which ``COCODataModule`` puts into every val / test sample.
"""

from __future__ import annotations

from typing import Any

import torch

from kpreg.metrics.oks import OKSAP


class BatchOKSAP(OKSAP):
    """``update(pred, scores, meta)``: pred (B, K, 2) x,y original pixels, scores (B, K) confidences."""

    def update(self, pred: torch.Tensor, scores: torch.Tensor, meta: dict[str, Any]) -> None:  # type: ignore[override]
        super().update(pred, scores, meta["image_id"], meta.get("box_score"), meta.get("area"))
