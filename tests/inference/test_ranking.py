import numpy as np
import pytest

from kpreg.inference.ranking import (
    PosePCA,
    RankingError,
    combine,
    disagreement,
    dlc_jump,
    dlc_uncertain,
    p_wrong,
    pca_residual,
    percentile_rank,
    pick_diverse,
    temporal_jump,
)


def test_p_wrong_by_hand() -> None:
    conf = np.array([[1.0, 1.0], [0.5, 0.5], [0.9, np.nan]])
    np.testing.assert_allclose(p_wrong(conf), [0.0, 0.75, 1.0])


def test_disagreement_and_jump_in_animal_sizes() -> None:
    var = np.array([[4.0, 16.0], [0.0, 1.0]])  # px² per coordinate
    np.testing.assert_allclose(disagreement(var, size=2.0), [2.0, 0.5])
    raw = np.array([[[0, 0], [3, 4]], [[1, 1], [np.nan, np.nan]]], dtype=float)
    track = np.zeros((2, 2, 2))
    np.testing.assert_allclose(temporal_jump(raw, track, size=10.0), [0.5, np.sqrt(2) / 10])


def test_pose_pca_residual_is_zero_on_the_span_and_the_off_span_distance_elsewhere() -> None:
    rng = np.random.default_rng(0)
    # Labelled poses: 3 keypoints on a line through the centre whose length varies (one direction of variation).
    lengths = rng.uniform(5, 15, 40)
    base = np.array([[-1.0, 0.0], [0.0, 0.0], [1.0, 0.0]])
    poses = lengths[:, None, None] * base + rng.uniform(0, 100, (40, 1, 2))  # shifted anywhere
    labelled = np.ones((40, 3), dtype=bool)
    labelled[0, 1] = False  # an incomplete pose is not used
    pca = PosePCA(poses, labelled)
    assert pca.components.shape == (1, 6)
    on = 7.0 * base + 50.0
    off = on.copy()
    off[1, 1] += 3.0  # the middle keypoint moves 3 px off the line
    res = pca.residual(np.stack([on, off]))
    assert res[0] == pytest.approx(0.0, abs=1e-9)
    # centred: the mean moves by 1 px in y, so the keypoints are off by (-1, 2, -1) px in y: mean 4/3
    assert res[1] == pytest.approx(4.0 / 3.0, rel=1e-9)
    np.testing.assert_allclose(pca_residual(np.stack([off]), pca, size=2.0), [2.0 / 3.0])
    with pytest.raises(RankingError, match="at least 3 labelled frames"):
        PosePCA(poses[:2], labelled[:2])


def test_percentile_ranks_and_their_mean() -> None:
    np.testing.assert_allclose(percentile_rank(np.array([3.0, 1.0, 2.0, 2.0, np.nan])), [1.0, 0.25, 0.625, 0.625, 0.0])
    both = combine({"a": np.array([0.0, 1.0, 2.0]), "b": np.array([2.0, 1.0, 0.0])})
    np.testing.assert_allclose(both, [0.5, 0.5, 0.5])
    with pytest.raises(RankingError, match="different lengths"):
        combine({"a": np.zeros(3), "b": np.zeros(4)})


def test_pick_diverse_takes_the_best_of_each_pose_cluster() -> None:
    # Two kinds of pose; the 6 highest scores all belong to kind A, which a plain top-2 would pick twice.
    t = 20
    poses = np.zeros((t, 2, 2))
    poses[:, 1, 0] = 10.0  # kind A: a horizontal pair
    kind_b = np.arange(t) % 4 == 3
    poses[kind_b, 1] = [0.0, 10.0]  # kind B: vertical
    score = np.linspace(0.0, 1.0, t)
    score[kind_b] *= 0.5
    top = np.argsort(-score)[:2]
    assert not kind_b[top].any()
    picks = pick_diverse(score, poses, n=2, size=10.0, pool=4, min_gap=0)
    assert len(picks) == 2 and kind_b[picks].sum() == 1  # one of each kind
    assert picks[0] == np.argmax(score)  # best first
    excluded = np.zeros(t, dtype=bool)
    excluded[np.argmax(score)] = True
    assert np.argmax(score) not in pick_diverse(score, poses, 2, 10.0, pool=4, exclude=excluded, min_gap=0)
    assert len(pick_diverse(score[:1], poses[:1], 3, 10.0)) == 1  # fewer candidates than asked: all


def test_deeplabcut_heuristics_by_hand() -> None:
    xy = np.array([[[0, 0], [0, 0]], [[3, 4], [0, 1]], [[3, 4], [np.nan, np.nan]]], dtype=float)
    np.testing.assert_allclose(dlc_jump(xy), [0.0, 5.0, 0.0])
    np.testing.assert_allclose(dlc_uncertain(np.array([[0.5, 0.001], [0.9, 0.8]])), [0.001, 0.8])


def test_pick_diverse_keeps_picks_apart_in_time() -> None:
    t = 100
    score = np.zeros(t)
    score[40:50] = np.linspace(1.0, 2.0, 10)  # one bad moment of ten frames
    score[80] = 0.5
    poses = np.random.default_rng(0).normal(size=(t, 3, 2))  # every frame a different pose
    picks = pick_diverse(score, poses, n=3, size=1.0, pool=5, min_gap=10)
    assert picks[0] == 49 and 80 in picks and len(picks) == 3
    assert all(abs(int(a) - int(b)) >= 10 for a in picks for b in picks if a != b)


def test_the_fill_keeps_the_gap_too() -> None:
    score = np.zeros(100)
    score[40:50] = np.linspace(1.0, 2.0, 10)
    poses = np.random.default_rng(0).normal(size=(100, 3, 2))
    picks = pick_diverse(score, poses, n=3, size=1.0, pool=5, min_gap=10)
    assert picks[0] == 49 and all(abs(int(a) - int(b)) >= 10 for a in picks for b in picks if a != b)
