"""The Python API: ``kpreg.load(ckpt).predict(images, boxes)`` on NumPy images and tensors, one and a batch.

The predictions are checked against the network applied by hand to the crop that evaluation makes (for the
synthetic data the whole image, unpadded: the identity affine), so the API equals evaluation's path.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import kpreg
from kpreg.cli.export import export_checkpoint
from kpreg.data.sample import image_to_tensor
from kpreg.data.synthetic import render_figure
from kpreg.inference.boxes import Box
from kpreg.inference.images import ImageInputError
from kpreg.inference.predictor import Prediction, Predictor
from kpreg.inference.rebuild import rebuild
from kpreg.inference.sources import Frame
from kpreg.metrics.calibration import CalibrationRecord, Platt, calibrate_keypoints
from kpreg.training.checkpoint import CheckpointMismatchError

pytestmark = pytest.mark.slow  # a checkpoint trained by train.py (tiny_checkpoint)

SIZE = 32  # the tiny checkpoint's input (tests/conftest.py)
K = 16


@pytest.fixture(scope="module")
def predictor(tiny_checkpoint: Path) -> Predictor:
    return kpreg.load(tiny_checkpoint, device="cpu", batch_size=4)


def figures(n: int, size: int = SIZE) -> list[np.ndarray]:
    return [render_figure(11, i, size, True).image for i in range(n)]  # (S, S, 3) uint8 RGB


def by_hand(tiny_checkpoint: Path, images: list[np.ndarray], flip: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The network on the images themselves (evaluation's crop of a synthetic sample is the image)."""
    model = rebuild(tiny_checkpoint, flip_test=flip).network
    with torch.no_grad():
        coords, conf = model(torch.stack([image_to_tensor(im) for im in images]))
    return coords.double().numpy(), conf.numpy()


def test_import_kpreg_is_cheap() -> None:
    code = "import sys, kpreg; print(sorted(m for m in ('torch', 'timm', 'pytorch_lightning') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_one_numpy_image_equals_the_network_on_evaluations_crop(predictor: Predictor, tiny_checkpoint: Path) -> None:
    (image,) = figures(1)
    result = predictor.predict(image)
    assert isinstance(result, Prediction) and len(result) == 1
    assert result.keypoints.shape == (1, K, 2) and result.confidence.shape == (1, K)
    coords, conf = by_hand(tiny_checkpoint, [image])
    np.testing.assert_allclose(result.keypoints, coords, atol=1e-5)  # the whole image maps 1:1 to the input
    np.testing.assert_allclose(result.confidence, conf, atol=1e-6)
    assert result.boxes == (Box(0.0, 0.0, SIZE, SIZE),) and result.scores.shape == (1,)
    assert predictor.flip_test and predictor.keypoint_names[0] == "r_ankle" and len(predictor.skeleton) == 15


def test_a_batch_of_numpy_images_and_tensors_agree(predictor: Predictor, tiny_checkpoint: Path) -> None:
    images = figures(6)  # more than batch_size = 4: two forward passes
    as_list = predictor.predict(images)
    as_array = predictor.predict(np.stack(images))  # (B, H, W, 3)
    as_tensor = predictor.predict(torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2))  # (B, 3, H, W) uint8
    as_float = predictor.predict(torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255)
    one_tensor = predictor.predict(torch.from_numpy(images[2]).permute(2, 0, 1))  # (3, H, W)
    coords, _ = by_hand(tiny_checkpoint, images)
    assert isinstance(as_list, list) and len(as_list) == 6
    for results in (as_array, as_tensor, as_float):
        for a, b in zip(as_list, results):
            np.testing.assert_allclose(a.keypoints, b.keypoints, atol=1e-9)
    np.testing.assert_allclose(np.concatenate([r.keypoints for r in as_list]), coords, atol=1e-5)
    np.testing.assert_allclose(one_tensor.keypoints, as_list[2].keypoints, atol=1e-9)


def test_flip_can_be_switched_off(tiny_checkpoint: Path) -> None:
    images = figures(2)
    plain = kpreg.load(tiny_checkpoint, device="cpu", flip=False)
    assert not plain.flip_test
    coords, _ = by_hand(tiny_checkpoint, images, flip=False)
    np.testing.assert_allclose(np.concatenate([r.keypoints for r in plain.predict(images)]), coords, atol=1e-5)


def test_boxes_give_instances_in_image_pixels(predictor: Predictor, tiny_checkpoint: Path) -> None:
    # A figure pasted at (40, 10) of a larger frame, boxed exactly: the box is padded to 1.25 × 32 = 40 px, so the
    # crop is the figure shrunk by 0.8 around the box centre; the prediction comes back through that affine.
    (figure,) = figures(1)
    frame = np.zeros((64, 96, 3), np.uint8)
    frame[10:42, 40:72] = figure
    result = predictor.predict(frame, boxes=[[40, 10, 32, 32, 0.9], [0, 0, 20, 30, 0.5]])
    assert len(result) == 2 and result.box_scores.tolist() == [0.9, 0.5]
    np.testing.assert_allclose(result.xywh[0], [40, 10, 32, 32])
    padded = kpreg.load(tiny_checkpoint, device="cpu", padding=1.0)  # unpadded: the crop is the figure itself
    boxed = padded.predict(frame, boxes=np.array([[40, 10, 32, 32]]))
    whole = padded.predict(figure)
    np.testing.assert_allclose(boxed.keypoints[0], whole.keypoints[0] + [40, 10], atol=1e-4)
    both = predictor.predict([frame, figure], boxes=[[[40, 10, 32, 32]], None])
    assert [len(r) for r in both] == [1, 1]
    empty = predictor.predict(frame, boxes=np.zeros((0, 4)))
    assert len(empty) == 0 and empty.keypoints.shape == (0, K, 2) and empty.scores.shape == (0,)


def test_stream_batches_frames_in_order(predictor: Predictor) -> None:
    frames = [Frame(i, str(i), np.ascontiguousarray(im)) for i, im in enumerate(figures(5, 48))]
    counts = [0, 2, 5, 1, 3]  # more boxes in one frame than the batch size (4); a frame without any
    boxes = {i: [Box(2.0 * j, 1.0 * j, 30.0, 40.0) for j in range(n)] for i, n in enumerate(counts)}
    out = list(predictor.stream(iter(frames), lambda f: boxes[f.index], prefetch_depth=2))
    assert [f.index for f, _ in out] == list(range(5)) and [len(p) for _, p in out] == counts
    for frame, prediction in out:
        if counts[frame.index]:
            alone = predictor.predict(frame.image, boxes=[b.xywh for b in boxes[frame.index]])
            np.testing.assert_allclose(prediction.keypoints, alone.keypoints, atol=1e-5)
    whole = [p for _, p in predictor.stream(frames)]  # no boxes: whole frames
    assert all(len(p) == 1 for p in whole)
    stream = predictor.stream(iter(frames))
    next(stream)
    stream.close()  # stopping early joins the cropping thread (a hang would time the test out)


def test_a_config_is_checked_against_the_checkpoint(tiny_checkpoint: Path, tmp_path: Path) -> None:
    config_path = tiny_checkpoint.parent.parent / "config.yaml"
    kpreg.load(tiny_checkpoint, device="cpu", config=config_path)  # the run's own config agrees
    config = yaml.safe_load(config_path.read_text())
    config["model"]["head"]["init_args"]["sigma"] = 3.0
    config["model"]["backbone"] = "resnet18"
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(config))
    with pytest.raises(CheckpointMismatchError, match=r"sigma=2\.0 vs 3\.0(.|\n)*backbone: checkpoint 'test_resnet'"):
        kpreg.load(tiny_checkpoint, config=other)
    config["model"]["head"] = {"class_path": "kpreg.heads.DSNTHead"}
    other.write_text(yaml.safe_dump(config))
    with pytest.raises(CheckpointMismatchError, match="head: checkpoint 'kpreg.heads.heatmap.HeatmapHead' vs config "
                                                      "'kpreg.heads.dsnt.DSNTHead'"):
        kpreg.load(tiny_checkpoint, config=other)


def test_a_checkpoint_without_its_model_record_is_refused(tiny_checkpoint: Path, tmp_path: Path) -> None:
    checkpoint = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)
    del checkpoint["kpreg"]
    torch.save(checkpoint, tmp_path / "old.ckpt")
    with pytest.raises(CheckpointMismatchError, match="old.ckpt does not record its model"):
        kpreg.load(tmp_path / "old.ckpt")
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        kpreg.load(tmp_path / "missing.ckpt")


def raw_checkpoint(tiny_checkpoint: Path, path: Path) -> Path:
    """The tiny checkpoint without the calibration map its training fitted: confidences are the raw head score."""
    checkpoint = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)
    checkpoint["kpreg"]["calibration"] = None
    torch.save(checkpoint, path)
    return path


def calibrated_checkpoint(tiny_checkpoint: Path, path: Path) -> tuple[Path, Platt]:
    """The tiny checkpoint with a hand-fitted Platt map stored as training stores one (a CalibrationRecord)."""
    rng = np.random.default_rng(0)
    raw = rng.uniform(0.05, 1.0, 400)
    platt = Platt().fit(raw, rng.uniform(size=400) < raw)  # correct more often at higher scores
    checkpoint = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)
    record = CalibrationRecord(method="platt", map=platt.state_dict(),
                               correct={"scale": "box", "threshold": 0.1, "definition": "error <= 0.1 x size"},
                               uses_spread=False, flip_test=False,
                               fitted_on={"split": "val", "samples": 400, "keypoints": 400, "fingerprint": "x"})
    checkpoint["kpreg"]["calibration"] = record.to_dict()
    torch.save(checkpoint, path)
    return path, platt


@pytest.mark.parametrize("flip", [False, True])
def test_a_calibration_map_in_the_checkpoint_is_applied(tiny_checkpoint: Path, tmp_path: Path, flip: bool) -> None:
    """The map applies after the flip test's merge, to the same raw confidence the uncalibrated model reports."""
    path, platt = calibrated_checkpoint(tiny_checkpoint, tmp_path / "calibrated.ckpt")
    uncalibrated = kpreg.load(raw_checkpoint(tiny_checkpoint, tmp_path / "raw.ckpt"), device="cpu", flip=flip)
    assert "raw head score" in uncalibrated.describe()
    images = figures(3)
    raw = uncalibrated.predict(images)
    calibrated = kpreg.load(path, device="cpu", flip=flip)
    assert "calibrated P(correct), correct = error <= 0.1 x size; method platt" in calibrated.describe()
    for r, c in zip(raw, calibrated.predict(images)):
        np.testing.assert_allclose(c.keypoints, r.keypoints)
        want = calibrate_keypoints(platt, torch.from_numpy(r.confidence)).numpy()
        np.testing.assert_allclose(c.confidence, want, atol=1e-5)
        assert not np.allclose(c.confidence, r.confidence)


def test_an_exported_calibrated_model_reports_the_same_confidence(tiny_checkpoint: Path, tmp_path: Path) -> None:
    path, _ = calibrated_checkpoint(tiny_checkpoint, tmp_path / "calibrated.ckpt")
    export_checkpoint(path, "torchscript", tmp_path / "calibrated.pt")
    images = figures(2)
    eager = kpreg.load(path, device="cpu").predict(images)
    exported = kpreg.load(tmp_path / "calibrated.pt", device="cpu")
    assert "calibrated P(correct)" in exported.describe()
    for e, x in zip(eager, exported.predict(images)):
        np.testing.assert_allclose(x.confidence, e.confidence, atol=1e-5)
        np.testing.assert_allclose(x.keypoints, e.keypoints, atol=1e-3)


@pytest.mark.parametrize(("images", "message"), [
    (np.zeros((3, 20, 20), np.uint8), r"channel-first\? NumPy images are \(H, W, 3\)"),
    (np.zeros((20, 20, 3), np.float32) + 2.0, r"must lie in \[0, 1\], got values in \[2, 2\]"),
    (np.zeros((20, 20, 3), np.int64), "unsupported pixel type int64"),
    ([np.zeros((20, 20, 3), np.uint8), "frame.png"], "image 1: expected a NumPy array or a torch tensor, got str"),
    (torch.zeros(5, 20, 20), r"C = 1, 3 or 4, got \(5, 20, 20\)"),
    ([], "no image given"),
])
def test_bad_images_are_one_clear_error(predictor: Predictor, images: object, message: str) -> None:
    with pytest.raises(ImageInputError, match=message):
        predictor.predict(images)


def test_bad_boxes_are_one_clear_error(predictor: Predictor) -> None:
    image = figures(1)[0]
    with pytest.raises(ImageInputError, match="box 0 has a zero or negative size"):
        predictor.predict(image, boxes=[[0, 0, 0, 10]])
    with pytest.raises(ImageInputError, match=r"expected \(N, 4\)"):
        predictor.predict(image, boxes=[[0, 0, 10]])
    with pytest.raises(ImageInputError, match="one entry .* per image: 2 image"):
        predictor.predict([image, image], boxes=[[[0, 0, 5, 5]]])
    with pytest.raises(ValueError, match="batch_size must be at least 1, got 0"):
        Predictor(predictor.runtime, predictor.info, batch_size=0)
