import numpy as np
import pytest

from kpreg.inference.boxes import Box
from kpreg.inference.locate import LocateError, Tracker, coarse_to_fine, crop_mode, extent_box

TRUTH = np.array([[100.0, 50.0], [140.0, 80.0]])  # (K=2, 2) the animal


def fake_model(confidence: float = 0.9):
    """A crop model: on the whole frame it lands 20 px off; in a box, 10 % of the box centre's distance from the
    animal's centre off (a better box, a better answer)."""
    calls: list[Box | None] = []

    def predict(image: np.ndarray, boxes: list[Box] | None) -> tuple[np.ndarray, np.ndarray]:
        calls.append(None if boxes is None else boxes[0])
        if boxes is None:
            xy = TRUTH + 20.0
        else:
            b = boxes[0]
            centre = np.array([b.x + b.w / 2 - 0.5, b.y + b.h / 2 - 0.5])
            xy = TRUTH + 0.1 * (centre - TRUTH.mean(0))
        return xy[None], np.full((1, 2), confidence)

    return predict, calls


def test_crop_mode_comes_from_the_recorded_data_part() -> None:
    assert crop_mode({"config": {"data": {"init_args": {"box_source": "both"}}}}) == "both"
    assert crop_mode({"config": {"data": {"init_args": {"box_source": "image"}}}}) == "image"
    assert crop_mode({"config": {"data": {"init_args": {"box_source": "keypoints"}}}}) == "crop"
    assert crop_mode({"config": {"data": {"init_args": {"box_source": "bbox"}}}}) == "crop"
    assert crop_mode({"config": {"data": {"init_args": {"image_size": 64}}}}) == "image"  # synthetic figures
    assert crop_mode({}) == "image"


def test_extent_box_is_the_training_box_of_the_keypoints() -> None:
    box = extent_box(np.array([[10.0, 20.0], [30.0, 25.0], [np.nan, np.nan]]))
    assert box.xywh == (10.5, 20.5, 20.0, 5.0)  # centre x + w/2 - 0.5 = 20, the extent's middle
    assert extent_box(np.array([[1.0, 1.0], [1.0, 1.0]])) is None
    assert extent_box(np.array([[1.0, 1.0], [np.nan, 2.0]])) is None


def test_coarse_to_fine_converges_on_the_animal() -> None:
    predict, calls = fake_model()
    image = np.zeros((200, 300, 3), np.uint8)
    xy, conf, box = coarse_to_fine(predict, image, passes=2)
    assert calls[0] is None and len(calls) == 3  # whole frame, then two crops
    assert np.abs(xy - TRUTH).max() < 0.3  # 20 px → 2 px → 0.2 px
    assert box is not None and conf.shape == (2,)


def test_the_tracker_follows_and_refinds_a_lost_animal() -> None:
    predict, calls = fake_model()
    tracker = Tracker(predict, "both", refine_passes=2, follow=True)
    image = np.zeros((200, 300, 3), np.uint8)
    for _ in range(4):
        xy, _, box = tracker.step(image)
    assert tracker.passes == 3 + 3 and tracker.refound == 1  # the first frame coarse to fine, then one pass each
    assert box is not None and np.abs(xy - TRUTH).max() < 0.1
    lost, _ = fake_model(confidence=0.1)
    tracker.predict = lost
    tracker.step(image)  # tracked box, but the animal is lost ...
    tracker.step(image)  # ... so this frame starts from the whole frame again
    assert tracker.refound == 2


def test_whole_frame_models_run_once_and_crop_models_are_refused() -> None:
    predict, calls = fake_model()
    tracker = Tracker(predict, "image")
    _, _, box = tracker.step(np.zeros((10, 10, 3), np.uint8))
    assert box is None and calls == [None]
    with pytest.raises(LocateError, match="trained on crops around the animal.*box_source both"):
        Tracker(predict, "crop")


def test_without_follow_every_frame_is_coarse_to_fine() -> None:
    predict, calls = fake_model()
    tracker = Tracker(predict, "both", refine_passes=1)
    for _ in range(3):
        tracker.step(np.zeros((200, 300, 3), np.uint8))
    assert tracker.passes == 6 and calls[::2] == [None, None, None]  # whole frame + one crop, every frame


class _BrightSpotRuntime:
    """A fake network: both keypoints at the brightest pixel of its input crop (input pixels; the border is black)."""

    name, device, flip_test = "fake", "cpu", False

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, images):
        import torch

        self.calls += 1
        grey = images.mean(1)  # (B, H, W)
        flat = grey.flatten(1).argmax(1)  # (B,)
        w = grey.shape[-1]
        xy = torch.stack([(flat % w).float(), (flat // w).float()], -1)  # (B, 2)
        return torch.stack([xy, xy + 2.0], 1), torch.full((len(images), 2), 0.9)


def test_the_predictor_locates_with_its_crop_mode() -> None:
    from kpreg.inference.model_info import ModelInfo
    from kpreg.inference.predictor import Predictor

    def predictor(mode: str) -> tuple[Predictor, _BrightSpotRuntime]:
        info = ModelInfo(keypoint_names=("a", "b"), skeleton=(), flip_pairs=(), input_size=(32, 32), head="Fake",
                         backbone="none", flip_test=False, crop_mode=mode)  # type: ignore[arg-type]
        runtime = _BrightSpotRuntime()
        return Predictor(runtime, info), runtime

    image = np.full((120, 160, 3), 60, np.uint8)
    image[69:74, 99:104] = 255  # the "animal": a bright spot around (101, 71)
    whole, runtime = predictor("image")
    found = whole.locate(image)
    assert runtime.calls == 1 and found.boxes[0].w == 160  # one pass on the whole image
    both, runtime = predictor("both")
    found = both.locate(image, refine=1)
    assert runtime.calls == 2  # the whole image, then the crop of what it found
    assert found.keypoints.shape == (1, 2, 2) and np.abs(found.keypoints[0, 0] - [101, 71]).max() < 3
    assert found.boxes[0].w < 160  # the last pass ran on a crop
    crop, runtime = predictor("crop")
    with pytest.raises(LocateError, match="trained on crops"):
        crop.locate(image)
    assert runtime.calls == 0


def test_the_crop_mode_travels_with_an_exported_model() -> None:
    from kpreg.inference.model_info import ModelInfo, ModelInfoError

    info = ModelInfo(keypoint_names=("a", "b"), skeleton=(), flip_pairs=(), input_size=(32, 32), head="Fake",
                     backbone="none", flip_test=False, crop_mode="both")
    props = {**info.to_metadata(), "kpreg.mean": "[0.5, 0.5, 0.5]", "kpreg.std": "[0.2, 0.2, 0.2]"}
    assert ModelInfo.from_metadata(props, "m.onnx")[0].crop_mode == "both"
    del props["kpreg.crop_mode"]  # a file without the entry: whole frames
    assert ModelInfo.from_metadata(props, "m.onnx")[0].crop_mode == "image"
    with pytest.raises(ModelInfoError, match="kpreg.crop_mode"):
        ModelInfo.from_metadata({**props, "kpreg.crop_mode": '"sideways"'}, "m.onnx")
