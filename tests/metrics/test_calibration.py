"""Calibration: maps, scores, cross-fitting and the diagram, against hand-computed tiny inputs."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import scipy.optimize
import torch
from PIL import Image
from torchmetrics.functional.classification import binary_auroc, binary_calibration_error

from kpreg.metrics.calibration import (
    CALIBRATORS,
    CalibrationError,
    Calibrator,
    Isotonic,
    PerKeypoint,
    Platt,
    auroc,
    brier_score,
    calibrate_keypoints,
    calibration_features,
    calibration_scores,
    choose_method,
    correct_keypoints,
    cross_fit,
    expected_calibration_error,
    fold_assignment,
    gather_calibration_set,
    interpolate,
    log_loss,
    logistic_objective,
    make_calibrator,
    platt_targets,
    reliability_bins,
    reliability_diagram,
)


def _synthetic(n: int, seed: int = 0, slope: float = 2.0, bias: float = 4.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw scores in (0, 0.2) (a SimCC-like scale) and labels drawn from P(correct) = σ(slope·log s + bias):
    far from the identity, exactly a Platt map in log s."""
    g = torch.Generator().manual_seed(seed)
    s = 0.2 * torch.rand(n, generator=g, dtype=torch.float64)  # (N,)
    y = torch.rand(n, generator=g, dtype=torch.float64) < torch.sigmoid(slope * s.log() + bias)  # (N,)
    return s, y


# ------------------------------------------------------------------------------------------------------------
# Scores
# ------------------------------------------------------------------------------------------------------------
def test_ece_four_samples_by_hand() -> None:
    # confidence 0.1, 0.4, 0.8, 0.9; correct 0, 1, 1, 0; 2 equal-width bins [0, .5) and [.5, 1]:
    #   bin 0: {0.1, 0.4} mean confidence 0.25, accuracy 1/2 → |0.5 − 0.25| = 0.25
    #   bin 1: {0.8, 0.9} mean confidence 0.85, accuracy 1/2 → |0.5 − 0.85| = 0.35
    #   ECE = 2/4 · 0.25 + 2/4 · 0.35 = 0.30 (equal mass gives the same two bins here)
    conf, correct = [0.1, 0.4, 0.8, 0.9], [0, 1, 1, 0]
    assert expected_calibration_error(conf, correct, n_bins=2) == pytest.approx(0.30)
    assert expected_calibration_error(conf, correct, n_bins=2, strategy="mass") == pytest.approx(0.30)
    # confidence 0.1, 0.2, 0.3, 0.9; correct 0, 0, 1, 1:
    #   width: {0.1, 0.2, 0.3} conf 0.2 acc 1/3 → 2/15; {0.9} acc 1 → 0.1; ECE = 3/4 · 2/15 + 1/4 · 0.1 = 0.125
    #   mass:  {0.1, 0.2} conf 0.15 acc 0 → 0.15; {0.3, 0.9} conf 0.6 acc 1 → 0.4; ECE = (0.15 + 0.4) / 2 = 0.275
    conf, correct = [0.1, 0.2, 0.3, 0.9], [0, 0, 1, 1]
    assert expected_calibration_error(conf, correct, n_bins=2) == pytest.approx(0.125)
    assert expected_calibration_error(conf, correct, n_bins=2, strategy="mass") == pytest.approx(0.275)


def test_bin_edges_belong_to_the_upper_bin_and_one_to_the_last() -> None:
    bins = reliability_bins([0.0, 0.5, 1.0], [1, 1, 1], n_bins=2)
    assert bins.count.tolist() == [1.0, 2.0]  # 0.5 opens bin 1; 1.0 closes it
    # 0.95 and 1.0 share the last of 15 bins: mean confidence 0.975, accuracy 1/2 → ECE 0.475 (torchmetrics puts
    # 1.0 in a 16th bin of its own and reports 0.525).
    assert expected_calibration_error([0.95, 1.0], [1, 0]) == pytest.approx(0.475)


def test_equal_mass_bins_never_split_ties() -> None:
    # A constant confidence is one bin whatever the order of the labels: ECE = |share correct − confidence|.
    for labels in ([1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 1, 0]):
        assert expected_calibration_error([0.7] * 4, labels, n_bins=2, strategy="mass") == pytest.approx(0.2)
    bins = reliability_bins([0.1, 0.1, 0.1, 0.9], [0, 0, 0, 1], n_bins=2, strategy="mass")
    assert bins.count.tolist() == [3.0, 1.0]


def test_ece_agrees_with_torchmetrics_when_no_confidence_is_exactly_one() -> None:
    g = torch.Generator().manual_seed(1)
    p = torch.rand(500, generator=g, dtype=torch.float64) * 0.999  # (N,) includes exact bin edges below
    p[:15] = torch.arange(15, dtype=torch.float64) / 15.0
    y = torch.rand(500, generator=g) < p
    ours = expected_calibration_error(p, y, n_bins=15)
    theirs = float(binary_calibration_error(p, y.long(), n_bins=15, norm="l1"))
    assert ours == pytest.approx(theirs, abs=1e-12)


def test_brier_and_log_loss_by_hand() -> None:
    conf, correct = [0.1, 0.4, 0.8, 0.9], [0, 1, 1, 0]
    # (0.1² + 0.6² + 0.2² + 0.9²) / 4 = (0.01 + 0.36 + 0.04 + 0.81) / 4
    assert brier_score(conf, correct) == pytest.approx(1.22 / 4)
    # −(log 0.9 + log 0.4 + log 0.8 + log 0.1) / 4
    assert log_loss(conf, correct) == pytest.approx(-(math.log(0.9) + math.log(0.4) + math.log(0.8) + math.log(0.1)) / 4)
    # clipping: one sure mistake costs −log(1e-6), not infinity
    assert log_loss([1.0], [0]) == pytest.approx(-math.log(1e-6))


def test_auroc_counts_ties_as_half() -> None:
    # correct {0.5, 0.9, 0.3} vs wrong {0.2, 0.5}: pairs 0.5>0.2 (1), 0.5=0.5 (½), 0.9>0.2 (1), 0.9>0.5 (1),
    # 0.3>0.2 (1), 0.3<0.5 (0) → 4.5 / 6 = 0.75
    assert auroc([0.2, 0.5, 0.5, 0.9, 0.3], [0, 1, 0, 1, 1]) == pytest.approx(0.75)
    assert auroc([1.0] * 5, [0, 1, 0, 1, 1]) == 0.5  # a constant confidence carries no information
    assert auroc([3.0, 1.0, 2.0], [1, 0, 0]) == 1.0  # any real score (raw ones too)
    assert math.isnan(auroc([0.2, 0.3], [1, 1]))  # one class: undefined (torchmetrics returns 0 and warns)


def test_auroc_agrees_with_torchmetrics_on_tied_scores() -> None:
    g = torch.Generator().manual_seed(2)
    p = (torch.rand(400, generator=g, dtype=torch.float64) * 10).round() / 10  # (N,) 11 values: many ties
    y = torch.rand(400, generator=g, dtype=torch.float64) < p
    assert auroc(p, y) == pytest.approx(float(binary_auroc(p, y.long())), abs=1e-6)


def test_calibration_scores_share_above_half() -> None:
    out = calibration_scores([0.1, 0.4, 0.8, 0.9, 0.5], [0, 1, 1, 0, 1])
    assert out["precision_above_half"] == pytest.approx(0.5)  # 0.8 right, 0.9 wrong; 0.5 is not above
    assert out["share_above_half"] == pytest.approx(0.4)
    assert out["accuracy"] == pytest.approx(0.6)
    assert out["count"] == 5
    assert math.isnan(calibration_scores([0.1, 0.2], [1, 0])["precision_above_half"])  # none above 0.5


# ------------------------------------------------------------------------------------------------------------
# Platt
# ------------------------------------------------------------------------------------------------------------
def test_logistic_objective_gradient_and_hessian_match_autograd() -> None:
    g = torch.Generator().manual_seed(3)
    a = torch.randn(7, 3, generator=g, dtype=torch.float64)  # (N, D)
    t = torch.rand(7, generator=g, dtype=torch.float64)  # (N,) soft targets
    theta = torch.randn(3, generator=g, dtype=torch.float64)  # (D,)
    f, grad, hess = logistic_objective(a, t, theta)
    p = torch.sigmoid(a @ theta)
    assert float(f) == pytest.approx(float(-(t * p.log() + (1 - t) * (1 - p).log()).sum()))

    def obj(th: torch.Tensor) -> torch.Tensor:
        return logistic_objective(a, t, th)[0]

    torch.testing.assert_close(grad, torch.autograd.functional.jacobian(obj, theta))
    torch.testing.assert_close(hess, torch.autograd.functional.hessian(obj, theta))
    assert torch.autograd.gradcheck(obj, (theta.clone().requires_grad_(),))


def test_platt_closed_form_on_a_binary_feature() -> None:
    # Score x ∈ {0, 1}, 4 samples each; 1 of 4 correct at x = 0, 3 of 4 at x = 1. With one parameter per level
    # the MLE reproduces the observed rates: σ(b) = 1/4, σ(w + b) = 3/4 → b = −ln 3, w = 2 ln 3.
    x = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1], dtype=torch.float64)
    y = torch.tensor([1, 0, 0, 0, 1, 1, 1, 0])
    plain = Platt(transform="identity", prior_correction=False).fit(x, y)
    assert plain.bias == pytest.approx(-math.log(3), abs=1e-9)
    assert plain.weights == pytest.approx([2 * math.log(3)], abs=1e-9)
    # Platt's targets: t₊ = (4 + 1)/(4 + 2) = 5/6, t₋ = 1/(4 + 2) = 1/6; mean target at x = 0:
    # (5/6 + 3/6)/4 = 1/3 → b = −ln 2; at x = 1: (15/6 + 1/6)/4 = 2/3 → w + b = ln 2.
    smooth = Platt(transform="identity").fit(x, y)
    assert smooth.bias == pytest.approx(-math.log(2), abs=1e-9)
    assert smooth.weights == pytest.approx([2 * math.log(2)], abs=1e-9)
    torch.testing.assert_close(smooth(torch.tensor([0.0, 1.0])), torch.tensor([1 / 3, 2 / 3], dtype=torch.float64))


def test_platt_targets_by_hand() -> None:
    t = platt_targets(torch.tensor([True, True, False]))
    torch.testing.assert_close(t, torch.tensor([3 / 4, 3 / 4, 1 / 3], dtype=torch.float64))


def test_platt_with_spread_is_the_scipy_optimum() -> None:
    g = torch.Generator().manual_seed(4)
    n = 400
    s = 0.05 + 0.9 * torch.rand(n, generator=g, dtype=torch.float64)  # (N,) raw score
    log_var = torch.randn(n, generator=g, dtype=torch.float64)  # (N,) log spread
    y = torch.rand(n, generator=g, dtype=torch.float64) < torch.sigmoid(1.5 * s.log() - 0.8 * log_var + 0.5)
    feats = torch.stack((s, log_var), dim=1)  # (N, 2)
    cal = Platt(transform="logit", use_spread=True).fit(feats, y)
    design = torch.cat((torch.ones(n, 1, dtype=torch.float64), cal.design(feats)), dim=1)  # (N, 3) 1, T(s), log var
    targets = platt_targets(y)
    theta = torch.tensor([cal.bias, *cal.weights], dtype=torch.float64)
    _, grad, _ = logistic_objective(design, targets, theta)
    assert float(grad.abs().max()) < 1e-6  # the gradient vanishes at the fit …

    def fun(th: np.ndarray) -> tuple[float, np.ndarray]:
        f, gr, _ = logistic_objective(design, targets, torch.from_numpy(th))
        return float(f), gr.numpy()

    ref = scipy.optimize.minimize(fun, np.zeros(3), jac=True, method="BFGS", options={"gtol": 1e-10})
    np.testing.assert_allclose(theta.numpy(), ref.x, atol=1e-5)  # … and it is the optimum scipy finds
    assert cal.weights[1] < 0  # a wider spread means a lower probability of being right


def test_platt_design_transforms() -> None:
    x = torch.tensor([[0.5, 2.0], [0.0, -1.0]], dtype=torch.float64)
    torch.testing.assert_close(Platt("log").design(x)[:, 0], torch.tensor([math.log(0.5), math.log(1e-6)],
                                                                          dtype=torch.float64))
    torch.testing.assert_close(Platt("logit").design(x)[:, 0], torch.tensor([0.0, math.log(1e-6 / (1 - 1e-6))],
                                                                            dtype=torch.float64))
    torch.testing.assert_close(Platt("identity", use_spread=True).design(x), x)
    with pytest.raises(CalibrationError, match="column 1"):
        Platt(use_spread=True).fit(torch.tensor([0.1, 0.2]), torch.tensor([0, 1]))
    with pytest.raises(CalibrationError, match="transform"):
        Platt("sqrt")  # type: ignore[arg-type]


def test_platt_separable_scores() -> None:
    x = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1])
    with pytest.raises(CalibrationError, match="prior_correction=True"):
        Platt(prior_correction=False).fit(x, y)
    p = Platt().fit(x, y)(x)  # Platt's targets keep it finite
    assert torch.isfinite(p).all() and bool((p[2:] > 0.5).all()) and bool((p[:2] < 0.5).all())


# ------------------------------------------------------------------------------------------------------------
# Isotonic
# ------------------------------------------------------------------------------------------------------------
def test_isotonic_pool_adjacent_violators_by_hand() -> None:
    # y = 1, 0, 1, 0, 1 at x = 1 … 5. PAV: (1, 0) violate → pool to ½, ½; 1 is fine; then 0 < 1 → pool (1, 0)
    # to ½; the blocks ½ | ½ do not violate; 1 is fine → ½, ½, ½, ½, 1. Kept points: the ends of each block,
    # (1, ½), (4, ½), (5, 1); between them the map is linear, beyond them constant.
    cal = Isotonic(prior_correction=False).fit(torch.tensor([1.0, 2, 3, 4, 5]), torch.tensor([1, 0, 1, 0, 1]))
    assert cal.xs == [1.0, 4.0, 5.0] and cal.ys == [0.5, 0.5, 1.0]
    torch.testing.assert_close(cal(torch.tensor([0.0, 2.5, 4.5, 9.0])),
                               torch.tensor([0.5, 0.5, 0.75, 1.0], dtype=torch.float64))
    # Ties are pooled first, weighted by count: x = 1, 1, 2, 3 with y = 1, 0, 0, 1 → x = 1: ½ (weight 2),
    # x = 2: 0, x = 3: 1. PAV pools ½ and 0 → (2·½ + 0)/3 = ⅓ → ⅓, ⅓, 1.
    cal = Isotonic(prior_correction=False).fit(torch.tensor([1.0, 1, 2, 3]), torch.tensor([1, 0, 0, 1]))
    assert cal.xs == [1.0, 2.0, 3.0] and cal.ys == pytest.approx([1 / 3, 1 / 3, 1.0])


def test_isotonic_is_non_decreasing_and_within_targets() -> None:
    s, y = _synthetic(300, seed=5)
    cal = Isotonic().fit(s, y)
    grid = torch.linspace(-0.1, 0.3, 1001, dtype=torch.float64)
    p = cal(grid)
    assert bool((p[1:] >= p[:-1]).all())
    t = platt_targets(y)
    # never exactly 0 or 1: within the soft targets (to rounding: a block's mean of equal targets)
    assert float(p.min()) >= float(t.min()) - 1e-12 and float(p.max()) <= float(t.max()) + 1e-12


def test_interpolate_matches_numpy() -> None:
    xs = torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64)
    ys = torch.tensor([0.2, 0.4, 1.0], dtype=torch.float64)
    x = torch.tensor([-1.0, 0.0, 0.5, 1.0, 2.0, 3.0, 7.0], dtype=torch.float64)
    np.testing.assert_allclose(interpolate(x, xs, ys).numpy(), np.interp(x.numpy(), xs.numpy(), ys.numpy()))
    torch.testing.assert_close(interpolate(x, xs[:1], ys[:1]), torch.full((7,), 0.2, dtype=torch.float64))


# ------------------------------------------------------------------------------------------------------------
# Every map: degenerate inputs, state round trip
# ------------------------------------------------------------------------------------------------------------
FITTED = [name for name in CALIBRATORS if name != "identity"]


def _features_and_index(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    n = len(scores)
    log_spread = torch.linspace(-1.0, 1.0, n, dtype=torch.float64)  # (N,) any finite column 1
    return torch.stack((scores, log_spread), dim=1), torch.arange(n) % 3  # (N, 2), (N,)


@pytest.mark.parametrize("name", FITTED)
def test_degenerate_inputs_give_constant_laplace_maps(name: str) -> None:
    n = 10
    varied, idx = _features_and_index(torch.linspace(0.1, 0.9, n, dtype=torch.float64))
    probe, probe_idx = _features_and_index(torch.tensor([0.0, 0.5, 1.0, 5.0], dtype=torch.float64))
    probe_idx = probe_idx % 3
    # all correct / all wrong: the rule of succession, (N + 1)/(N + 2) and 1/(N + 2), whatever the score
    for label, expected in ((True, 11 / 12), (False, 1 / 12)):
        cal = make_calibrator(name).fit(varied, torch.full((n,), label), idx)
        torch.testing.assert_close(cal(probe, probe_idx), torch.full((4,), expected, dtype=torch.float64))
    # a constant score (the FC head's 1.0), 3 of 10 correct: the smoothed rate (3·4/5 + 7·1/9)/10
    const, _ = _features_and_index(torch.ones(n, dtype=torch.float64))
    if "spread" in name:
        const[:, 1] = 0.0  # the spread too is constant: nothing to learn from
    y = torch.tensor([1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    cal = make_calibrator(name).fit(const, y, idx)
    expected = (3 * 4 / 5 + 7 / 9) / 10
    torch.testing.assert_close(cal(probe, probe_idx), torch.full((4,), expected, dtype=torch.float64))


def test_identity_clamps() -> None:
    torch.testing.assert_close(make_calibrator("identity").fit([1.0, 1.0], [1, 0])(torch.tensor([-0.5, 0.3, 1.7])),
                               torch.tensor([0.0, 0.3, 1.0], dtype=torch.float64))


@pytest.mark.parametrize("name", list(CALIBRATORS))
def test_state_round_trip_through_weights_only_load(name: str) -> None:
    s, y = _synthetic(600, seed=6)
    feats, idx = _features_and_index(s)
    cal = make_calibrator(name).fit(feats, y, idx)
    buf = io.BytesIO()
    torch.save({"calibration": cal.state_dict()}, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)["calibration"]
    assert json.loads(json.dumps(state)) == state  # plain values only
    again = Calibrator.from_state(state)
    assert type(again) is type(cal)
    torch.testing.assert_close(again(feats, idx), cal(feats, idx), rtol=0, atol=0)


def test_from_state_errors_name_the_problem() -> None:
    with pytest.raises(CalibrationError, match="unknown method 'magic'"):
        Calibrator.from_state({"method": "magic", "format": 1})
    with pytest.raises(CalibrationError, match="format 7"):
        Calibrator.from_state({"method": "platt", "format": 7})
    state = Platt().fit([0.1, 0.5, 0.9], [0, 1, 1]).state_dict()
    del state["bias"]
    with pytest.raises(CalibrationError, match="missing key 'bias'"):
        Calibrator.from_state(state)
    with pytest.raises(CalibrationError, match="not fitted"):
        Platt()(torch.tensor([0.5]))


# ------------------------------------------------------------------------------------------------------------
# Per keypoint
# ------------------------------------------------------------------------------------------------------------
def test_per_keypoint_maps_and_shared_fallback() -> None:
    s0, y0 = _synthetic(300, seed=7, bias=5.0)  # keypoint 0: plenty of samples, often right
    s1, y1 = _synthetic(5, seed=8, bias=1.0)  # keypoint 1: too few → the shared map
    feats = torch.cat((s0, s1))
    correct = torch.cat((y0, y1))
    idx = torch.cat((torch.zeros(300, dtype=torch.long), torch.ones(5, dtype=torch.long)))
    cal = PerKeypoint("platt", min_samples=100, num_keypoints=3).fit(feats, correct, idx)
    assert cal.maps[0] is not None and cal.maps[1] is None and cal.maps[2] is None  # keypoint 2: no samples
    shared = Platt().fit(feats, correct)
    own = Platt().fit(s0, y0)
    probe = torch.tensor([0.01, 0.05, 0.1, 0.15], dtype=torch.float64)
    torch.testing.assert_close(cal(probe, torch.zeros(4, dtype=torch.long)), own(probe))
    torch.testing.assert_close(cal(probe, torch.ones(4, dtype=torch.long)), shared(probe))
    torch.testing.assert_close(cal(probe, torch.full((4,), 2)), shared(probe))
    with pytest.raises(CalibrationError, match="keypoint_index is required"):
        cal(probe)
    with pytest.raises(CalibrationError, match="keypoint_index 3 ≥ num_keypoints 3"):
        cal(probe, torch.full((4,), 3))
    with pytest.raises(CalibrationError, match="base must be one of"):
        PerKeypoint("per_keypoint_platt")


def test_calibrate_keypoints_maps_a_batch_per_keypoint() -> None:
    s, y = _synthetic(400, seed=9)
    idx = torch.arange(400) % 2
    cal = PerKeypoint("isotonic", min_samples=10).fit(s, y, idx)
    conf = torch.tensor([[0.05, 0.05], [0.15, 0.01], [0.10, 0.10]], dtype=torch.float32)  # (B, K)
    out = calibrate_keypoints(cal, conf)
    assert out.shape == (3, 2) and out.dtype == torch.float32
    expected = cal(conf.reshape(-1).double(), torch.tensor([0, 1, 0, 1, 0, 1])).reshape(3, 2).float()
    torch.testing.assert_close(out, expected)
    assert out[0, 0] != out[0, 1]  # same raw score, different keypoints, different maps


# ------------------------------------------------------------------------------------------------------------
# Cross-fitting and the choice of method
# ------------------------------------------------------------------------------------------------------------
class _Spy(Calibrator):
    """Remembers the sample ids (feature column 1) it was fitted on and refuses to score any of them."""

    method = "spy"  # not registered with from_state: it never needs to be stored

    def __init__(self) -> None:
        self.seen: set[int] = set()

    def _fit(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor | None) -> None:
        self.seen = set(x[:, 1].long().tolist())

    def _predict(self, x: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
        ids = set(x[:, 1].long().tolist())
        assert not ids & self.seen, f"scored samples it was fitted on: {sorted(ids & self.seen)[:5]}"
        return torch.full((len(x),), len(self.seen) / 100.0, dtype=torch.float64, device=x.device)

    def _state(self) -> dict[str, object]:
        return {}


def test_cross_fit_never_scores_a_sample_with_its_own_fold() -> None:
    n = 60
    ids = torch.arange(n, dtype=torch.float64)
    feats = torch.stack((torch.rand(n, dtype=torch.float64), ids), dim=1)  # (N, 2): score, sample id
    groups = torch.arange(n) // 4  # 15 images of 4 keypoints
    out = cross_fit(_Spy, feats, torch.arange(n) % 2 == 0, folds=5, seed=0, groups=groups)
    assert torch.isfinite(out.probability).all()  # every sample scored once, by a map blind to it
    for f in range(5):  # a map fitted on the other 4 folds = 48 samples (3 of the 15 images per fold)
        assert bool((out.probability[out.fold == f] == 0.48).all())
    for g in range(15):
        assert len(out.fold[groups == g].unique()) == 1  # one image, one fold
    assert out.final.seen == set(range(n))  # the stored map saw everything
    again = cross_fit(_Spy, feats, torch.arange(n) % 2 == 0, folds=5, seed=0, groups=groups)
    assert torch.equal(again.fold, out.fold)  # deterministic


def test_cross_fit_per_keypoint_scores_a_keypoint_missing_from_the_training_folds() -> None:
    s, y = _synthetic(200, seed=14)
    idx = torch.zeros(200, dtype=torch.long)
    idx[7] = 4  # keypoint 4 appears once: its fold's training data never saw it → the shared map scores it
    out = cross_fit("per_keypoint_platt", s, y, keypoint_index=idx)
    assert torch.isfinite(out.probability).all()
    assert out.final.num_keypoints == 5 and out.final.maps[4] is None
    shared_of_fold = Platt().fit(s[out.fold != out.fold[7]], y[out.fold != out.fold[7]])
    torch.testing.assert_close(out.probability[7:8], shared_of_fold(s[7:8]))


def test_fold_assignment_balanced_and_errors() -> None:
    fold = fold_assignment(23, folds=5, seed=3)
    assert sorted(torch.bincount(fold).tolist()) == [4, 4, 5, 5, 5]  # 23 = 5 + 5 + 5 + 4 + 4
    assert not torch.equal(fold, fold_assignment(23, folds=5, seed=4))
    with pytest.raises(CalibrationError, match="3 groups cannot fill 5 folds"):
        fold_assignment(9, folds=5, groups=torch.arange(9) // 3)
    with pytest.raises(CalibrationError, match="folds must be ≥ 2"):
        fold_assignment(9, folds=1)


def test_choose_method_by_cross_fitted_log_loss() -> None:
    s, y = _synthetic(1500, seed=10)
    choice = choose_method(s, y, candidates=("identity", "platt", "isotonic"))
    assert set(choice.table) == {"identity", "platt", "isotonic"}
    assert choice.name == min(choice.table, key=lambda k: choice.table[k]["log_loss"])
    assert choice.name == "platt"  # the truth is a Platt map in log s; the raw score is far too low
    assert choice.table["identity"]["ece"] > 0.1 > choice.table["platt"]["ece"]
    assert choice.calibrator.state_dict()["method"] == "platt"
    assert "**platt**" in choice.markdown()


def test_choose_method_finds_keypoints_that_differ() -> None:
    # Two keypoints with the same raw scores but different odds of being right: only a per-keypoint map
    # can be calibrated for both.
    s0, y0 = _synthetic(600, seed=11, bias=6.0)
    s1, y1 = _synthetic(600, seed=12, bias=2.0)
    feats, correct = torch.cat((s0, s1)), torch.cat((y0, y1))
    idx = torch.cat((torch.zeros(600, dtype=torch.long), torch.ones(600, dtype=torch.long)))
    choice = choose_method(feats, correct, candidates=("platt", "per_keypoint_platt"), keypoint_index=idx)
    assert choice.name == "per_keypoint_platt"
    assert choice.table["per_keypoint_platt"]["brier"] < choice.table["platt"]["brier"]


# ------------------------------------------------------------------------------------------------------------
# Labels, features, inputs
# ------------------------------------------------------------------------------------------------------------
def test_correct_is_the_datasets_threshold_of_the_samples_scale_by_hand() -> None:
    # norm_length 10 px, threshold 0.5: correct ⇔ error ≤ 5 px (PCKh@0.5 of a 10 px head); a 3-4-5 triangle is
    # exactly on the bound and counts, as in PCKh's "≤".
    gt = torch.zeros(2, 3, 2)
    pred = torch.tensor([[[3.0, 4.0], [0.0, 5.0001], [-4.9, 0.0]],
                         [[3.0, 4.0], [0.0, 5.0001], [-4.9, 0.0]]])
    norm = torch.tensor([10.0, 5.0])  # sample 1: a 5 px scale → 2.5 px bound
    assert correct_keypoints(pred, gt, norm, 0.5).tolist() == [[True, False, True], [False, False, False]]
    # 0.1 of a 60 px box: 6 px
    assert correct_keypoints(pred[:1], gt[:1], torch.tensor([60.0]), 0.1).tolist() == [[True, True, True]]
    with pytest.raises(ValueError, match="threshold must be positive"):
        correct_keypoints(pred, gt, norm, 0.0)


def test_gather_calibration_set_keeps_visible_keypoints() -> None:
    conf = torch.tensor([[0.9, 0.1, 0.5], [0.3, 0.7, 0.2]])  # (B, K)
    correct = torch.tensor([[1, 0, 1], [0, 1, 0]])
    visible = torch.tensor([[1, 0, 1], [1, 1, 0]])
    spread = torch.tensor([[1.0, 2.0, 0.0], [4.0, 8.0, 16.0]])
    out = gather_calibration_set(conf, correct, visible, spread, sample_ids=torch.tensor([7, 9]))
    assert out.features[:, 0].tolist() == pytest.approx([0.9, 0.5, 0.3, 0.7])
    assert out.features[:, 1].tolist() == pytest.approx([0.0, math.log(1e-6), math.log(4.0), math.log(8.0)])
    assert out.correct.tolist() == [True, True, False, True]
    assert out.keypoint_index.tolist() == [0, 2, 0, 1]
    assert out.groups.tolist() == [7, 7, 9, 9]
    with pytest.raises(CalibrationError, match="visibility is"):
        gather_calibration_set(conf, correct, visible[:, :2])


def test_bad_inputs_raise_one_clear_error() -> None:
    with pytest.raises(CalibrationError, match="row 1 is not finite"):
        Platt().fit([0.1, math.nan, 0.3], [0, 1, 1])
    with pytest.raises(CalibrationError, match=r"correct\[2\] = 2 is not 0/1"):
        Platt().fit([0.1, 0.2, 0.3], [0, 1, 2])
    with pytest.raises(CalibrationError, match=r"shape \(2,\), expected \(3,\)"):
        Isotonic().fit([0.1, 0.2, 0.3], [0, 1])
    with pytest.raises(CalibrationError, match="no samples"):
        Platt().fit(torch.zeros(0), torch.zeros(0, dtype=torch.bool))
    with pytest.raises(CalibrationError, match=r"confidence\[1\] = 1.5 is not a probability"):
        brier_score([0.5, 1.5], [1, 0])
    with pytest.raises(CalibrationError, match="unknown calibration method 'bayes'"):
        make_calibrator("bayes")
    with pytest.raises(CalibrationError, match="spread has 1 values"):
        calibration_features([0.1, 0.2], [1.0])
    assert issubclass(CalibrationError, ValueError)  # the CLI turns it into one line and exit code 2


def test_reliability_diagram_writes_a_png(tmp_path) -> None:  # noqa: ANN001 (pytest fixture)
    s, y = _synthetic(500, seed=13)
    fitted = cross_fit("platt", s, y).probability
    path = reliability_diagram({"raw": (s, y), "platt": (fitted, y), "constant": (torch.ones(500), y)},
                               tmp_path / "sub" / "reliability.png", title="synthetic", dpi=50)
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.size == (round(3 * 3.4 * 50), round((3.9 + 0.4) * 50))  # 3 panels in a row, a title strip
    with pytest.raises(CalibrationError, match="no results"):
        reliability_diagram({}, tmp_path / "empty.png")
