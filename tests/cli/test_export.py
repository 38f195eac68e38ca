"""export.py: a checkpoint → ONNX / TorchScript that predicts alone (its description embedded), with parity.

Parity per head (every head of ``kpreg.heads.__all__``, with and without the flip test, both runtimes) is
tested in ``tests/inference/test_export.py``; here the command, the embedded description and the predictor
on the exported file against the checkpoint's.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
from testkit.cli import run_in_process

import kpreg
from kpreg.cli.export import main as export_main
from kpreg.data.synthetic import render_figure

pytestmark = pytest.mark.slow  # runs the entry points as a user would (subprocesses, training)

ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")
FORMATS = [
    pytest.param("onnx", "m.onnx", marks=pytest.mark.skipif(
        any(importlib.util.find_spec(p) is None for p in ONNX_PACKAGES), reason="optional ONNX packages missing")),
    pytest.param("torchscript", "m.pt"),
]


def run_export(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    return run_in_process(export_main, capsys, *args)


@pytest.mark.parametrize(("fmt", "name"), FORMATS)
def test_exported_model_predicts_like_the_checkpoint(
    fmt: str, name: str, tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_export(capsys, "--ckpt", str(tiny_checkpoint), "--format", fmt, "--out", str(tmp_path / name))
    assert code == 0, err
    assert "with the flip test, dynamic batch, input 32x32" in out
    px, conf = (float(v) for v in re.search(r"max \|Δ coords\| (\S+) input px, max \|Δ confidence\| (\S+)", out).groups())
    assert px <= 1e-3 and conf <= 1e-4

    exported = kpreg.load(tmp_path / name)  # the file alone: no checkpoint, no config
    reference = kpreg.load(tiny_checkpoint, device="cpu")
    assert exported.backend == {"onnx": "onnxruntime", "torchscript": "torchscript"}[fmt]
    for field in ("keypoint_names", "skeleton", "flip_pairs", "input_size", "head", "backbone", "mean", "std"):
        assert getattr(exported.info, field) == getattr(reference.info, field), field
    assert exported.flip_test
    frame = np.zeros((40, 60, 3), np.uint8)
    frame[4:36, 20:52] = render_figure(3, 0, 32, True).image
    images = [render_figure(3, i, 32, True).image for i in range(3)] + [frame]  # batches of 1 to 4 crops
    boxes = [None, None, None, [[20, 4, 32, 32], [0, 0, 30, 40], [25, 10, 30, 20]]]
    for a, b in zip(exported.predict(images, boxes), reference.predict(images, boxes)):
        assert np.abs(a.keypoints - b.keypoints).max() <= 1e-3 and np.abs(a.confidence - b.confidence).max() <= 1e-4


def test_export_without_the_flip_test(tiny_checkpoint: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_export(capsys, "--ckpt", str(tiny_checkpoint), "--format", "torchscript", "--out",
                                str(tmp_path / "plain.pt"), "--no-flip", "--no-check")
    assert code == 0 and "without the flip test" in out and "parity" not in out
    exported = kpreg.load(tmp_path / "plain.pt")
    assert not exported.flip_test
    image = render_figure(3, 0, 32, True).image
    plain = kpreg.load(tiny_checkpoint, device="cpu", flip=False).predict(image)
    np.testing.assert_allclose(exported.predict(image).keypoints, plain.keypoints, atol=1e-3)
    with pytest.raises(ValueError, match="exported without the flip test; .* again with --flip"):
        kpreg.load(tmp_path / "plain.pt", flip=True)


def test_bad_export_requests_are_exit_2(tiny_checkpoint: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_export(capsys, "--ckpt", str(tmp_path / "nope.ckpt"), "--format", "onnx", "--out", "m.onnx")
    assert code == 2 and "checkpoint not found" in err
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    code, _, err = run_export(capsys, "--ckpt", str(tmp_path / "junk.ckpt"), "--format", "torchscript", "--out",
                              str(tmp_path / "m.pt"))
    assert code == 2 and "cannot read checkpoint" in err


def test_the_calibration_map_travels_in_the_exported_file(tiny_checkpoint: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from tests.inference.test_predictor import calibrated_checkpoint

    ckpt, _ = calibrated_checkpoint(tiny_checkpoint, tmp_path / "calibrated.ckpt")
    code, _, err = run_export(capsys, "--ckpt", str(ckpt), "--format", "torchscript", "--out", str(tmp_path / "c.pt"),
                              "--no-check")
    assert code == 0, err
    exported, reference = kpreg.load(tmp_path / "c.pt"), kpreg.load(ckpt, device="cpu")
    assert exported.calibrated and "calibrated P(correct)" in exported.describe()
    image = render_figure(3, 1, 32, True).image
    np.testing.assert_allclose(exported.predict(image).confidence, reference.predict(image).confidence, atol=1e-5)


@pytest.mark.skipif(any(importlib.util.find_spec(p) is None for p in ONNX_PACKAGES),
                    reason="optional ONNX packages missing")
def test_int8_export_is_quantised_and_predicts_near_the_checkpoint(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import cv2
    import onnx

    frames = tmp_path / "frames"
    frames.mkdir()
    images = [render_figure(5, i, 32, True).image for i in range(12)]
    for i, image in enumerate(images):
        cv2.imwrite(str(frames / f"f{i:02d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    out = tmp_path / "int8.onnx"
    code, text, err = run_export(capsys, "--ckpt", str(tiny_checkpoint), "--format", "onnx", "--out", str(out),
                                 "--int8", str(frames), "--calibration-frames", "8")
    assert code == 0, err
    assert "onnx int8" in text and "calibrated on 8 crops" in text and "8 calibration crops" in text
    ops = {node.op_type for node in onnx.load(str(out)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops

    exported = kpreg.load(out)  # the metadata survives quantisation: the file alone predicts
    reference = kpreg.load(tiny_checkpoint, device="cpu")
    assert exported.backend == "onnxruntime" and exported.keypoint_names == reference.keypoint_names
    # the session's idle threads sleep rather than spin: decoding and cropping threads share the cores
    options = exported.runtime.session.get_session_options()  # type: ignore[attr-defined]
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    a = np.stack([p.keypoints for p in exported.predict(images)])  # (12, K, 2) image px
    b = np.stack([p.keypoints for p in reference.predict(images)])
    assert np.isfinite(a).all()
    assert np.median(np.linalg.norm(a - b, axis=-1)) < 2.0  # of a 32-px image: int8 rounding, not a broken graph


def test_int8_needs_onnx_and_a_source_with_frames(tiny_checkpoint: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_export(capsys, "--ckpt", str(tiny_checkpoint), "--format", "torchscript", "--out",
                              str(tmp_path / "m.pt"), "--int8", str(tmp_path))
    assert code == 2 and "--int8 quantises an ONNX model" in err
    code, _, err = run_export(capsys, "--ckpt", str(tiny_checkpoint), "--format", "onnx", "--out",
                              str(tmp_path / "m.onnx"), "--int8", str(tmp_path / "missing"))
    assert code == 2 and "no such file or folder" in err
