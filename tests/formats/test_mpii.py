"""MPII file I/O: 1-based MATLAB files <-> kpreg 0-based arrays, shapes and validation."""

import json

import h5py
import numpy as np
import pytest
import scipy.io

from kpreg.formats.mpii import load_annotation_json, load_gt_mat, load_predictions, save_pred_mat


def write_gt_mat(path, joints_1b, missing, boxes_1b):
    """gt_valid.mat layout: pos_gt_src 16x2xN, jnt_missing 16xN, headboxes_src 2x2xN (1-based)."""
    scipy.io.savemat(
        path,
        {
            "pos_gt_src": np.transpose(joints_1b, (1, 2, 0)),
            "jnt_missing": np.asarray(missing, np.uint8).T,
            "headboxes_src": np.transpose(boxes_1b, (1, 2, 0)),
        },
    )


def test_load_gt_mat_converts_to_zero_based(tmp_path):
    rng = np.random.default_rng(0)
    joints = rng.uniform(1, 300, (3, 16, 2))  # (N, 16, 2) 1-based
    missing = np.zeros((3, 16), bool)
    missing[1, 4] = True
    boxes = np.array([[[11, 21], [17, 29]]] * 3, float)  # diagonal 10 -> head size 6
    write_gt_mat(tmp_path / "gt.mat", joints, missing, boxes)
    gt = load_gt_mat(tmp_path / "gt.mat")
    assert len(gt) == 3
    np.testing.assert_array_equal(gt.joints, joints - 1)
    np.testing.assert_array_equal(gt.visible, ~missing)
    np.testing.assert_array_equal(gt.headboxes[0], [[10, 20], [16, 28]])
    np.testing.assert_allclose(gt.head_size, 6.0)


def test_load_gt_mat_zero_head_box_names_file_and_index(tmp_path):
    boxes = np.array([[[11, 21], [17, 29]], [[5, 5], [5, 5]]], float)
    write_gt_mat(tmp_path / "gt.mat", np.ones((2, 16, 2)), np.zeros((2, 16)), boxes)
    with pytest.raises(ValueError, match=r"gt\.mat.*index 1"):
        load_gt_mat(tmp_path / "gt.mat")


def test_save_load_round_trip_is_one_based_on_disk(tmp_path):
    preds = np.random.default_rng(1).uniform(-0.5, 99.5, (4, 16, 2))  # (N, 16, 2) 0-based
    save_pred_mat(tmp_path / "pred.mat", preds)
    raw = scipy.io.loadmat(tmp_path / "pred.mat")["preds"]
    np.testing.assert_allclose(raw, preds + 1)  # MATLAB convention on disk
    np.testing.assert_allclose(load_predictions(tmp_path / "pred.mat"), preds)
    np.testing.assert_allclose(load_predictions(tmp_path / "pred.mat", one_based=False), preds + 1)


@pytest.mark.parametrize("layout", ["n16x2", "2x16xn", "16x2xn"])
@pytest.mark.parametrize("suffix", [".mat", ".h5"])
def test_transposed_layouts_accepted(tmp_path, layout, suffix):
    preds = np.arange(5 * 16 * 2, dtype=float).reshape(5, 16, 2)  # (N, 16, 2) 1-based
    arr = {"n16x2": preds, "2x16xn": preds.transpose(2, 1, 0), "16x2xn": preds.transpose(1, 2, 0)}[layout]
    path = tmp_path / f"p{suffix}"
    if suffix == ".mat":
        scipy.io.savemat(path, {"preds": arr})
    else:
        with h5py.File(path, "w") as f:
            f["preds"] = arr
    np.testing.assert_array_equal(load_predictions(path), preds - 1)


def test_v73_hdf5_mat_is_read_in_matlab_axis_order(tmp_path):
    # MATLAB -v7.3 stores an N x 16 x 2 array column-major: h5py sees (2, 16, N).
    preds = np.arange(3 * 16 * 2, dtype=float).reshape(3, 16, 2)
    with h5py.File(tmp_path / "p73.mat", "w") as f:
        f["preds"] = preds.T
    np.testing.assert_array_equal(load_predictions(tmp_path / "p73.mat"), preds - 1)


@pytest.mark.parametrize("shape", [(5, 15, 2), (5, 16, 3), (16, 5), (2, 2, 2)])
def test_wrong_shapes_rejected_with_file_name(tmp_path, shape):
    path = tmp_path / "bad_preds.mat"
    scipy.io.savemat(path, {"preds": np.zeros(shape)})
    with pytest.raises(ValueError, match="bad_preds.mat"):
        load_predictions(path)


def test_missing_key_and_unknown_suffix(tmp_path):
    with h5py.File(tmp_path / "nokey.h5", "w") as f:
        f["joints"] = np.zeros((2, 16, 2))
    with pytest.raises(ValueError, match=r"nokey\.h5.*preds"):
        load_predictions(tmp_path / "nokey.h5")
    (tmp_path / "p.npy").write_bytes(b"")
    with pytest.raises(ValueError, match=r"p\.npy"):
        load_predictions(tmp_path / "p.npy")


def _entry(**over):
    e = {
        "image": "000001.jpg",
        "center": [101.0, 51.0],
        "scale": 2.5,
        "joints": [[float(i + 1), float(2 * i + 1)] for i in range(16)],
        "joints_vis": [1] * 15 + [0],
    }
    e.update(over)
    return e


def test_annotation_json_zero_based(tmp_path):
    path = tmp_path / "valid.json"
    path.write_text(json.dumps([_entry()]))
    (rec,) = load_annotation_json(path)
    assert rec.image == "000001.jpg" and rec.scale == 2.5
    np.testing.assert_array_equal(rec.center, [100.0, 50.0])
    np.testing.assert_array_equal(rec.joints[3], [3.0, 6.0])
    assert rec.joints_vis.dtype == bool and rec.joints_vis.sum() == 15


@pytest.mark.parametrize(
    "bad, message",
    [
        (_entry(joints=[[1.0, 1.0]] * 15), "joints must be 16x2"),
        (_entry(joints=[[float("nan"), 1.0]] + [[1.0, 1.0]] * 15), "NaN"),
        ({k: v for k, v in _entry().items() if k != "scale"}, "missing key"),
        (_entry(joints_vis=[1] * 14), "joints_vis"),
        (_entry(center=[1.0]), "center"),
    ],
)
def test_annotation_json_errors_name_file_and_index(tmp_path, bad, message):
    path = tmp_path / "train.json"
    path.write_text(json.dumps([_entry(), _entry(), bad]))  # json writes NaN literally
    with pytest.raises(ValueError, match=rf"train\.json: entry 2: .*{message}"):
        load_annotation_json(path)


def test_annotation_json_test_split_without_joints(tmp_path):
    path = tmp_path / "test.json"
    entry = {k: v for k, v in _entry().items() if k not in ("joints", "joints_vis")}
    path.write_text(json.dumps([entry]))
    with pytest.raises(ValueError, match="entry 0"):
        load_annotation_json(path)
    (rec,) = load_annotation_json(path, require_joints=False)
    assert np.isnan(rec.joints).all() and not rec.joints_vis.any()
