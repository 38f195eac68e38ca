"""Dataset metrics behind one contract (``kpreg.metrics.contract``): pixel error and PCK on every dataset, PCKh
where the sample's scale is a head size (MPII, synthetic), pycocotools' OKS AP where there is a COCO ground truth.
``build_metrics`` turns a dataset's ``EvaluationSpec`` into them."""

from __future__ import annotations

from kpreg.formats.layout import EvaluationSpec
from kpreg.metrics.contract import DatasetMetric, KeypointMetrics
from kpreg.metrics.contract import higher_is_better as _higher_is_better


def _classes() -> tuple[type[DatasetMetric], ...]:
    from kpreg.metrics.calibration.scores import ConfidenceScores
    from kpreg.metrics.oks import OKSAP
    from kpreg.metrics.pckh import PCKh
    from kpreg.metrics.pixel import PixelMetrics

    # ConfidenceScores is not a dataset metric (it scores confidences, not coordinates) but declares its keys'
    # directions the same way.
    return (PCKh, OKSAP, PixelMetrics, ConfidenceScores)  # type: ignore[return-value]


def higher_is_better(key: str) -> bool | None:
    """Whether a larger value of metric ``key`` is better (None: no metric reports it)."""
    return _higher_is_better(key, _classes())


def build_metrics(spec: EvaluationSpec) -> KeypointMetrics:
    """The metrics of a dataset: PCKh first where defined (its table leads), then OKS AP, then pixel error / PCK."""
    from kpreg.metrics.oks import OKSAP
    from kpreg.metrics.pckh import PCKh
    from kpreg.metrics.pixel import PixelMetrics

    names = spec.layout.names
    metrics: list[DatasetMetric] = []
    if spec.scale == "head":
        metrics.append(PCKh(joint_names=names, groups=spec.pckh_groups, mean_joints=spec.pckh_mean_joints))
    if spec.coco_gt is not None:
        metrics.append(OKSAP(spec.coco_gt, sigmas=list(spec.layout.sigmas) or None, **spec.oks))
    metrics.append(PixelMetrics(names))
    return KeypointMetrics(metrics, primary=spec.primary, title=spec.title)


__all__ = ["build_metrics", "higher_is_better", "KeypointMetrics", "DatasetMetric"]
