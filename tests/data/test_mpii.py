"""MPIIDataModule on a generated MPII-format fixture (tests/testkit/mpii.py): contract, geometry,
gt_valid.mat row order, the metric path (in-training PCKh == scoring the written pred.mat), bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from testkit.mpii import MPIIFixture, make_mpii_root

from kpreg.cli.score import score_main
from kpreg.coords import apply_affine, flip_permutation
from kpreg.data.mpii import MPIIDataModule
from kpreg.data.sample import META_KEYS, SAMPLE_KEYS
from kpreg.data.topdown import DataError
from kpreg.formats.mpii import MPII_FLIP_PAIRS, MPII_JOINT_NAMES, load_predictions, save_pred_mat
from kpreg.metrics import build_metrics
from kpreg.metrics.mpii_score import SUMMARY_KEYS, score_mpii_files, score_mpii_files_detailed

NO_AUG = dict(scale_factor=0.0, rotation=0.0, rotation_prob=0.0, flip_prob=0.0, photometric=False)


@pytest.fixture(scope="module")
def fixture(tmp_path_factory) -> MPIIFixture:
    return make_mpii_root(tmp_path_factory.mktemp("mpii"))


def _dm(root: Path, **kwargs) -> MPIIDataModule:
    args = dict(input_size=(64, 48), batch_size=2, num_workers=0, pin_memory=False) | kwargs
    return MPIIDataModule(str(root), **args)


def _all_batches(dm: MPIIDataModule) -> list[dict]:
    return list(dm.test_dataloader())


def test_lengths_sample_contract_and_keypoint_metadata(fixture: MPIIFixture) -> None:
    dm = _dm(fixture.root)
    dm.setup("fit")
    assert len(dm.datasets["train"]) == 6 and len(dm.datasets["val"]) == 4
    assert dm.datasets["test"] is dm.datasets["val"]  # the community evaluates on valid
    assert dm.keypoint_names == list(MPII_JOINT_NAMES) and dm.num_keypoints == 16
    assert dm.flip_pairs == [tuple(p) for p in MPII_FLIP_PAIRS] and dm.input_size == (64, 48)
    for split in ("train", "val"):
        s = dm.datasets[split][1]
        assert tuple(s) == SAMPLE_KEYS and set(META_KEYS) <= set(s["meta"])
        assert s["image"].shape == (3, 64, 48) and s["image"].dtype == torch.float32
        assert s["keypoints"].shape == (16, 2) and s["visibility"].shape == (16,)
        assert s["meta"]["index"].item() == 1
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 64, 48) and batch["meta"]["affine_inv"].shape == (2, 2, 3)


def test_only_valid_is_loaded_for_evaluation(tmp_path) -> None:
    fx = make_mpii_root(tmp_path, num_train=1, num_valid=2)
    (fx.root / "annot" / "train.json").unlink()  # evaluate.py must not need the training split
    dm = _dm(fx.root)
    dm.setup("test")
    assert set(dm.datasets) == {"val", "test"}


def test_valid_sample_i_carries_gt_row_i(fixture: MPIIFixture) -> None:
    dm = _dm(fixture.root)
    dm.setup("test")
    for i in range(len(dm.datasets["test"])):
        meta = dm.datasets["test"][i]["meta"]
        assert torch.equal(meta["keypoints_orig"], torch.from_numpy(fixture.valid_joints[i]))
        assert torch.equal(meta["visible_orig"], torch.from_numpy(fixture.valid_visible[i]))
        assert meta["norm_length"].item() == pytest.approx(fixture.valid_head_size[i], abs=1e-9)


@pytest.mark.parametrize("split", ["train", "val"])
def test_affine_round_trip_to_original_pixels(fixture: MPIIFixture, split: str) -> None:
    dm = _dm(fixture.root, half_body_prob=0.5, photometric=True)
    dm.setup("fit")
    ds = dm.datasets[split]
    for _ in range(3):
        for i in range(len(ds)):
            s = ds[i]
            back = apply_affine(s["keypoints"].double(), s["meta"]["affine_inv"])  # (16, 2) original px
            assert torch.abs(back - s["meta"]["keypoints_orig"]).max() < 1e-3


def test_crop_follows_hrnet_center_shift_and_padding(fixture: MPIIFixture) -> None:
    """Input centre ↔ annotated centre + 15·scale px down; crop width = 1.25 · scale · 200 px."""
    h, w = 64, 48
    dm = _dm(fixture.root, input_size=(h, w))
    dm.setup("test")
    entries = json.loads((fixture.root / "annot" / "valid.json").read_text())
    for i, entry in enumerate(entries):
        inv = dm.datasets["test"][i]["meta"]["affine_inv"].numpy()  # (2, 3) input → original
        center0 = np.array(entry["center"]) - 1.0  # 0-based
        expected = center0 + np.array([0.0, 15.0 * entry["scale"]])
        np.testing.assert_allclose(apply_affine(np.array([[w / 2 - 0.5, h / 2 - 0.5]]), inv)[0], expected, atol=1e-9)
        np.testing.assert_allclose(inv[:, :2], np.eye(2) * 1.25 * entry["scale"] * 200 / w, atol=1e-12)


def test_flip_swaps_left_right_and_mirrors_the_crop(fixture: MPIIFixture) -> None:
    w = 48
    plain = _dm(fixture.root, **NO_AUG)
    flipped = _dm(fixture.root, **(NO_AUG | {"flip_prob": 1.0}))
    plain.setup("fit")
    flipped.setup("fit")
    perm = flip_permutation(16, MPII_FLIP_PAIRS)
    for i in range(3):
        a, b = plain.datasets["train"][i], flipped.datasets["train"][i]
        expected = a["keypoints"][perm].clone()
        expected[:, 0] = (w - 1) - expected[:, 0]
        assert torch.allclose(b["keypoints"], expected, atol=1e-4)
        assert torch.equal(b["visibility"], a["visibility"][perm])
        assert torch.allclose(b["image"], a["image"].flip(-1), atol=0.05)  # bilinear rounding only


def _predictions(dm: MPIIDataModule, noise: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ground truth (+ noise quantised to 1/16 px, exact through the ±1 file shift) from the batches."""
    gen = torch.Generator().manual_seed(0)
    metric = build_metrics(dm.evaluation())
    indices, coords = [], []
    for batch in _all_batches(dm):
        gt = batch["meta"]["keypoints_orig"]  # (B, 16, 2) original px
        pred = gt + torch.round(torch.randn(gt.shape, generator=gen, dtype=torch.float64) * noise * 16) / 16
        metric.update(pred, torch.ones(gt.shape[:2]), batch["meta"])
        indices.append(batch["meta"]["index"])
        coords.append(pred)
    return metric.compute(), torch.cat(indices), torch.cat(coords)


@pytest.mark.parametrize("noise", [0.0, 4.0])
def test_training_metric_equals_scoring_the_written_pred_mat(fixture: MPIIFixture, tmp_path, noise: float) -> None:
    dm = _dm(fixture.root)
    dm.setup("test")
    metrics, indices, coords = _predictions(dm, noise)
    if noise == 0.0:  # perfect predictions: 100 everywhere, AUC included (official `<=`)
        assert all(metrics[k] == 100.0 for k in SUMMARY_KEYS) and metrics["MeanError"] == 0.0
    assert {f"joint/{n}" for n in MPII_JOINT_NAMES} | set(SUMMARY_KEYS) | {"MeanError"} <= set(metrics)
    written = {p.name: p for p in dm.write_predictions(tmp_path, indices, coords, torch.ones(coords.shape[:2]))}
    assert set(written) == {"pred.mat", "predictions.json"}
    path = written["pred.mat"]
    np.testing.assert_array_equal(load_predictions(path), coords.numpy())  # dataset order, 1-based on disk
    score = score_mpii_files_detailed(fixture.root / "annot" / "gt_valid.mat", path)
    assert score.summary == {k: metrics[k] for k in SUMMARY_KEYS}
    assert score.mean_error_px == pytest.approx(metrics["MeanError"], abs=1e-12)
    # and through the command line: evaluate.py score --dataset mpii --gt … --pred … --json …
    out = tmp_path / "score.json"
    score_main(["--dataset", "mpii", "--gt", str(fixture.root / "annot" / "gt_valid.mat"), "--pred", str(path),
                "--json", str(out)])
    assert json.loads(out.read_text()) == {k: metrics[k] for k in SUMMARY_KEYS}
    # predictions.json (kpreg's schema, 0-based, 1e-4 px) is scored the same way: in index order, unshifted
    from_json = load_predictions(written["predictions.json"])
    np.testing.assert_allclose(from_json, coords.numpy(), atol=1e-4)
    save_pred_mat(tmp_path / "rounded.mat", from_json)
    score_main(["--dataset", "mpii", "--gt", str(fixture.root / "annot" / "gt_valid.mat"), "--pred",
                str(written["predictions.json"]), "--json", str(out), "--overwrite"])
    assert json.loads(out.read_text()) == score_mpii_files(fixture.root / "annot" / "gt_valid.mat", tmp_path / "rounded.mat")


def test_write_predictions_refuses_an_incomplete_set(fixture: MPIIFixture, tmp_path) -> None:
    dm = _dm(fixture.root)
    dm.setup("test")
    coords = torch.zeros(3, 16, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="first missing index: 3"):
        dm.write_predictions(tmp_path, torch.arange(3), coords, torch.ones(3, 16))


# ---- bad input -------------------------------------------------------------------------------------
def _edit_valid_json(root: Path, edit) -> None:
    path = root / "annot" / "valid.json"
    entries = json.loads(path.read_text())
    edit(entries)
    path.write_text(json.dumps(entries))


def test_missing_and_corrupt_images_name_file_and_index(tmp_path) -> None:
    fx = make_mpii_root(tmp_path, num_train=1, num_valid=3)
    (fx.root / "images" / "valid_0001.jpg").unlink()
    (fx.root / "images" / "valid_0002.jpg").write_bytes(b"\xff\xd8 truncated")
    dm = _dm(fx.root)
    dm.setup("test")
    with pytest.raises(DataError, match=r"image not found: .*valid_0001\.jpg \(sample 1\)"):
        dm.datasets["test"][1]
    with pytest.raises(DataError, match=r"cannot decode image.*valid_0002\.jpg \(sample 2\)"):
        dm.datasets["test"][2]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda e: e[2].update(joints=e[2]["joints"][:15]), r"valid\.json: entry 2: joints must be 16x2"),
        (lambda e: e[1]["joints"][4].__setitem__(0, float("nan")), r"valid\.json: entry 1: NaN joint"),
        (lambda e: e.pop(), r"valid\.json has 3 persons but .*gt_valid\.mat has 4 rows"),
        (lambda e: e.reverse(), r"valid\.json entry 0 and .*gt_valid\.mat row 0 are not the same person"),
    ],
    ids=["joint-count", "nan", "length", "order"],
)
def test_bad_valid_json_names_file_and_entry(tmp_path, edit, message: str) -> None:
    fx = make_mpii_root(tmp_path, num_train=1, num_valid=4)
    _edit_valid_json(fx.root, edit)
    with pytest.raises(DataError, match=message):
        _dm(fx.root).setup("test")


def test_missing_annotation_file(tmp_path) -> None:
    fx = make_mpii_root(tmp_path, num_train=1, num_valid=2)
    (fx.root / "annot" / "gt_valid.mat").unlink()
    with pytest.raises(FileNotFoundError, match=r"gt_valid\.mat"):
        _dm(fx.root).setup("test")


@pytest.mark.parametrize("shape", [(3, 16, 2), (4, 15, 2)], ids=["rows", "joints"])
def test_mismatched_prediction_file_names_the_file(fixture: MPIIFixture, tmp_path, shape) -> None:
    path = tmp_path / "bad_pred.mat"
    save_pred_mat(path, np.zeros(shape))
    with pytest.raises(ValueError, match=r"bad_pred\.mat"):
        score_mpii_files_detailed(fixture.root / "annot" / "gt_valid.mat", path)
