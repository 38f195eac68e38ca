"""Dataset metrics behind one contract (``kpreg.metrics.contract``): pixel error and PCK on every dataset, PCKh
where the sample's scale is a head size (MPII, synthetic), pycocotools' OKS AP where there is a COCO ground truth.
A dataset declares the families it is scored with (``kpreg.formats.layout.MetricFamily``); ``build_metrics`` turns
its ``EvaluationSpec`` into the metrics, and ``declared_columns`` / ``default_primary`` / ``higher_is_better`` answer
from the families alone, before any data is read."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kpreg.formats.layout import EvaluationSpec
from kpreg.metrics.contract import Column, DatasetMetric, KeypointMetrics
from kpreg.metrics.contract import higher_is_better as _higher_is_better


def family_classes(families: Sequence[str] | None = None) -> tuple[type[DatasetMetric], ...]:
    """The metric class of each family, in the order given (None: every family)."""
    from kpreg.metrics.oks import OKSAP
    from kpreg.metrics.pckh import PCKh
    from kpreg.metrics.pixel import PixelMetrics

    by_family: dict[str, type[DatasetMetric]] = {cls.family: cls for cls in (PCKh, OKSAP, PixelMetrics)}
    if families is None:
        return tuple(by_family.values())
    unknown = [f for f in families if f not in by_family]
    if unknown:
        raise ValueError(f"unknown metric families {unknown}; known: {list(by_family)}")
    return tuple(by_family[f] for f in families)


def _classes() -> tuple[type[DatasetMetric], ...]:
    from kpreg.metrics.calibration.scores import ConfidenceScores

    # ConfidenceScores is not a dataset metric (it scores confidences, not coordinates) but declares its keys'
    # directions the same way.
    return (*family_classes(), ConfidenceScores)  # type: ignore[return-value]


def higher_is_better(key: str, families: Sequence[str] | None = None) -> bool | None:
    """Whether a larger value of metric ``key`` is better (None: no metric reports it); with ``families``, only
    the metrics of those families count."""
    return _higher_is_better(key, _classes() if families is None else family_classes(families))


def default_primary(families: Sequence[str]) -> str:
    """The key that selects the best checkpoint of a dataset scored with ``families``: the first family's."""
    return family_classes(families[:1])[0].default_primary


def declared_columns(families: Sequence[str], keypoint_names: Sequence[str] = ()) -> list[Column]:
    """The summary columns the metrics of ``families`` report with their default options."""
    return [c for cls in family_classes(families) for c in cls.declared_columns(keypoint_names)]


def declared_keypoint_columns(families: Sequence[str]) -> list[Column]:
    """The per-keypoint columns the metrics of ``families`` report with their default options."""
    return [c for cls in family_classes(families) for c in cls.declared_keypoint_columns()]


def build_metrics(spec: EvaluationSpec, **metric_kwargs: Any) -> KeypointMetrics:
    """The metrics of a dataset, one per family it declares, in its order (the first one's table leads, and its
    primary key is the default). ``metric_kwargs`` go to every torchmetrics ``Metric`` (e.g.
    ``sync_on_compute=False``)."""
    from kpreg.metrics.oks import OKSAP
    from kpreg.metrics.pckh import PCKh
    from kpreg.metrics.pixel import PixelMetrics

    names = spec.layout.names
    metrics: list[DatasetMetric] = []
    for cls in family_classes(spec.families):
        if cls is PCKh:
            metrics.append(PCKh(joint_names=names, groups=spec.pckh_groups, mean_joints=spec.pckh_mean_joints,
                                **metric_kwargs))
        elif cls is OKSAP:
            metrics.append(OKSAP(spec.coco_gt, sigmas=list(spec.layout.sigmas) or None, **spec.oks, **metric_kwargs))
        else:
            metrics.append(PixelMetrics(names, **metric_kwargs))
    return KeypointMetrics(metrics, primary=spec.primary, title=spec.title)


__all__ = ["build_metrics", "higher_is_better", "default_primary", "declared_columns", "declared_keypoint_columns",
           "family_classes",
           "KeypointMetrics", "DatasetMetric"]
