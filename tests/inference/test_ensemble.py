import numpy as np
import pytest

from kpreg.inference.ensemble import EnsembleError, check_members, combine


def test_mean_confidence_and_variance_by_hand() -> None:
    xy = np.array([[[0.0, 0.0], [10.0, 10.0]], [[2.0, 4.0], [np.nan, np.nan]]])  # (M=2, K=2, 2)
    conf = np.array([[0.2, 0.8], [0.6, 0.4]])
    ens = combine(xy, conf)
    np.testing.assert_allclose(ens.keypoints, [[1.0, 2.0], [10.0, 10.0]])
    np.testing.assert_allclose(ens.confidence, [0.4, 0.6])
    np.testing.assert_allclose(ens.variance, [(1.0 + 4.0) / 2, 0.0])  # var x = 1, var y = 4; one member: 0
    assert ens.members == 2


def test_leading_frame_axes_are_kept() -> None:
    xy = np.random.default_rng(0).normal(size=(3, 5, 4, 2))  # (M, T, K, 2)
    ens = combine(xy, np.ones((3, 5, 4)))
    assert ens.keypoints.shape == (5, 4, 2) and ens.variance.shape == (5, 4)
    with pytest.raises(EnsembleError, match="do not match"):
        combine(xy, np.ones((3, 5, 3)))


def test_members_of_other_keypoints_are_refused() -> None:
    assert check_members(["a.ckpt", "b.ckpt"], [("snout", "tail"), ("snout", "tail")]) == ("snout", "tail")
    with pytest.raises(EnsembleError, match=r"a.ckpt and c.ckpt predict different keypoints \(2 vs 3.*'ear'"):
        check_members(["a.ckpt", "b.ckpt", "c.ckpt"], [("snout", "tail"), ("snout", "tail"), ("snout", "tail", "ear")])
    with pytest.raises(EnsembleError, match="another order"):
        check_members(["a", "b"], [("snout", "tail"), ("tail", "snout")])
