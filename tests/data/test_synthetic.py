import numpy as np
import torch

from kpreg.coords import flip_points
from kpreg.data.sample import META_KEYS, SAMPLE_KEYS, tensor_to_image
from kpreg.data.synthetic import render_figure
from kpreg.data.synthetic_datamodule import SyntheticPoseDataModule, SyntheticPoseDataset
from kpreg.formats.mpii import MPII_FLIP_PAIRS


def test_deterministic_per_seed_and_index() -> None:
    a, b = render_figure(3, 17, 64), render_figure(3, 17, 64)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.keypoints, b.keypoints)
    c = render_figure(3, 18, 64)
    assert not np.array_equal(a.keypoints, c.keypoints)
    d = render_figure(4, 17, 64)
    assert not np.array_equal(a.image, d.image)


def test_labels_are_inside_subpixel_and_head_box_is_sane() -> None:
    fractional = []
    for i in range(200):
        fig = render_figure(0, i, 48)
        assert fig.image.shape == (48, 48, 3) and fig.image.dtype == np.uint8
        assert fig.keypoints.shape == (16, 2)
        assert np.all(fig.keypoints >= -0.5) and np.all(fig.keypoints <= 47.5)
        (x1, y1), (x2, y2) = fig.head_box
        assert x2 > x1 and y2 > y1 and fig.head_size > 0
        head_top = fig.keypoints[9]
        assert x1 - 1e-6 <= head_top[0] <= x2 + 1e-6 and y1 - 1e-6 <= head_top[1] <= y2 + 1e-6
        fractional.append(fig.keypoints - np.round(fig.keypoints))
    # Labels are not snapped to the pixel grid: their fractional parts spread over (-0.5, 0.5).
    frac = np.concatenate(fractional).ravel()
    assert frac.std() > 0.2


def test_some_joints_are_occluded_and_keep_their_label() -> None:
    occluded = np.stack([render_figure(1, i, 64).occluded for i in range(300)])
    assert 0 < occluded.mean() < 0.2


def _facing_from_labels(keypoints: np.ndarray) -> bool:
    """True when the labels say the person faces the camera: its left shoulder is to the right of
    its right shoulder, seen along the torso (pelvis → thorax)."""
    up = keypoints[7] - keypoints[6]  # pelvis → thorax
    across = keypoints[13] - keypoints[12]  # right → left shoulder
    return bool(up[0] * across[1] - up[1] * across[0] > 0)


def _facing_from_pixels(image: np.ndarray, keypoints: np.ndarray) -> bool:
    """True when the head shows a (light) face rather than (dark) hair."""
    x, y = np.round((keypoints[8] + keypoints[9]) / 2).astype(int)
    return bool(image[y, x].mean() > 128)


def test_left_and_right_follow_the_facing_cue_and_survive_a_mirror() -> None:
    # Left and right are told apart by which way the figure faces (a face or hair), never by colour,
    # so the mirror image of a figure with its left/right labels swapped is again a valid figure.
    agree, checked = 0, 0
    for i in range(200):
        fig = render_figure(2, i, 128)
        if fig.occluded[[8, 9]].any():
            continue
        facing = _facing_from_labels(fig.keypoints)
        seen = _facing_from_pixels(fig.image, fig.keypoints)
        agree += facing == seen  # an arm drawn across the face can hide the cue, as on real images
        mirrored_labels = flip_points(fig.keypoints, 128, MPII_FLIP_PAIRS)
        assert _facing_from_labels(mirrored_labels) == facing
        assert _facing_from_pixels(fig.image[:, ::-1], mirrored_labels) == seen
        checked += 1
    assert checked > 150 and agree / checked > 0.9


def test_sample_contract() -> None:
    sample = SyntheticPoseDataset(seed=0, length=4, image_size=32)[2]
    assert tuple(sample) == SAMPLE_KEYS
    assert sample["image"].shape == (3, 32, 32) and sample["image"].dtype == torch.float32
    assert sample["keypoints"].shape == (16, 2) and sample["keypoints"].dtype == torch.float32
    assert sample["visibility"].shape == (16,)
    meta = sample["meta"]
    assert set(META_KEYS) <= set(meta)
    assert meta["index"].item() == 2
    assert meta["affine_inv"].shape == (2, 3) and meta["affine_inv"].dtype == torch.float64
    assert torch.allclose(meta["keypoints_orig"].float(), sample["keypoints"])
    assert meta["norm_length"].item() > 0
    assert meta["occluded"].dtype == torch.bool
    fig = render_figure(0, 2, 32)
    assert np.abs(tensor_to_image(sample["image"]).astype(int) - fig.image).max() <= 1


def test_datamodule_batches_and_splits_differ() -> None:
    dm = SyntheticPoseDataModule(image_size=32, num_train=8, num_val=4, batch_size=4, num_workers=0)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 3, 32, 32) and batch["meta"]["affine_inv"].shape == (4, 2, 3)
    assert dm.num_keypoints == 16 and dm.input_size == (32, 32)
    val = dm.datasets["val"][0]["keypoints"]
    assert not any(torch.equal(val, dm.datasets["train"][i]["keypoints"]) for i in range(8))
