"""DeepLabCutDataModule on generated projects (tests/testkit/dlc.py): splits, boxes, flip pairs from names, skips
counted and printed, each bad input with one message naming the file and the line, the in-memory COCO ground truth
and the predictions it writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from testkit.dlc import DLCProject, make_dlc_project

from kpreg.coords import apply_affine, box_to_center_size
from kpreg.data.deeplabcut import DeepLabCutDataModule
from kpreg.data.errors import DataError
from kpreg.formats.deeplabcut import DLCFormatError, read_collected_data
from kpreg.metrics import build_metrics


def _dm(project: DLCProject | Path, **kwargs) -> DeepLabCutDataModule:
    root = project.root if isinstance(project, DLCProject) else project
    args = dict(project=str(root), input_size=(32, 32), batch_size=4, num_workers=0, val_every=3)
    return DeepLabCutDataModule(**{**args, **kwargs})


@pytest.fixture
def project(tmp_path: Path) -> DLCProject:
    # two videos × 6 labelled frames (odd frames miss one keypoint) + 1 empty row each; 48×64 frames
    return make_dlc_project(tmp_path / "proj", frames=6, empty_rows=1)


def test_layout_from_the_header_and_flip_pairs_from_names(project: DLCProject) -> None:
    dm = _dm(project)
    assert dm.keypoint_names == ["snout", "leftear", "rightear", "tailbase"]
    assert dm.flip_pairs == [(1, 2)]  # leftear / rightear
    assert dm.flip_augmentation and dm.augmentation.photometric
    assert dm.sigmas == [0.05] * 4 and dm.skeleton == []
    assert dm.metric_families[0] == "pixel" and build_metrics(dm.evaluation()).primary == "MeanError"
    given = _dm(project, flip_pairs=[], skeleton=[["snout", "leftear"], [0, 3]], sigmas=[0.1, 0.2, 0.2, 0.3])
    assert given.flip_pairs == [] and not given.flip_augmentation  # no pairs: the default augmentation never flips
    assert given.skeleton == [(0, 1), (0, 3)] and given.sigmas == [0.1, 0.2, 0.2, 0.3]
    assert given.describe()["skeleton"] == [[0, 1], [0, 3]]


def test_skeleton_from_the_project_config(project: DLCProject) -> None:
    (project.root / "config.yaml").write_text("Task: mice\nskeleton:\n- [snout, tailbase]\n- [leftear, rightear]\n")
    dm = _dm(project)
    assert dm.skeleton == [(0, 3), (1, 2)] and dm.task == "mice"
    (project.root / "config.yaml").write_text("skeleton:\n- [snout, tail]\n")
    with pytest.raises(DataError, match=r"config.yaml: skeleton edge 0 names 'tail', which is not a keypoint"):
        _dm(project)


def test_split_and_skips_are_counted_and_printed(project: DLCProject, capsys: pytest.CaptureFixture) -> None:
    dm = _dm(project)
    dm.setup("fit")
    out = capsys.readouterr().out
    # 12 labelled frames, frames 0 and 3 of each video to validation
    assert "DeepLabCut project: 12 labelled frames in 2 table(s)" in out
    assert "skipped 2 frame(s) with every keypoint empty" in out
    assert "DeepLabCut train: 8 samples from 8 images" in out and "DeepLabCut val: 4 samples from 4 images" in out
    val_frames = [project.image_paths[i] for i in dm.frames["val"]]
    assert val_frames == ["labeled-data/mouseA/img0000.png", "labeled-data/mouseA/img0003.png",
                          "labeled-data/mouseB/img0000.png", "labeled-data/mouseB/img0003.png"]
    assert len(dm.datasets["train"]) == 8 and dm.datasets["test"] is dm.datasets["val"]


def test_a_frame_with_one_labelled_keypoint_has_no_extent_box(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Three keypoints; the odd frames leave one empty, and a frame with a single label cannot give a keypoint box:
    skipped and counted (box_source keypoints), kept with the whole frame as its box (box_source image)."""
    proj = make_dlc_project(tmp_path / "p", folders=("v",), frames=5, bodyparts=("a", "b"))
    dm = _dm(proj, val_every=4)  # validation: frames 0 and 4; training: 1, 2, 3
    dm.setup("fit")
    assert "DeepLabCut train: 1 samples from 1 images" in capsys.readouterr().out.replace(
        "skipped 2 frame(s) whose labelled keypoints span no area", "")
    assert dm.reports["train"].skipped == {"frame(s) whose labelled keypoints span no area (a keypoints box)": 2}
    assert len(dm.records["val"]) == 2 and dm.frames["train"] == [2]  # frames 1 and 3 have one label each
    whole = _dm(proj, val_every=4, box_source="image")
    whole.setup("fit")
    assert len(whole.records["train"]) == 3
    lone = whole.records["train"][0]
    assert lone.instance_size == 0.0 and lone.area == 0.0  # left out of box-relative PCK, OKS undefined


def test_boxes_from_the_labelled_extent_or_the_whole_frame(project: DLCProject) -> None:
    dm = _dm(project, input_size=(32, 48), padding=1.5)
    dm.setup("validate")
    rec, row = dm.records["val"][0], dm.frames["val"][0]
    xy = project.keypoints[row][project.labelled[row]]  # (L, 2)
    lo, hi = xy.min(0), xy.max(0)
    np.testing.assert_allclose(rec.center, (lo + hi) / 2)
    w, h = hi - lo
    expect = np.array([max(w, 1.5 * h), max(w, 1.5 * h) / 1.5]) * 1.5  # aspect 48/32 = 1.5, padded 1.5
    np.testing.assert_allclose(rec.box_size, expect)
    assert rec.instance_size == pytest.approx(max(w, h)) == rec.norm_length
    assert rec.area == pytest.approx(0.53 * max(w, h) ** 2)
    whole = _dm(project, box_source="image")
    whole.setup("validate")
    center, size = box_to_center_size([0, 0, 64, 48], 1.0, 1.0)  # 64×48 frame, square input
    np.testing.assert_allclose(whole.records["val"][0].center, center)  # (31.5, 23.5): the frame's middle
    np.testing.assert_allclose(whole.records["val"][0].box_size, size)
    assert whole.records["val"][0].instance_size == rec.instance_size  # the metric's scale is the animal's
    # every sample maps back to its labels in the original frame
    for sample in (dm.datasets["val"][0], whole.datasets["val"][0]):
        vis = sample["meta"]["visible_orig"].numpy()
        back = apply_affine(sample["keypoints"].numpy().astype(np.float64), sample["meta"]["affine_inv"].numpy())
        np.testing.assert_allclose(back[vis], sample["meta"]["keypoints_orig"].numpy()[vis], atol=1e-4)
        np.testing.assert_allclose(sample["meta"]["keypoints_orig"].numpy()[vis], project.keypoints[row][vis])


def test_ground_truth_and_metrics_of_perfect_and_shifted_predictions(project: DLCProject) -> None:
    dm = _dm(project)
    dm.setup("validate")
    gt = dm.coco_gt_dict()
    assert [img["file_name"] for img in gt["images"]] == [project.image_paths[i] for i in dm.frames["val"]]
    assert gt["images"][0]["width"] == 64 and gt["images"][0]["height"] == 48
    ann = gt["annotations"][1]  # frame 3 of mouseA: an odd frame, one keypoint empty
    assert ann["num_keypoints"] == 3 and ann["keypoints"][2::3].count(0.0) == 1
    batch = next(iter(dm.val_dataloader()))
    meta = batch["meta"]
    metric = build_metrics(dm.evaluation())
    gt_xy = meta["keypoints_orig"]  # (B, K, 2) original pixels
    metric.update(gt_xy, torch.ones(gt_xy.shape[:2]), meta)
    perfect = metric.compute()
    assert perfect["MeanError"] == 0.0 and perfect["PCK@5px"] == 100.0 and perfect["AP"] == pytest.approx(1.0)
    metric.reset()
    metric.update(gt_xy + torch.tensor([0.0, 3.0], dtype=torch.float64), torch.ones(gt_xy.shape[:2]), meta)
    shifted = metric.compute()
    assert shifted["MeanError"] == pytest.approx(3.0) and shifted["MedianError"] == pytest.approx(3.0)
    assert shifted["PCK@5px"] == 100.0 and shifted["PCK@2px"] == 0.0 and shifted["AP"] < 1.0


def test_predictions_written_as_json_and_as_a_deeplabcut_table(project: DLCProject, tmp_path: Path) -> None:
    dm = _dm(project)
    dm.setup("test")
    n = len(dm.records["val"])
    coords = torch.rand(n, 4, 2, dtype=torch.float64) * 40  # (N, K, 2) original pixels
    scores = torch.rand(n, 4)
    paths = dm.write_predictions(tmp_path / "out", torch.arange(n), coords, scores)
    assert [p.name for p in paths] == ["predictions.json", "predictions.csv"]
    table = read_collected_data(paths[1])
    assert table.scorer == "kpreg" and table.bodyparts == tuple(dm.keypoint_names)
    assert list(table.image_paths) == [project.image_paths[i] for i in dm.frames["val"]]
    np.testing.assert_allclose(table.keypoints, coords.numpy(), atol=1e-6)
    np.testing.assert_allclose(table.likelihood, scores.double().numpy(), atol=1e-6)
    with pytest.raises(DataError, match="outside the test split"):
        dm.write_predictions(tmp_path / "out", torch.tensor([n]), coords[:1], scores[:1])


# ---- bad input: one message naming the file and the line ---------------------------------------------
def _edit_line(path: Path, line: int, edit) -> None:  # noqa: ANN001 - str → str
    lines = path.read_text().splitlines()
    lines[line - 1] = edit(lines[line - 1])
    path.write_text("\n".join(lines) + "\n")


def test_wrong_header(project: DLCProject) -> None:
    _edit_line(project.csv_files[0], 3, lambda s: s.replace("coords", "coordinates"))
    with pytest.raises(DLCFormatError, match=r"CollectedData_tester.csv: line 3 should start with 'coords'"):
        _dm(project)


def test_missing_image(project: DLCProject) -> None:
    (project.root / "labeled-data" / "mouseB" / "img0002.png").unlink()
    dm = _dm(project)
    with pytest.raises(DLCFormatError, match=r"mouseB/CollectedData_tester.csv, line 6 \(labeled-data/mouseB/"
                                             r"img0002.png\): image file .* does not exist"):
        dm.setup("fit")


def test_keypoint_outside_its_image(project: DLCProject) -> None:
    # line 5 = frame 1 of mouseA; its first cells (after 3 index columns) are snout x, y: x = 70 > 63.5
    _edit_line(project.csv_files[0], 5, lambda s: ",".join(s.split(",")[:3] + ["70.0"] + s.split(",")[4:]))
    with pytest.raises(DLCFormatError, match=r"mouseA/CollectedData_tester.csv, line 5 .*bodypart 'snout' at "
                                             r"x=70, .* is outside the 64x48 image"):
        _dm(project).setup("fit")


def test_duplicate_image_entries(project: DLCProject) -> None:
    lines = project.csv_files[1].read_text().splitlines()
    project.csv_files[1].write_text("\n".join(lines + [lines[4]]) + "\n")
    with pytest.raises(DLCFormatError, match=r"mouseB/CollectedData_tester.csv: line \d+: image "
                                             r"'labeled-data/mouseB/img0001.png' is listed twice \(first at line 5\)"):
        _dm(project)


def test_multi_animal_table_is_refused(project: DLCProject) -> None:
    lines = project.csv_files[0].read_text().splitlines()
    lines.insert(1, "individuals,,," + ",".join(["mouse1"] * 8))
    project.csv_files[0].write_text("\n".join(lines) + "\n")
    with pytest.raises(DLCFormatError, match="line 2 is an 'individuals' row: multi-animal projects are not"):
        _dm(project)


def test_an_empty_validation_split_is_an_error(tmp_path: Path) -> None:
    """Every validation frame has one label only, so keypoint boxes skip them all: training would run without
    validation. One error, naming the split, the project and what was skipped."""
    proj = make_dlc_project(tmp_path / "p", folders=("v",), frames=4, bodyparts=("a", "b"))
    dm = _dm(proj, val_every=None, val_files=["labeled-data/v/img0001.png", "labeled-data/v/img0003.png"])
    with pytest.raises(DataError, match=r"the val split has no samples \(DeepLabCut val: 0 samples .*skipped 2 "
                                        r"frame\(s\) whose labelled keypoints span no area.*split: explicit lists"):
        dm.setup("fit")


def test_both_trains_on_the_crop_and_the_whole_frame_and_evaluates_on_the_crop(project: DLCProject) -> None:
    crop, both = _dm(project), _dm(project, box_source="both")
    crop.setup("fit")
    both.setup("fit")
    n = len(crop.records["train"])
    assert len(both.records["train"]) == 2 * n and both.frames["train"] == [f for f in crop.frames["train"]
                                                                            for _ in range(2)]
    assert both.reports["train"].samples == 2 * n and both.reports["train"].images == n
    first, second = both.records["train"][0], both.records["train"][1]  # one frame: its crop, then its whole frame
    np.testing.assert_allclose(first.box_size, crop.records["train"][0].box_size)
    assert second.box_size.min() >= 48  # the 64×48 frame, expanded to the square input
    assert len(both.records["val"]) == len(crop.records["val"])
    for a, b in zip(both.records["val"], crop.records["val"]):
        np.testing.assert_allclose(a.box_size, b.box_size)
