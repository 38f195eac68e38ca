"""ConfidenceMap (any fitted calibrator as tensor arithmetic), CalibrationRecord and ConfidenceScores."""

from __future__ import annotations

import io
import json
import math

import pytest
import torch

from kpreg.metrics import higher_is_better
from kpreg.metrics.calibration import (
    CALIBRATORS,
    CalibrationError,
    CalibrationRecord,
    ConfidenceMap,
    ConfidenceScores,
    Isotonic,
    PerKeypoint,
    Platt,
    calibrate_keypoints,
    data_fingerprint,
    make_calibrator,
)

K = 3


def _fit_data(n: int = 900, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Raw scores (N,), spreads (N,) px², keypoint index (N,), labels: P(correct) grows with the score, falls with
    the spread, and differs per keypoint."""
    g = torch.Generator().manual_seed(seed)
    s = 0.2 * torch.rand(n, generator=g, dtype=torch.float64)
    spread = torch.exp(3 * torch.rand(n, generator=g, dtype=torch.float64))
    idx = torch.arange(n) % K
    p = torch.sigmoid(2.0 * s.log() - 0.5 * spread.log() + 4.0 + idx.double())
    return s, spread, idx, torch.rand(n, generator=g, dtype=torch.float64) < p


@pytest.mark.parametrize("name", list(CALIBRATORS))
def test_confidence_map_equals_the_calibrator(name: str) -> None:
    s, spread, idx, y = _fit_data()
    feats = torch.stack((s, spread.clamp(min=1e-6).log()), dim=1)  # (N, 2)
    cal = make_calibrator(name).fit(feats, y, idx)
    g = torch.Generator().manual_seed(1)
    conf = torch.cat((torch.tensor([[-0.1, 0.0, 1.5]]), 0.25 * torch.rand(7, K, generator=g))).double()  # (8, K)
    probe_spread = torch.exp(4 * torch.rand(8, K, generator=g, dtype=torch.float64) - 0.5)  # (8, K)
    cmap = ConfidenceMap(cal, K)
    want = calibrate_keypoints(cal, conf, probe_spread)  # (8, K) float64, the reference implementation
    torch.testing.assert_close(cmap(conf, probe_spread), want, rtol=0, atol=1e-12)
    got32 = cmap(conf.float(), probe_spread.float())  # what exported graphs compute
    assert got32.dtype == torch.float32
    torch.testing.assert_close(got32, want.float(), rtol=0, atol=2e-6)
    assert cmap.uses_spread == ("spread" in name)
    assert cmap.state_dict() == {}  # nothing persistent: a module's state_dict stays the network's


def test_ramps_and_logistic_by_hand() -> None:
    iso = Isotonic()
    iso.xs, iso.ys = [0.1, 0.5, 0.9], [0.2, 0.6, 0.8]
    cmap = ConfidenceMap(iso, 1)
    assert cmap.kind == "ramps"
    # constant outside [0.1, 0.9]; linear between the knots: 0.3 → 0.4, 0.7 → 0.7
    out = cmap(torch.tensor([[0.0], [0.1], [0.3], [0.5], [0.7], [0.9], [2.0]], dtype=torch.float64))
    torch.testing.assert_close(out[:, 0], torch.tensor([0.2, 0.2, 0.4, 0.6, 0.7, 0.8, 0.8], dtype=torch.float64))
    platt = Platt(use_spread=True)
    platt.weights, platt.bias = [2.0, -0.5], 1.0
    cmap = ConfidenceMap(platt, 1)
    # σ(1 + 2 log 0.1 − 0.5 log 4)
    want = 1.0 / (1.0 + math.exp(-(1.0 + 2.0 * math.log(0.1) - 0.5 * math.log(4.0))))
    assert float(cmap(torch.tensor([[0.1]], dtype=torch.float64), torch.tensor([[4.0]]))) == pytest.approx(want)
    with pytest.raises(CalibrationError, match="pass spread"):
        cmap(torch.tensor([[0.1]]))


def test_per_keypoint_tables_and_mismatched_keypoints() -> None:
    s, spread, idx, y = _fit_data()
    idx = idx.clone()
    idx[idx == 2] = 1  # keypoint 2 never seen: the shared map scores it
    cal = PerKeypoint("isotonic", min_samples=100, num_keypoints=K).fit(s, y, idx)
    cmap = ConfidenceMap(cal, K)
    probe = torch.tensor([[0.05, 0.05, 0.05]], dtype=torch.float64)
    out = cmap(probe)
    assert out[0, 2] == cal.shared(torch.tensor([0.05], dtype=torch.float64))[0]
    assert out[0, 0] != out[0, 1]
    with pytest.raises(CalibrationError, match="fitted on 3 keypoints, the model has 5"):
        ConfidenceMap(cal, 5)


def test_record_round_trip_and_fingerprint() -> None:
    s, _, idx, y = _fit_data(200)
    cal = make_calibrator("platt").fit(s, y, idx)
    record = CalibrationRecord(method="platt", map=cal.state_dict(),
                               correct={"scale": "box", "threshold": 0.1, "definition": "error ≤ 0.1 × box"},
                               uses_spread=False, flip_test=True,
                               fitted_on={"split": "validation", "samples": 10, "keypoints": 200, "fingerprint": "ab"},
                               scores={"ECE": 0.01}, table={"platt": {"log_loss": 0.3}})
    buf = io.BytesIO()
    torch.save({"kpreg": {"calibration": record.to_dict()}}, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)["kpreg"]["calibration"]
    assert json.loads(json.dumps(loaded)) == loaded
    again = CalibrationRecord.from_dict(loaded)
    assert again == record
    torch.testing.assert_close(again.calibrator()(s), cal(s), rtol=0, atol=0)
    with pytest.raises(CalibrationError, match="record format 9"):
        CalibrationRecord.from_dict({**loaded, "format": 9})
    with pytest.raises(CalibrationError, match="missing key 'map'"):
        CalibrationRecord.from_dict({k: v for k, v in loaded.items() if k != "map"})
    # The fingerprint depends on the data, not on the order it came in.
    index = torch.tensor([2, 0, 1])
    gt = torch.rand(3, 4, 2, dtype=torch.float64)
    vis = torch.ones(3, 4, dtype=torch.bool)
    order = torch.tensor([1, 2, 0])
    assert data_fingerprint(index, gt, vis) == data_fingerprint(index[order], gt[order], vis[order])
    assert data_fingerprint(index, gt, vis) != data_fingerprint(index, gt + 0.5, vis)


def test_confidence_scores_by_hand_and_contract() -> None:
    raw = torch.tensor([0.1, 0.4, 0.8, 1.7])  # 1.7: a heatmap peak above 1, clamped to 1 as "raw"
    calibrated = torch.tensor([0.2, 0.3, 0.9, 0.6])
    correct = torch.tensor([0, 0, 1, 1])
    out = ConfidenceScores.compute(raw, calibrated, correct)
    assert out["Correct"] == 50.0 and out["Keypoints"] == 4.0
    # Brier raw: (0.1² + 0.4² + 0.2² + 0²) / 4 = 0.21 / 4; after: (0.04 + 0.09 + 0.01 + 0.16) / 4 = 0.075
    assert out["Brier_raw"] == pytest.approx(0.21 / 4)
    assert out["Brier"] == pytest.approx(0.075)
    assert out["AUROC_raw"] == 1.0 and out["AUROC"] == 1.0
    # above 0.5: raw {0.8, 1.0} both correct; after {0.9, 0.6} both correct → 100 %
    assert out["CorrectAbove0.5_raw"] == 100.0 and out["CorrectAbove0.5"] == 100.0
    assert out["ShareAbove0.5_raw"] == 50.0
    only_raw = ConfidenceScores.compute(raw, None, correct)
    assert "ECE" not in only_raw and "ECE_raw" in only_raw
    for column in ConfidenceScores.columns:  # every key declares its direction through the contract
        assert higher_is_better(column.key) == column.higher_is_better
    assert higher_is_better("ECE") is False and higher_is_better("AUROC") is True
