import cv2
import numpy as np
import pytest
import torch

from kpreg.coords import apply_affine
from kpreg.data.topdown import Augmentation, DataError, PersonRecord, TopDownDataset, TopDownTransform

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
