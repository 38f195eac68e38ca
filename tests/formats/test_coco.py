"""Category parsing, annotation validation and results files."""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from kpreg.formats.coco import (
    COCO_FLIP_PAIRS,
    COCO_KEYPOINT_NAMES,
    COCO_SIGMAS,
    COCO_SKELETON,
    CocoImage,
    find_keypoint_problems,
    infer_flip_pairs,
    load_coco,
    load_results_json,
    read_category,
    read_images,
    validate_coco_keypoints,
    write_results_json,
)

COCO_SKELETON_1BASED = [[16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8], [7, 9],
                        [8, 10], [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7]]  # fmt: skip


def mouse_dataset() -> dict:
    """4 keypoints (DeepLabCut openfield names), 2 images, 3 clean annotations."""
    names = ["snout", "leftear", "rightear", "tailbase"]
    anns = []
    for n, (img, x, y) in enumerate([(1, 10, 20), (1, 50, 60), (2, 5, 5)]):
        kp = [x, y, 2, x + 5, y - 3, 2, x + 5, y + 3, 1, x + 30, y, 2]
        anns.append({"id": 10 + n, "image_id": img, "category_id": 3, "bbox": [x - 1, y - 4, 32, 8],
                     "area": 200.0, "iscrowd": 0, "keypoints": kp, "num_keypoints": 4})  # fmt: skip
    return {
        "images": [{"id": 1, "width": 100, "height": 100}, {"id": 2, "width": 40, "height": 30}],
        "categories": [
            {"id": 3, "name": "mouse", "keypoints": names, "skeleton": [[1, 2], [1, 3], [2, 4], [3, 4]]}
        ],
        "annotations": anns,
    }


# ------------------------------------------------------------------------------ categories


def test_coco_constants_are_consistent() -> None:
    assert len(COCO_KEYPOINT_NAMES) == 17 and COCO_SIGMAS.shape == (17,)
    assert COCO_SIGMAS[0] == pytest.approx(0.026) and COCO_SIGMAS[11] == pytest.approx(0.107)
    assert COCO_SKELETON == tuple((a - 1, b - 1) for a, b in COCO_SKELETON_1BASED)
    assert infer_flip_pairs(COCO_KEYPOINT_NAMES) == COCO_FLIP_PAIRS


def test_read_category_coco() -> None:
    data = {"categories": [{"id": 1, "name": "person", "keypoints": list(COCO_KEYPOINT_NAMES),
                            "skeleton": COCO_SKELETON_1BASED}]}  # fmt: skip
    cat = read_category(data)
    assert cat.id == 1 and cat.num_keypoints == 17
    assert cat.skeleton == COCO_SKELETON  # 1-based -> 0-based
    assert cat.flip_pairs == COCO_FLIP_PAIRS
    np.testing.assert_array_equal(cat.sigmas, COCO_SIGMAS)
    assert cat.flip_index()[:5] == [0, 2, 1, 4, 3]
    # same object works through a pycocotools COCO
    assert read_category(load_coco({**data, "images": [], "annotations": []})).skeleton == COCO_SKELETON


def test_read_category_custom_layout() -> None:
    data = mouse_dataset()
    cat = read_category(data)
    assert cat.keypoint_names == ("snout", "leftear", "rightear", "tailbase")
    assert cat.skeleton == ((0, 1), (0, 2), (1, 3), (2, 3))
    assert cat.flip_pairs == ((1, 2),)
    np.testing.assert_array_equal(cat.sigmas, np.full(4, 0.05))  # constant default for unknown K
    np.testing.assert_array_equal(read_category(data, default_sigma=0.1).sigmas, np.full(4, 0.1))
    np.testing.assert_array_equal(
        read_category(data, sigmas=[0.1, 0.2, 0.2, 0.3]).sigmas, [0.1, 0.2, 0.2, 0.3]
    )
    assert read_category(data, flip_pairs=[(3, 0)]).flip_pairs == ((0, 3),)
    with pytest.raises(ValueError, match="3 sigmas for 4 keypoints"):
        read_category(data, sigmas=[0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="category with id 9"):
        read_category(data, category_id=9)


@pytest.mark.parametrize(
    ("names", "pairs"),
    [
        (["nose", "l_paw", "r_paw", "tail"], ((1, 2),)),
        (["LShoulder", "RShoulder", "Neck"], ((0, 1),)),
        (["front_left_paw", "front_right_paw", "Left-Ear", "Right-Ear"], ((0, 1), (2, 3))),
        (["rank", "rkne", "lkne", "lank", "pelv"], ((0, 3), (1, 2))),  # MPII
        (["eye_L", "eye_R", "rump"], ((0, 1),)),
        (["snout", "tailbase", "rump"], ()),  # nothing to mirror
    ],
)
def test_infer_flip_pairs(names: list[str], pairs: tuple) -> None:
    assert infer_flip_pairs(names) == pairs


def test_out_of_range_skeleton_edges_warn_and_drop() -> None:
    data = mouse_dataset()
    data["categories"][0]["skeleton"] = [[1, 2], [4, 5]]
    with pytest.warns(UserWarning, match=r"\[4, 5\]"):
        cat = read_category(data)
    assert cat.skeleton == ((0, 1),)


# ------------------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("kind", "mutate", "text"),
    [
        ("missing_keypoints", lambda a: a.pop("keypoints"), "no 'keypoints' field"),
        ("bad_keypoints_length", lambda a: a.update(keypoints=a["keypoints"][:9]), "bad length"),
        ("zero_size_box", lambda a: a.update(bbox=[1, 2, 0, 5]), "zero or negative size box"),
        ("zero_size_box", lambda a: a.update(bbox=[1, 2, 5, -1]), "zero or negative size box"),
        ("keypoint_outside_image", lambda a: a["keypoints"].__setitem__(0, 120.0), "outside the image"),
        ("keypoint_outside_image", lambda a: a["keypoints"].__setitem__(1, -0.6), "outside the image"),
        ("non_finite", lambda a: a["keypoints"].__setitem__(4, float("nan")), "NaN"),
        ("bad_visibility", lambda a: a["keypoints"].__setitem__(5, 3), "keypoint 1 has v=3"),
        ("bad_visibility", lambda a: a["keypoints"].__setitem__(8, 0.9), "keypoint 2 has v=0.9"),
        ("bad_visibility", lambda a: a["keypoints"].__setitem__(2, -1), "visibility flag other than 0 (unlabelled)"),
    ],
)
def test_validation_errors_name_file_and_annotation(tmp_path: Path, kind: str, mutate, text: str) -> None:
    data = mouse_dataset()
    mutate(data["annotations"][1])  # annotation id 11
    path = tmp_path / "bad_file.json"
    path.write_text(json.dumps(data))  # json writes NaN as a bare NaN, which json.load accepts
    with pytest.raises(ValueError) as err:
        validate_coco_keypoints(path)
    msg = str(err.value)
    assert "bad_file.json" in msg and "annotation id 11" in msg and text in msg
    assert [p.annotation_id for p in find_keypoint_problems(data)[kind]] == [11]


def test_clean_file_and_boundary_keypoints(tmp_path: Path) -> None:
    data = mouse_dataset()
    # pixel-centre convention: x = W - 0.5 is the right edge of the image, still inside
    data["annotations"][2]["keypoints"][0] = 39.5
    problems = validate_coco_keypoints(tmp_path / "x.json", data)
    assert all(not v for v in problems.values())
    # unlabelled keypoints are not checked
    data["annotations"][2]["keypoints"][9:12] = [999, 999, 0]
    validate_coco_keypoints(tmp_path / "x.json", data)


def test_zero_size_boxes_can_be_counted_and_skipped(tmp_path: Path) -> None:
    data = mouse_dataset()
    data["annotations"][0]["bbox"][2] = 0
    data["annotations"][2]["bbox"][3] = 0
    problems = validate_coco_keypoints(tmp_path / "x.json", data, allow={"zero_size_box"})
    assert [p.annotation_id for p in problems["zero_size_box"]] == [10, 12]
    with pytest.raises(ValueError, match="annotation id 10.*1 more"):
        validate_coco_keypoints(tmp_path / "x.json", data)


# ------------------------------------------------------------------------------ results files


def test_results_roundtrip_and_unknown_image(tmp_path: Path) -> None:
    data = mouse_dataset()
    gt = load_coco(data)
    res = [
        {
            "image_id": 2,
            "category_id": 3,
            "keypoints": np.arange(12, dtype=np.float32),
            "score": np.float64(0.5),
        }
    ]
    path = write_results_json(tmp_path / "out" / "res.json", res)
    loaded = json.loads(path.read_text())
    assert loaded == [
        {"image_id": 2, "category_id": 3, "keypoints": list(map(float, range(12))), "score": 0.5}
    ]
    coco_dt = load_results_json(path, gt)
    assert len(coco_dt.getAnnIds()) == 1 and coco_dt.loadAnns(coco_dt.getAnnIds())[0]["image_id"] == 2

    bad = copy.deepcopy(loaded) + [{"image_id": 404, "category_id": 3, "keypoints": [0.0] * 12, "score": 0.1}]
    bad_path = tmp_path / "results_bad.json"
    bad_path.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=r"results_bad\.json.*image_id 404"):
        load_results_json(bad_path, gt)

    short = [{"image_id": 1, "category_id": 3, "keypoints": [0.0] * 9, "score": 0.1}]
    (tmp_path / "short.json").write_text(json.dumps(short))
    with pytest.raises(ValueError, match="9 keypoint values, expected 12"):
        load_results_json(tmp_path / "short.json", gt)

    (tmp_path / "empty.json").write_text("[]")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_results_json(tmp_path / "empty.json", gt).getAnnIds() == []


def test_images_map_by_id(tmp_path: Path) -> None:
    data = {"images": [{"id": 3, "file_name": "a/b.jpg", "width": 64, "height": 48.0}, {"id": 9, "file_name": "c.png"}]}
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(data))
    expected = {3: CocoImage(3, "a/b.jpg", 64, 48.0), 9: CocoImage(9, "c.png")}
    assert read_images(data, "gt.json") == read_images(None, path) == expected


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (None, "no 'images' list"),
        ([7], r"images\[0\] is not an object"),
        ([{"id": "7", "file_name": "a.png"}], r"images\[0\] has id '7'; COCO image ids must be integers"),
        ([{"id": True, "file_name": "a.png"}], r"images\[0\] has id True; COCO image ids must be integers"),
        ([{"id": 7}], r"image id 7 \(images\[0\]\) has no 'file_name'"),
        ([{"id": 7, "file_name": "a.png", "width": 0, "height": 4}], "image id 7 has width 0, height 4; sizes are positive"),
        ([{"id": 7, "file_name": "a.png"}, {"id": 7, "file_name": "b.png"}], r"image id 7 is listed twice"),
    ],
)
def test_images_map_errors_name_the_file_and_entry(images: object, message: str) -> None:
    with pytest.raises(ValueError, match=f"gt.json: {message}"):
        read_images({} if images is None else {"images": images}, "gt.json")


def test_a_coco_path_that_is_not_a_json_object_is_refused(tmp_path: Path) -> None:
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(ValueError, match=r"list.json: a COCO file holds a JSON object, got list"):
        read_category(tmp_path / "list.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ValueError, match=r"broken.json: not valid JSON"):
        validate_coco_keypoints(tmp_path / "broken.json")
