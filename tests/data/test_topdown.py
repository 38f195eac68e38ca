import cv2
import numpy as np
import pytest
import torch

from kpreg.coords import apply_affine
from kpreg.data.sample import tensor_to_image
from kpreg.data.topdown import (
    Augmentation,
    DataError,
    PersonRecord,
    TopDownDataset,
    TopDownTransform,
    decode_reduction,
)

PAIRS = [(0, 1)]


def _record(tmp_path, name: str = "img.png") -> PersonRecord:
    img = np.zeros((120, 160, 3), np.uint8)
    img[50, 40] = (255, 0, 0)  # joint 0 (a "left" joint) marked red
    img[50, 100] = (0, 0, 255)  # joint 1 (its right partner) marked blue
    cv2.imwrite(str(tmp_path / name), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return PersonRecord(
        image_path=str(tmp_path / name),
        center=np.array([69.5, 59.5]),  # whole-pixel shift at scale 1, so marked pixels stay sharp
        box_size=np.array([120.0, 120.0]),
        keypoints=np.array([[40.0, 50.0], [100.0, 50.0], [70.3, 80.7]]),
        visible=np.array([True, True, False]),
        norm_length=10.0,
        instance_size=60.0,
        area=900.0,
        extra={"image_id": 7},
    )


@pytest.mark.parametrize("train", [False, True])
def test_affine_round_trip_to_original_pixels(tmp_path, train: bool) -> None:
    rec = _record(tmp_path)
    aug = Augmentation(scale_factor=0.3, rotation=40, rotation_prob=1.0, flip_prob=0.5, photometric=True)
    ds = TopDownDataset([rec], TopDownTransform((64, 48), PAIRS, aug), train=train)
    torch.manual_seed(0)
    for _ in range(10):
        s = ds[0]
        back = apply_affine(s["keypoints"].double(), s["meta"]["affine_inv"])
        assert torch.abs(back - s["meta"]["keypoints_orig"]).max() < 1e-3  # ≤ 1e-3 px, float32 labels
        assert s["meta"]["image_id"].item() == 7
        assert s["image"].shape == (3, 64, 48)


def test_flip_swaps_joints_and_pixels_follow_labels(tmp_path) -> None:
    rec = _record(tmp_path)
    flip_always = Augmentation(scale_factor=0.0, rotation=0.0, rotation_prob=0.0, flip_prob=1.0, photometric=False)
    crop, kps, vis, affine, flipped = TopDownTransform((120, 120), PAIRS, flip_always)(
        cv2.cvtColor(cv2.imread(rec.image_path), cv2.COLOR_BGR2RGB), rec, np.random.default_rng(0)
    )
    assert flipped
    # After the flip, joint 0 is the former joint 1 (blue pixel) and sits where the blue pixel is now.
    for joint, channel in ((0, 2), (1, 0)):
        x, y = np.round(kps[joint]).astype(int)
        assert crop[y, x, channel] > 100
    assert vis.tolist() == [True, True, False]


def test_outside_joints_stop_counting_in_the_loss(tmp_path) -> None:
    rec = _record(tmp_path)
    rec.box_size = np.array([20.0, 20.0])  # a tight crop around the centre: joints 0 and 1 fall outside
    ds = TopDownDataset([rec], TopDownTransform((32, 32), PAIRS), train=False)
    s = ds[0]
    assert s["visibility"].tolist() == [0.0, 0.0, 0.0]
    assert s["meta"]["visible_orig"].tolist() == [True, True, False]  # metrics still see the truth


def test_missing_and_corrupt_images_name_file_and_index(tmp_path) -> None:
    rec = _record(tmp_path)
    missing = PersonRecord(**{**rec.__dict__, "image_path": str(tmp_path / "nope.jpg")})
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    corrupt = PersonRecord(**{**rec.__dict__, "image_path": str(tmp_path / "bad.jpg")})
    ds = TopDownDataset([rec, missing, corrupt], TopDownTransform((32, 32), PAIRS), train=False)
    with pytest.raises(DataError, match=r"image not found: .*nope.jpg \(sample 1\)"):
        ds[1]
    with pytest.raises(DataError, match=r"cannot decode image.*bad.jpg \(sample 2\)"):
        ds[2]


@pytest.mark.parametrize("box", [300.0, 700.0])  # the crop shrinks the image 2.3× (decode at 1/2) and 5.5× (1/4)
def test_reduced_jpeg_decode_keeps_the_geometry_exact(tmp_path, box: float) -> None:
    """A blob at a sub-pixel position lands on the same input pixel with and without the reduced decode."""
    h, w = 600, 800
    yy, xx = np.mgrid[0:h, 0:w]
    blob = np.exp(-((xx - 401.3) ** 2 + (yy - 297.8) ** 2) / (2 * 12.0**2))  # centred at x=401.3, y=297.8
    image = np.repeat((40 + 200 * blob)[..., None], 3, axis=2).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "blob.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 98])
    rec = PersonRecord(str(tmp_path / "blob.jpg"), np.array([390.0, 310.0]), np.array([box, box]),
                       np.array([[401.3, 297.8]]), np.array([True]), 10.0, 10.0, 100.0, {})
    transform = TopDownTransform((128, 128), [])
    affine, _ = transform.draw(rec, None)
    assert decode_reduction(affine, rec.image_path) == (2 if box == 300.0 else 4)
    assert decode_reduction(affine, "x.png") == 1  # only JPEG decoders reduce exactly

    def centroid(reduced: bool) -> np.ndarray:
        s = TopDownDataset([rec], transform, train=False, reduced_decode=reduced)[0]
        img = tensor_to_image(s["image"])[..., 0].astype(np.float64)
        weight = np.clip(img - 40.0, 0, None)
        ys, xs = np.mgrid[0 : img.shape[0], 0 : img.shape[1]]
        return np.array([(xs * weight).sum(), (ys * weight).sum()]) / weight.sum(), s["keypoints"][0].numpy()

    (full, label), (reduced, label_reduced) = centroid(False), centroid(True)
    assert np.array_equal(label, label_reduced)  # labels never depend on the decode
    assert np.abs(full - label).max() < 0.1 and np.abs(reduced - label).max() < 0.1  # input pixels
