"""ModelInfo: read from a checkpoint record, written to and read back from an exported file's metadata."""

from __future__ import annotations

import pytest

from kpreg.inference.model_info import ModelInfo, ModelInfoError

RECORD = {
    "head": {"class_path": "kpreg.heads.simcc.SimCCHead", "init_args": {}},
    "backbone": "resnet18",
    "num_keypoints": 3,
    "keypoint_names": ["nose", "left_eye", "right_eye"],
    "skeleton": [[0, 1], [0, 2]],
    "flip_pairs": [[1, 2]],
    "input_size": [64, 48],
    "network": {"feature_index": -1, "backbone_kwargs": {}, "flip_test": False, "channels_last": False},
    "calibration": {"format": 1, "method": "platt", "map": {"method": "platt", "weights": [1.0], "bias": 0.0},
                    "correct": {}, "uses_spread": False, "flip_test": False, "fitted_on": {}},
}


def test_record_to_metadata_and_back() -> None:
    info = ModelInfo.from_record(RECORD, "m.ckpt")
    assert info.head == "SimCCHead" and info.input_size == (64, 48) and info.flip_pairs == ((1, 2),)
    assert info.flip_test is False  # the run evaluated without the flip test
    props = {**info.to_metadata(), "kpreg.head": "SimCCHead", "kpreg.flip_test": "null",
             "kpreg.mean": "[0.485, 0.456, 0.406]", "kpreg.std": "[0.229, 0.224, 0.225]"}
    back, graph_flip = ModelInfo.from_metadata(props, "m.onnx")
    assert back == info and graph_flip is False
    back, graph_flip = ModelInfo.from_metadata({**props, "kpreg.flip_test": "[[1, 2]]"}, "m.onnx")
    assert graph_flip is True and back.flip_test is True


def test_defaults_where_a_record_is_short() -> None:
    info = ModelInfo.from_record({k: RECORD[k] for k in ("head", "backbone", "num_keypoints", "input_size")}, "m")
    assert info.keypoint_names == ("keypoint_0", "keypoint_1", "keypoint_2") and info.skeleton == ()
    assert info.flip_test is False and info.calibration is None  # no flip pairs: no flip test; raw confidences
    info = ModelInfo.from_record({**RECORD, "network": {}}, "m")
    assert info.flip_test is True  # KeypointModule's default where the data has pairs


@pytest.mark.parametrize(("change", "message"), [
    ({"skeleton": [[0, 3]]}, r"m.ckpt: skeleton \(0, 3\) is out of range for 3 keypoints"),
    ({"keypoint_names": ["a", "b"]}, "expected 3 keypoint names"),
    ({"input_size": [64]}, r"input_size must be \[H, W\]"),
    ({"head": None, "backbone": None}, None),
])
def test_bad_records_are_one_clear_error(change: dict, message: str | None) -> None:
    record = {k: v for k, v in {**RECORD, **change}.items() if v is not None}
    with pytest.raises(ModelInfoError, match=message or r"lacks \['head', 'backbone'\]"):
        ModelInfo.from_record(record, "m.ckpt")


def test_a_file_without_kpreg_metadata_is_named() -> None:
    with pytest.raises(ModelInfoError, match="plain.onnx: no kpreg metadata .*export.py"):
        ModelInfo.from_metadata({"producer": "pytorch"}, "plain.onnx")
    with pytest.raises(ModelInfoError, match="metadata kpreg.input_size is not JSON"):
        ModelInfo.from_metadata({"kpreg.keypoints": '["a"]', "kpreg.input_size": "64x48"}, "m.onnx")
