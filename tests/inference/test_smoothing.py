import numpy as np
import pytest

from kpreg.inference.smoothing import (
    CORRECT_FRACTION,
    Q_GRID,
    SmoothingError,
    _forward,
    _process_cov,
    animal_size,
    kalman_smooth,
    median_smooth,
    observation_variance,
    smooth,
)


def _track(x: list[float], conf: list[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One keypoint moving along x (y = 2x): (T, 1, 2) keypoints, (T, 1) confidence."""
    xs = np.asarray(x, dtype=np.float64)
    xy = np.stack([xs, 2 * xs], axis=-1)[:, None, :]
    c = np.ones((len(xs), 1)) if conf is None else np.asarray(conf, dtype=np.float64)[:, None]
    return xy, c


def test_median_by_hand() -> None:
    xy, conf = _track([0, 10, 1, 2, 3])
    out = median_smooth(xy, conf, window=3)
    # windows (padded with nothing): {0, 10}, {0, 10, 1}, {10, 1, 2}, {1, 2, 3}, {2, 3}
    np.testing.assert_allclose(out.keypoints[:, 0, 0], [5, 1, 2, 2, 2.5])
    np.testing.assert_allclose(out.keypoints[:, 0, 1], 2 * np.array([5, 1, 2, 2, 2.5]))
    assert out.observed.all() and out.variance is None


def test_median_skips_unconfident_keypoints_and_fills_long_gaps() -> None:
    xy, conf = _track([0, 1, 2, 99, 99, 99, 99, 7, 8], [1, 1, 1, 0.1, 0.1, 0.1, 0.1, 1, 1])
    out = median_smooth(xy, conf, window=3, min_confidence=0.5)
    assert list(out.observed[:, 0]) == [True] * 3 + [False] * 4 + [True] * 2
    # frame 3's window holds only 2, frame 6's only 7; frames 4, 5 none: interpolated between them
    np.testing.assert_allclose(out.keypoints[:, 0, 0], [0.5, 1, 1.5, 2, 3 + 2 / 3, 5 + 1 / 3, 7, 7.5, 7.5])


def test_median_refuses_a_video_shorter_than_its_window_and_even_windows() -> None:
    xy, conf = _track([0, 1, 2])
    with pytest.raises(SmoothingError, match="3 frame.*window of 5.*at most 3"):
        median_smooth(xy, conf, window=5)
    with pytest.raises(SmoothingError, match="odd"):
        median_smooth(*_track([0, 1, 2, 3, 4]), window=4)


def test_observation_variance_by_hand() -> None:
    size = 100.0
    inlier, outlier = (0.5 * CORRECT_FRACTION * size) ** 2, (0.5 * size) ** 2  # 25, 2500
    conf = np.array([[1.0, 0.0, 0.5, np.nan]])
    np.testing.assert_allclose(observation_variance(conf, size), [[inlier, outlier, 0.5 * (inlier + outlier), outlier]])
    spread = np.array([[100.0, 4.0, 4.0, 4.0]])  # a spread larger than the default inlier variance replaces it
    ens = np.array([[9.0, 0.0, 0.0, 0.0]])
    np.testing.assert_allclose(observation_variance(conf, size, spread, ens)[0, 0], 100.0 + 9.0)


def _dense_smoother(y: np.ndarray, r: np.ndarray, q: float, p0: float) -> np.ndarray:
    """The smoothed positions as the mean of the joint Gaussian of all states, by one dense linear solve."""
    t_len = len(y)
    n = 2 * t_len
    precision = np.zeros((n, n))
    rhs = np.zeros(n)
    f = np.array([[1.0, 1.0], [0.0, 1.0]])
    qinv = np.linalg.inv(_process_cov(np.array([q]))[0])
    first = int(np.argmax(np.isfinite(y)))
    precision[0:2, 0:2] += np.eye(2) / p0  # prior: position = first observation, velocity 0
    rhs[0] += y[first] / p0
    for t in range(1, t_len):  # x_t - F x_{t-1} ~ N(0, Q)
        a = np.zeros((2, n))
        a[:, 2 * t:2 * t + 2] = np.eye(2)
        a[:, 2 * t - 2:2 * t] = -f
        precision += a.T @ qinv @ a
    for t in range(t_len):
        if np.isfinite(y[t]):
            precision[2 * t, 2 * t] += 1.0 / r[t]
            rhs[2 * t] += y[t] / r[t]
    return np.linalg.solve(precision, rhs)[0::2]


def test_kalman_is_the_exact_gaussian_smoother() -> None:
    rng = np.random.default_rng(0)
    x = np.cumsum(rng.normal(0, 2, 12)) + 50
    conf = rng.uniform(0.2, 1.0, 12)
    conf[[3, 4, 9]] = 0.1  # gaps (below min_confidence)
    xy, c = _track(list(x), list(conf))
    size, q = 40.0, 0.7
    out = kalman_smooth(xy, c, min_confidence=0.3, size=size, process_noise=q, outlier_sigma=0.5 * size)
    r = observation_variance(c, size)[:, 0]
    y = np.where(c[:, 0] >= 0.3, x, np.nan)
    want = _dense_smoother(y, r, q, (0.5 * size) ** 2)
    np.testing.assert_allclose(out.keypoints[:, 0, 0], want, rtol=1e-9, atol=1e-9)
    want_y = _dense_smoother(2 * y, r, q, (0.5 * size) ** 2)
    np.testing.assert_allclose(out.keypoints[:, 0, 1], want_y, rtol=1e-9, atol=1e-9)
    assert (out.variance > 0).all() and out.process_noise.tolist() == [q]


def test_kalman_follows_a_constant_velocity_without_lag() -> None:
    x = 3.0 * np.arange(40)  # 3 px per frame, as fast as a limb
    out = kalman_smooth(*_track(list(x)), size=50.0, process_noise=1e-4)
    np.testing.assert_allclose(out.keypoints[:, 0, 0], x, atol=1e-3)


def test_kalman_trusts_confident_keypoints_and_bridges_uncertain_ones() -> None:
    x = np.full(21, 10.0)
    xy, _ = _track(list(x))
    xy[10] += 30.0  # one wrong frame
    pulls = {}
    for p in (1.0, 0.55, 0.2):
        conf = np.ones((21, 1))
        conf[10] = p
        out = kalman_smooth(xy, conf, min_confidence=0.5, size=50.0, process_noise=10.0)
        pulls[p] = float(out.keypoints[10, 0, 0] - 10.0)
        assert out.observed[10, 0] == (p >= 0.5)
    assert pulls[1.0] > 10.0  # a confident observation is followed
    assert 0.0 < pulls[0.55] < 0.25 * pulls[1.0]  # an uncertain one barely moves the track
    assert abs(pulls[0.2]) < 1e-9  # a gap is bridged: the track stays where its neighbours are


def test_kalman_chooses_more_process_noise_for_faster_motion() -> None:
    rng = np.random.default_rng(1)
    t = np.arange(300)
    still = 100 + rng.normal(0, 1, 300)
    fast = 100 + 40 * np.sin(2 * np.pi * t / 20) + rng.normal(0, 1, 300)
    xy = np.stack([np.stack([still, still], -1), np.stack([fast, fast], -1)], axis=1)  # (T, 2, 2)
    out = kalman_smooth(xy, np.ones((300, 2)), size=100.0)
    assert out.process_noise[0] == Q_GRID[0]  # the smallest q for a still keypoint
    assert out.process_noise[1] > 100 * out.process_noise[0]
    for k, truth in ((0, 100.0), (1, 100 + 40 * np.sin(2 * np.pi * t / 20))):
        raw = np.abs(xy[:, k, 0] - truth).mean()
        assert np.abs(out.keypoints[:, k, 0] - truth).mean() < raw  # smoothing removes noise, adds no lag


def test_the_likelihood_is_the_sum_of_innovation_terms() -> None:
    # One observation after the prior: innovation y - m0 = 0 at t = 0, then N(y1 - y0; 0, P_pred + r).
    y = np.array([[2.0], [5.0]])
    r = np.array([[1.0], [1.0]])
    loglik, _ = _forward(y, r, np.array([0.5]), np.array([4.0]), keep=False)
    p_after_first = 4.0 - 4.0**2 / (4.0 + 1.0)  # 0.8; velocity variance stays 4
    s0, s1 = 4.0 + 1.0, p_after_first + 4.0 + 0.5 / 3.0 + 1.0
    want = -0.5 * (np.log(2 * np.pi * s0) + 0.0) - 0.5 * (np.log(2 * np.pi * s1) + 9.0 / s1)
    np.testing.assert_allclose(loglik, [want])


def test_never_seen_keypoints_stay_missing_and_shapes_are_checked() -> None:
    xy = np.zeros((5, 2, 2))
    conf = np.array([[1.0, 0.0]] * 5)
    out = kalman_smooth(xy, conf, size=10.0)
    assert np.isfinite(out.keypoints[:, 0]).all() and np.isnan(out.keypoints[:, 1]).all()
    with pytest.raises(SmoothingError, match="confidence must be"):
        kalman_smooth(xy, conf[:, :1])
    with pytest.raises(SmoothingError, match="no frames"):
        smooth("kalman", np.zeros((0, 2, 2)), np.zeros((0, 2)))
    with pytest.raises(SmoothingError, match="unknown smoother 'gauss'"):
        smooth("gauss", xy, conf)
    assert np.array_equal(smooth("none", xy, conf).keypoints, xy)


def test_animal_size_is_the_median_extent() -> None:
    xy = np.array([[[0, 0], [10, 4]], [[0, 0], [20, 30]], [[5, 5], [np.nan, np.nan]]], dtype=float)
    assert animal_size(xy) == 20.0  # extents 10 and 30; the third frame has one keypoint
