"""A fitted calibrator as a torch module: what training, evaluation, prediction and export apply.

``ConfidenceMap(calibrator, K)`` turns any fitted map (identity, Platt, isotonic, per keypoint with its shared
fallback) into per-keypoint tables, so that applying it is a few tensor operations with no Python branching on
values and no ``searchsorted``:

* ``logistic`` (Platt): ``p = σ(b_k + w_k · T(score) + v_k · log max(spread, 1e-6))``, tables ``b, w, v`` (K,);
* ``ramps`` (isotonic): the piecewise-linear map as a sum of clamped ramps,
  ``p = y0_k + Σ_i rise_ki · clamp((score − start_ki) / width_ki, 0, 1)``, which equals the interpolation of
  ``Isotonic`` (constant outside the fitted range) and is plain arithmetic for ONNX; keypoints with fewer knots
  are padded with flat ramps;
* ``identity``: the raw score clamped to [0, 1].

Buffers are not persistent: a ``KeypointModule``'s ``state_dict`` stays the network's; the map itself travels as
plain data in ``checkpoint["kpreg"]["calibration"]`` (:class:`CalibrationRecord`). It computes in float32 (float64
for float64 inputs) on the input's device, and returns the confidence's dtype.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from kpreg.metrics.calibration.features import MIN_LOG_SPREAD_PX2, CalibrationError
from kpreg.metrics.calibration.maps import Calibrator, Identity, Isotonic, PerKeypoint, Platt
from kpreg.metrics.calibration.record import CalibrationRecord


def _per_keypoint(calibrator: Calibrator, num_keypoints: int) -> list[Calibrator]:
    """The map of each keypoint: its own where a per-keypoint map has one, else the shared one."""
    if isinstance(calibrator, PerKeypoint):
        if calibrator.shared is None or calibrator.num_keypoints is None:
            raise CalibrationError("ConfidenceMap: the per-keypoint calibrator is not fitted")
        if calibrator.num_keypoints != num_keypoints:
            raise CalibrationError(f"ConfidenceMap: the calibration was fitted on {calibrator.num_keypoints} "
                                   f"keypoints, the model has {num_keypoints}")
        return [m if m is not None else calibrator.shared for m in calibrator.maps]
    return [calibrator] * num_keypoints


class ConfidenceMap(nn.Module):
    """(B, K) raw confidence [and (B, K) spread, input px²] → (B, K) P(correct); see the module docstring.

    Args:
        calibrator: a fitted :class:`Calibrator`.
        num_keypoints: K of the model it is applied to.
    """

    def __init__(self, calibrator: Calibrator, num_keypoints: int) -> None:
        super().__init__()
        maps = _per_keypoint(calibrator, num_keypoints)
        first = maps[0]
        self.num_keypoints = num_keypoints
        self.transform = "identity"
        self.floor = 0.0
        self.uses_spread = False
        if all(isinstance(m, Identity) for m in maps):
            self.kind = "identity"
        elif all(isinstance(m, Platt) for m in maps):
            self.kind = "logistic"
            platts: list[Platt] = maps  # type: ignore[assignment]
            settings = {(m.transform, m.floor, m.use_spread) for m in platts}
            if len(settings) != 1:
                raise CalibrationError(f"ConfidenceMap: per-keypoint Platt maps differ in their settings {settings}")
            if any(m.weights is None or m.bias is None for m in platts):
                raise CalibrationError("ConfidenceMap: a Platt map is not fitted")
            self.transform, self.floor, self.uses_spread = first.transform, first.floor, first.use_spread  # type: ignore[union-attr]
            w = torch.tensor([m.weights + [0.0] * (2 - len(m.weights)) for m in platts], dtype=torch.float64)  # (K, 2)
            self.register_buffer("bias", torch.tensor([m.bias for m in platts], dtype=torch.float64),
                                 persistent=False)  # (K,)
            self.register_buffer("weight", w, persistent=False)  # (K, 2): score, log spread
        elif all(isinstance(m, Isotonic) for m in maps):
            self.kind = "ramps"
            isos: list[Isotonic] = maps  # type: ignore[assignment]
            if any(m.xs is None or m.ys is None for m in isos):
                raise CalibrationError("ConfidenceMap: an isotonic map is not fitted")
            segments = max(max(len(m.xs) - 1 for m in isos), 1)  # type: ignore[arg-type]
            start = torch.zeros(num_keypoints, segments, dtype=torch.float64)  # (K, S)
            width = torch.ones(num_keypoints, segments, dtype=torch.float64)  # (K, S) flat padding: any width > 0
            rise = torch.zeros(num_keypoints, segments, dtype=torch.float64)  # (K, S)
            base = torch.zeros(num_keypoints, dtype=torch.float64)  # (K,)
            for k, m in enumerate(isos):
                xs = torch.tensor(m.xs, dtype=torch.float64)  # (M,) strictly increasing
                ys = torch.tensor(m.ys, dtype=torch.float64)  # (M,)
                n = len(xs) - 1
                base[k] = ys[0]
                start[k, :n], width[k, :n], rise[k, :n] = xs[:-1], xs[1:] - xs[:-1], ys[1:] - ys[:-1]
            for name, t in (("start", start), ("width", width), ("rise", rise), ("base", base)):
                self.register_buffer(name, t, persistent=False)
        else:
            kinds = sorted({type(m).__name__ for m in maps})
            raise CalibrationError(f"ConfidenceMap: cannot apply a mixture of maps {kinds}")

    @classmethod
    def from_state(cls, state: Mapping[str, Any], num_keypoints: int) -> ConfidenceMap:
        """From a :meth:`Calibrator.state_dict` (``record["map"]`` of a checkpoint's calibration)."""
        return cls(Calibrator.from_state(state), num_keypoints)

    def forward(self, confidence: torch.Tensor, spread: torch.Tensor | None = None) -> torch.Tensor:
        """confidence (B, K) raw; spread (B, K) input px², needed when ``uses_spread`` → (B, K) in [0, 1]."""
        dtype = torch.promote_types(confidence.dtype, torch.float32)
        s = confidence.to(dtype)  # (B, K)
        if self.kind == "identity":
            return s.clamp(0.0, 1.0).to(confidence.dtype)
        if self.kind == "logistic":
            if self.transform == "log":
                z = s.clamp(min=self.floor).log()  # (B, K)
            elif self.transform == "logit":
                q = s.clamp(self.floor, 1.0 - self.floor)
                z = q.log() - (1.0 - q).log()  # logit, written with ops every exporter knows
            else:
                z = s
            w = self.weight.to(s.device, dtype)  # (K, 2)
            eta = self.bias.to(s.device, dtype) + w[:, 0] * z  # (B, K)
            if self.uses_spread:
                if spread is None:
                    raise CalibrationError("ConfidenceMap: this map uses the head's spread; pass spread")
                eta = eta + w[:, 1] * spread.to(s.device, dtype).clamp(min=MIN_LOG_SPREAD_PX2).log()
            return torch.sigmoid(eta).to(confidence.dtype)
        start = self.start.to(s.device, dtype)  # (K, S)
        width = self.width.to(s.device, dtype)
        rise = self.rise.to(s.device, dtype)
        ramps = ((s[..., None] - start) / width).clamp(0.0, 1.0)  # (B, K, S)
        return (self.base.to(s.device, dtype) + (ramps * rise).sum(-1)).to(confidence.dtype)  # (B, K)

    def extra_repr(self) -> str:
        return (f"kind={self.kind}, transform={self.transform}, uses_spread={self.uses_spread}, "
                f"num_keypoints={self.num_keypoints}")


def confidence_map_of(checkpoint: Mapping[str, Any]) -> ConfidenceMap | None:
    """The calibration a kpreg checkpoint carries (``checkpoint["kpreg"]["calibration"]``), ready to apply to its
    model's (B, K) confidences; None when it has none (its confidences are then the head's raw scores). The
    predictor and the exporter call this: ``KeypointNetwork(..., confidence_map=confidence_map_of(checkpoint))``."""
    kpreg = checkpoint.get("kpreg") or {}
    saved = kpreg.get("calibration")
    if saved is None:
        return None
    record = CalibrationRecord.from_dict(saved, "checkpoint calibration")
    return ConfidenceMap.from_state(record.map, int(kpreg["num_keypoints"]))
