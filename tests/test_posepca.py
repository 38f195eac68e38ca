"""Pose PCA: box normalisation, the fitted span, the residual (value and gradient), ε, the state, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kpreg.posepca import PosePCA, PosePCAError, box_normalise


def family(n: int, seed: int = 0) -> np.ndarray:
    """(n, 3, 2) px poses of one shape family: keypoints 0 and 2 at the corners of a square (the box), keypoint 1 on
    its diagonal at a varying place; each pose moved and scaled at random (which the box normalisation removes)."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(0.2, 0.8, n)  # keypoint 1's place along the diagonal
    unit = np.stack([np.zeros((n, 2)), np.stack([t, t], axis=1), np.ones((n, 2))], axis=1)  # (n, 3, 2) in [0, 1]
    scale = rng.uniform(20, 60, n)[:, None, None]
    shift = rng.uniform(0, 300, (n, 1, 2))
    return unit * scale + shift


def test_box_normalise_by_hand() -> None:
    poses = torch.tensor([[[10.0, 20.0], [30.0, 25.0], [20.0, 30.0]]])  # extent x 10..30, y 20..30
    u, size = box_normalise(poses)
    torch.testing.assert_close(size, torch.tensor([20.0]))  # the larger side
    torch.testing.assert_close(u, torch.tensor([[[-0.5, -0.25], [0.5, 0.0], [0.0, 0.25]]]))


def test_a_pose_of_the_family_has_no_residual_and_an_orthogonal_move_has_its_length() -> None:
    pca = PosePCA(3)
    pca.fit(family(40), np.ones((40, 3), bool), components=1, epsilon=0.0)
    assert int(pca.num_axes) == 1 and float(pca.explained) > 0.999
    inside = torch.tensor(family(5, seed=1))
    assert pca.residual(inside).abs().max() < 1e-4
    # A 10-px box with keypoint 1 moved off the diagonal by (+1, −1) px: keypoints 0 and 2 keep the box, so only
    # keypoint 1 leaves the span, by √2 px; the residual's gradient pushes it straight back.
    pose = torch.tensor([[[100.0, 100.0], [106.0, 104.0], [110.0, 110.0]]], dtype=torch.float64, requires_grad=True)
    r = pca.residual(pose)  # (1, 3) px
    torch.testing.assert_close(r, torch.tensor([[0.0, 2**0.5, 0.0]], dtype=torch.float64), atol=1e-5, rtol=0)
    r[0, 1].backward()
    torch.testing.assert_close(pose.grad[0, 1], torch.tensor([0.5**0.5, -(0.5**0.5)], dtype=torch.float64),
                               atol=1e-5, rtol=0)


def test_components_by_explained_variance_and_epsilon_from_held_out_residuals() -> None:
    rng = np.random.default_rng(3)
    poses = family(200) + rng.normal(0, 0.5, (200, 3, 2))  # the family plus half a pixel of noise
    pca = PosePCA(3)
    pca.fit(poses, np.ones((200, 3), bool), components=0.9)
    assert 1 <= int(pca.num_axes) < 6 and float(pca.explained) >= 0.9
    eps = pca.epsilon.numpy()
    assert eps.shape == (3,) and (eps > 0).all() and (eps < 3).all()  # ~ the noise, in px


def test_epsilon_comes_from_poses_the_axes_were_not_fitted_to() -> None:
    # 12 random poses of 4 keypoints (8 dimensions) and 6 axes: the axes nearly fit their own poses, so their own
    # residuals would make ε far too small; the residuals of held-out poses do not.
    poses = np.random.default_rng(0).uniform(0, 100, (12, 4, 2))
    pca = PosePCA(4)
    pca.fit(poses, np.ones((12, 4), bool), components=6)
    own = np.quantile(pca.residual(torch.tensor(poses)).numpy(), 0.9, axis=0)  # (K,)
    assert (pca.epsilon.numpy() > 2 * own).all()


def test_incomplete_poses_are_left_out_and_the_state_round_trips() -> None:
    poses, labelled = family(30), np.ones((30, 3), bool)
    labelled[0, 1] = False
    poses[0, 1] = np.nan
    pca = PosePCA(3)
    pca.fit(poses, labelled, components=1, epsilon=2.0)
    torch.testing.assert_close(pca.epsilon, torch.full((3,), 2.0))
    again = PosePCA.from_state(pca.state())
    test = torch.tensor(family(4, seed=9)) + 1.0
    torch.testing.assert_close(again.residual(test), pca.residual(test))


@pytest.mark.parametrize(
    ("n", "components", "message"),
    [
        (4, 5, r"pose PCA: 4 labelled poses with every keypoint, fewer than the 6 needed for 5 components"),
        (6, 0.99, r"pose PCA: 6 labelled poses with every keypoint, not more than the 6 dimensions of a pose"),
        (40, 6, r"pose PCA: 6 components for poses of 6 dimensions \(3 keypoints × 2\): give 1 to 5"),
        (40, 1.5, r"a share of variance must be in \(0, 1\)"),
    ],
)
def test_too_few_poses_for_the_components_is_one_clear_message(n: int, components: float, message: str) -> None:
    with pytest.raises(PosePCAError, match=message):
        PosePCA(3).fit(family(n), np.ones((n, 3), bool), components=components)


def test_residual_before_fit_is_refused() -> None:
    with pytest.raises(RuntimeError, match="before fit"):
        PosePCA(3).residual(torch.zeros(1, 3, 2))
