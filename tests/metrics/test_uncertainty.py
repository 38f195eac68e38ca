"""UncertaintyMetric: Spearman of confidence / spread vs error, PCKh of the most confident half."""

from __future__ import annotations

import pytest
import torch

from kpreg.metrics.uncertainty import UncertaintyMetric, average_ranks, spearman


def _meta(gt: torch.Tensor, visible: torch.Tensor, norm: float = 10.0) -> dict[str, torch.Tensor]:
    return {"keypoints_orig": gt.double(), "visible_orig": visible.bool(),
            "norm_length": torch.full((len(gt),), norm, dtype=torch.float64)}


def test_average_ranks_share_ties() -> None:
    torch.testing.assert_close(average_ranks(torch.tensor([3.0, 1.0, 3.0, 2.0])),
                               torch.tensor([2.5, 0.0, 2.5, 1.0], dtype=torch.float64))


def test_spearman_hand_values() -> None:
    a = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert spearman(a, a**3) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    # ranks (0,1,2,3) vs (1,0,3,2): 1 - 6 Σd² / (n (n² - 1)) = 1 - 6·4 / 60 = 0.6
    assert spearman(a, torch.tensor([2.0, 1.0, 4.0, 3.0])) == pytest.approx(0.6)
    assert spearman(a, torch.ones(4)) == 0.0  # constant: undefined, reported as no information


def test_metric_on_a_hand_made_batch() -> None:
    # 1 sample, 4 visible joints + 1 invisible; errors 1, 2, 6, 8 px with norm 10 → 0.1, 0.2, 0.6, 0.8.
    gt = torch.zeros(1, 5, 2)
    pred = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [6.0, 0.0], [0.0, 8.0], [100.0, 0.0]]])
    visible = torch.tensor([[1, 1, 1, 1, 0]])
    conf = torch.tensor([[0.9, 0.8, 0.3, 0.1, 1.0]])  # perfectly ranked; the invisible joint is ignored
    spread = torch.tensor([[1.0, 2.0, 4.0, 3.0, 0.0]])
    metric = UncertaintyMetric()
    metric.update(pred, conf, _meta(gt, visible), spread)
    out = metric.compute()
    assert out["conf_error_spearman"] == pytest.approx(1.0)
    assert out["spread_error_spearman"] == pytest.approx(0.8)  # one swapped pair: 1 - 6·2/60
    assert out["pck_top50"] == pytest.approx(100.0)  # the two most confident are within 0.5
    assert out["pck_all"] == pytest.approx(50.0)


def test_updates_accumulate_and_reset() -> None:
    metric = UncertaintyMetric()
    gt = torch.zeros(2, 1, 2)
    for err, c in ((1.0, 0.9), (9.0, 0.1)):
        metric.update(torch.tensor([[[err, 0.0]], [[err, 0.0]]]), torch.full((2, 1), c), _meta(gt, torch.ones(2, 1)))
    out = metric.compute()
    assert out["pck_top50"] == 100.0 and out["pck_all"] == 50.0
    assert "spread_error_spearman" not in out  # no spread given
    metric.reset()
    assert metric.update_count == 0
