"""EnsemblePredictor on fake networks whose answers are known: the mean, the variance, coarse to fine as one, and
members that cannot form an ensemble."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kpreg.inference.ensemble import EnsembleError, read_disagreement, write_disagreement
from kpreg.inference.ensemble_predictor import EnsemblePredictor
from kpreg.inference.locate import LocateError
from kpreg.inference.model_info import ModelInfo
from kpreg.inference.predictor import Predictor


class _SpotRuntime:
    """Both keypoints at the brightest input pixel, shifted by ``shift`` input px, confidence ``conf``."""

    name, device, flip_test = "fake", "cpu", False

    def __init__(self, shift: float, conf: float) -> None:
        self.shift, self.conf, self.calls = shift, conf, 0

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls += 1
        grey = images.mean(1)  # (B, H, W)
        flat = grey.flatten(1).argmax(1)  # (B,)
        w = grey.shape[-1]
        xy = torch.stack([(flat % w).float(), (flat // w).float()], -1) + self.shift  # (B, 2)
        return torch.stack([xy, xy + 2.0], 1), torch.full((len(images), 2), self.conf)


def member(shift: float, conf: float, mode: str = "image", names: tuple[str, ...] = ("a", "b")) -> Predictor:
    info = ModelInfo(keypoint_names=names, skeleton=(), flip_pairs=(), input_size=(40, 40), head="Fake",
                     backbone="none", flip_test=False, crop_mode=mode)  # type: ignore[arg-type]
    return Predictor(_SpotRuntime(shift, conf), info)


def scene() -> np.ndarray:
    image = np.full((40, 40, 3), 60, np.uint8)
    image[20, 10] = 255  # the brightest pixel: (10, 20); the whole 40×40 image maps 1:1 on the 40×40 input
    return image


def test_the_ensemble_is_the_members_mean_and_variance() -> None:
    ens = EnsemblePredictor([member(-1.0, 0.2), member(3.0, 0.6)], ["m1", "m2"])
    out = ens.predict(scene())
    np.testing.assert_allclose(out.keypoints[0], [[11.0, 21.0], [13.0, 23.0]], atol=1e-4)  # mean shift +1
    np.testing.assert_allclose(out.confidence[0], [0.4, 0.4], atol=1e-6)
    np.testing.assert_allclose(out.variance[0], [4.0, 4.0], atol=1e-4)  # members ±2 px from the mean in x and y
    frames = [type("F", (), {"image": scene()})() for _ in range(3)]
    streamed = [p for _, p in ens.stream(frames)]
    assert len(streamed) == 3 and all(np.allclose(p.keypoints, out.keypoints) for p in streamed)


def test_the_ensemble_finds_the_animal_as_one() -> None:
    members = [member(0.0, 0.9, "both"), member(0.0, 0.9, "both")]
    image = np.full((120, 160, 3), 60, np.uint8)
    image[71, 101] = 255
    found = EnsemblePredictor(members, ["m1", "m2"]).locate(image, refine=1)
    assert [m.runtime.calls for m in members] == [2, 2]  # the whole image, then the crop of the ensemble's keypoints
    assert found.boxes[0].w < 160 and found.variance is not None and found.variance.shape == (1, 2)
    with pytest.raises(LocateError, match="trained on crops"):
        EnsemblePredictor([member(0, 0.9, "crop"), member(0, 0.9, "crop")], ["m1", "m2"]).locate(image)


def test_members_that_cannot_form_an_ensemble_are_named() -> None:
    with pytest.raises(EnsembleError, match=r"m1 and m2 predict different keypoints .*\['b', 'c'\]"):
        EnsemblePredictor([member(0, 0.5), member(0, 0.5, names=("a", "c"))], ["m1", "m2"])
    with pytest.raises(EnsembleError, match="m1 and m3 were trained to see the animal differently"):
        EnsemblePredictor([member(0, 0.5), member(0, 0.5), member(0, 0.5, "both")], ["m1", "m2", "m3"])


def test_disagreement_file_round_trip_and_refusals(tmp_path) -> None:
    variance = np.array([[4.0, 0.25], [np.nan, 1.0], [0.0, 9.0]])  # (T, K) px²
    path = write_disagreement(tmp_path / "disagreement.csv", ["a", "b"], [0, 1, 2], variance)
    assert path.read_text().splitlines()[:2] == ["frame,a,b", "0,2.0000,0.5000"]  # standard deviations, px
    np.testing.assert_allclose(read_disagreement(path, ["a", "b"], 3), variance)
    with pytest.raises(EnsembleError, match="has 3 frame.*the video has 4"):
        read_disagreement(path, ["a", "b"], 4)
    with pytest.raises(EnsembleError, match="expected the header frame, a, c"):
        read_disagreement(path, ["a", "c"], 3)
