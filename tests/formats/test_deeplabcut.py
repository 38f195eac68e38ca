"""DeepLabCut / Lightning Pose label tables: reading both index layouts, .h5 twins, projects, bad input,
checks against image sizes, and the writer's round trip. Every fixture is generated here."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from testkit.dlc import make_dlc_project

from kpreg.formats.deeplabcut import (
    DLCFormatError,
    DLCLabels,
    DLCProjectConfig,
    check_inside_images,
    find_label_files,
    read_collected_data,
    read_image_sizes,
    read_project,
    read_project_config,
    write_collected_data,
)

HEADER_1 = "scorer,me,me,me,me\nbodyparts,nose,nose,leftear,leftear\ncoords,x,y,x,y\n"


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _read_text(tmp_path: Path, text: str) -> DLCLabels:
    return read_collected_data(_write(tmp_path / "CollectedData_me.csv", text))


def _assert_same_labels(a: DLCLabels, b: DLCLabels) -> None:
    assert a.scorer == b.scorer and a.bodyparts == b.bodyparts and a.image_paths == b.image_paths
    np.testing.assert_array_equal(a.labelled, b.labelled)
    np.testing.assert_array_equal(a.keypoints, b.keypoints)
    assert a.skipped_empty_rows == b.skipped_empty_rows


# ----------------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------------
def test_hand_written_table_both_layouts(tmp_path: Path) -> None:
    """A table whose numbers are checked by hand; the 3-column index reads the same as the 1-column one."""
    one = _read_text(
        tmp_path / "one",
        HEADER_1 + "labeled-data/v/a.png,1.5,2.25,,\nlabeled-data/v/b.png,0,-0.5,NaN,nan\n",
    )
    three = _read_text(
        tmp_path / "three",
        "scorer,,,me,me,me,me\nbodyparts,,,nose,nose,leftear,leftear\ncoords,,,x,y,x,y\n"
        "labeled-data,v,a.png,1.5,2.25,,\nlabeled-data,v,b.png,0,-0.5,,\n",
    )
    for labels in (one, three):
        assert labels.scorer == "me"
        assert labels.bodyparts == ("nose", "leftear")
        assert labels.image_paths == ("labeled-data/v/a.png", "labeled-data/v/b.png")
        # Empty and NaN cells are unlabelled and hold 0.0; DeepLabCut pixels are kpreg pixels (no shift).
        np.testing.assert_array_equal(
            labels.keypoints, [[[1.5, 2.25], [0.0, 0.0]], [[0.0, -0.5], [0.0, 0.0]]]
        )
        np.testing.assert_array_equal(labels.labelled, [[True, False], [True, False]])
        assert labels.keypoints.dtype == np.float64 and labels.labelled.dtype == bool
        assert labels.likelihood is None
        assert labels.lines == (4, 5)
        assert labels.skipped_empty_rows == 0
        assert labels.flip_pairs == ()  # "nose" and a lone "leftear": nothing to pair


@pytest.mark.parametrize("index_columns", [1, 3])
def test_generated_project_files_read_exactly(tmp_path: Path, index_columns: int) -> None:
    project = make_dlc_project(tmp_path, index_columns=index_columns, frames=4)
    assert (~project.labelled).any()  # the fixture does leave cells empty
    start = 0
    for csv_file in project.csv_files:
        labels = read_collected_data(csv_file)
        n = labels.num_images
        expected = project.keypoints[start : start + n]  # (n, K, 2) NaN where unlabelled
        assert labels.image_paths == project.image_paths[start : start + n]
        np.testing.assert_array_equal(labels.labelled, ~np.isnan(expected[..., 0]))
        np.testing.assert_array_equal(labels.keypoints[labels.labelled], expected[labels.labelled])
        assert (labels.keypoints[~labels.labelled] == 0.0).all()
        assert labels.lines == project.lines[start : start + n]
        assert labels.sources == (csv_file,) * n
        start += n
    assert start == len(project.image_paths)


def test_read_project_combines_folders_and_counts_empty_rows(tmp_path: Path) -> None:
    project = make_dlc_project(tmp_path, folders=("a", "b", "c"), frames=2, empty_rows=1)
    labels = read_project(tmp_path)
    assert labels.num_images == 6 and labels.num_keypoints == 4
    assert labels.image_paths == project.image_paths
    np.testing.assert_array_equal(labels.labelled, project.labelled)
    np.testing.assert_array_equal(labels.keypoints[labels.labelled], project.keypoints[project.labelled])
    assert labels.skipped_empty_rows == 3  # one all-empty frame per folder: skipped, counted, no error
    assert labels.sources == tuple(f for f in project.csv_files for _ in range(2))
    assert labels.flip_pairs == ((1, 2),)  # leftear <-> rightear, inferred from the names
    assert labels.where(2) == f"{project.csv_files[1]}, line 4 (labeled-data/b/img0000.png)"


def test_blank_lines_and_byte_order_mark_are_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "CollectedData_me.csv"
    path.write_bytes(("\ufeff" + HEADER_1 + "x.png,1,2,3,4\n\n,,,,\n").encode("utf-8"))
    labels = read_collected_data(path)
    assert labels.image_paths == ("x.png",) and labels.skipped_empty_rows == 0
    np.testing.assert_array_equal(labels.keypoints, [[[1.0, 2.0], [3.0, 4.0]]])


def test_lightning_pose_layout_is_found(tmp_path: Path) -> None:
    """Lightning Pose keeps one CollectedData.csv at the project root, paths relative to the root."""
    text = "scorer,lp,lp\nbodyparts,paw,paw\ncoords,x,y\nlabeled-data/v/img0.png,3.5,4.5\n"
    _write(tmp_path / "CollectedData.csv", text)
    assert find_label_files(tmp_path) == [tmp_path / "CollectedData.csv"]
    labels = read_project(tmp_path)
    assert labels.image_paths == ("labeled-data/v/img0.png",)
    assert labels.image_file(0, tmp_path) == tmp_path / "labeled-data/v/img0.png"


def test_windows_separators_resolve(tmp_path: Path) -> None:
    labels = _read_text(tmp_path, HEADER_1 + "labeled-data\\v\\a.png,1,2,3,4\n")
    assert labels.image_paths == ("labeled-data\\v\\a.png",)  # kept as written
    assert labels.image_file(0, tmp_path) == tmp_path / "labeled-data" / "v" / "a.png"


def test_scorer_selects_one_annotators_files(tmp_path: Path) -> None:
    make_dlc_project(tmp_path, folders=("a",), scorer="ann")
    make_dlc_project(tmp_path, folders=("b",), scorer="bob", seed=1)
    with pytest.raises(
        DLCFormatError, match=r"scorers differ .*CollectedData_ann\.csv.*CollectedData_bob\.csv"
    ):
        read_project(tmp_path)
    labels = read_project(tmp_path, scorer="bob")
    assert labels.scorer == "bob" and {Path(p).parts[1] for p in labels.image_paths} == {"b"}


# ----------------------------------------------------------------------------------------------------
# the .h5 twin
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("index_columns", [1, 3])
def test_h5_twin_reads_like_the_csv(tmp_path: Path, index_columns: int) -> None:
    pytest.importorskip("pandas")
    pytest.importorskip("tables")
    project = make_dlc_project(tmp_path, index_columns=index_columns, empty_rows=1, write_h5=True)
    for csv_file, h5_file in zip(project.csv_files, project.h5_files):
        from_csv, from_h5 = read_collected_data(csv_file), read_collected_data(h5_file)
        _assert_same_labels(from_csv, from_h5)
        assert from_h5.lines == (None,) * from_h5.num_images
        assert from_h5.where(0) == f"{h5_file} ({from_h5.image_paths[0]})"


def test_h5_read_by_project_when_no_csv_twin(tmp_path: Path) -> None:
    pytest.importorskip("pandas")
    pytest.importorskip("tables")
    project = make_dlc_project(tmp_path, write_h5=True)
    project.csv_files[1].unlink()
    assert find_label_files(tmp_path) == [project.csv_files[0], project.h5_files[1]]
    labels = read_project(tmp_path)
    np.testing.assert_array_equal(labels.keypoints[labels.labelled], project.keypoints[project.labelled])


def test_h5_multi_animal_refused(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    pytest.importorskip("tables")
    columns = pd.MultiIndex.from_product(
        [["me"], ["mouse1", "mouse2"], ["nose"], ["x", "y"]],
        names=["scorer", "individuals", "bodyparts", "coords"],
    )
    path = tmp_path / "CollectedData_me.h5"
    pd.DataFrame(np.ones((1, 4)), index=["a.png"], columns=columns).to_hdf(
        path, key="df_with_missing", mode="w"
    )
    with pytest.raises(
        DLCFormatError, match=r"CollectedData_me\.h5.*multi-animal projects are not supported"
    ):
        read_collected_data(path)


def test_h5_without_pandas_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path / "CollectedData_me.h5", "not read")
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` now fails as if not installed
    with pytest.raises(DLCFormatError) as info:
        read_collected_data(path)
    message = str(info.value)
    assert str(path) in message and "pip install pandas tables" in message
    assert str(path.with_suffix(".csv")) in message


# ----------------------------------------------------------------------------------------------------
# bad input: one clear error naming the file and the line
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("", r"expected 3 header rows .*found 0"),
        ("scorer,me,me\nbodyparts,nose,nose\n", r"expected 3 header rows .*found 2"),
        (  # the coords row is missing: the first data row stands in its place
            "scorer,me,me\nbodyparts,nose,nose\nimg.png,1,2\n",
            r"line 3 should start with 'coords'.*'img\.png'",
        ),
        ("scorers,me,me\nbodyparts,nose,nose\ncoords,x,y\n", r"line 1 should start with 'scorer'"),
        ("scorer,me,me\nbodypart,nose,nose\ncoords,x,y\n", r"line 2 should start with 'bodyparts'"),
        (
            "scorer,me,me\nbodyparts,nose,nose\ncoords,y,x\n",
            r"'nose' .*coords \['y', 'x'\]; expected \[x, y\]",
        ),
        ("scorer,me,me,me\nbodyparts,nose,nose,nose\ncoords,x,y,z\n", r"coords \['x', 'y', 'z'\]"),
        ("scorer,me\nbodyparts,nose\ncoords,x\n", r"'nose' .*coords \['x'\]"),
        (  # mixing x,y and x,y,likelihood keypoints
            "scorer,me,me,me,me,me\nbodyparts,a,a,a,b,b\ncoords,x,y,likelihood,x,y\n",
            r"'b' has coords \['x', 'y'\] but 'a' has \['x', 'y', 'likelihood'\]",
        ),
        (  # a bodypart in two separate column groups
            "scorer,me,me,me,me,me,me\nbodyparts,a,a,b,b,a,a\ncoords,x,y,x,y,x,y\n",
            r"bodypart 'a' appears twice",
        ),
        ("scorer,me,you\nbodyparts,nose,nose\ncoords,x,y\n", r"scorer row must repeat one name"),
        (
            "scorer,me,me\nbodyparts,nose,nose\ncoords,x,y,\n",
            r"line 1 has 3 cells, the coords row \(line 3\) has 4",
        ),
        ("scorer\nbodyparts\ncoords\n", r"no value columns"),
        ("scorer,,me,me\nbodyparts,v,nose,nose\ncoords,,x,y\n", r"line 2: cells above the 2 index column"),
    ],
)
def test_bad_header(tmp_path: Path, text: str, pattern: str) -> None:
    path = _write(tmp_path / "CollectedData_me.csv", text)
    with pytest.raises(DLCFormatError, match=pattern) as info:
        read_collected_data(path)
    assert str(path) in str(info.value)


def test_multi_animal_csv_refused(tmp_path: Path) -> None:
    text = (
        "scorer,,,me,me,me,me\nindividuals,,,m1,m1,m2,m2\nbodyparts,,,nose,nose,nose,nose\n"
        "coords,,,x,y,x,y\nlabeled-data,v,a.png,1,2,3,4\n"
    )
    path = _write(tmp_path / "CollectedData_me.csv", text)
    with pytest.raises(
        DLCFormatError, match=r"line 2 is an 'individuals' row: multi-animal projects are not "
    ):
        read_collected_data(path)


@pytest.mark.parametrize(
    ("row", "pattern"),
    [
        ("b.png,1,2,abc,4", r"line 5, leftear\.x: 'abc' is not a number"),
        ("b.png,1,inf,3,4", r"line 5, nose\.y: 'inf' is not finite"),
        ("b.png,1,2,3,", r"line 5 \(b\.png\): bodypart 'leftear' has only one of x, y"),
        ("b.png,1,2,3", r"line 5 has 4 cells, the header has 5"),
        ("b.png,1,2,3,4,5", r"line 5 has 6 cells, the header has 5"),
        (",1,2,3,4", r"line 5: empty image path"),
        ("a.png,5,6,7,8", r"line 5: image 'a\.png' is listed twice \(first at line 4\)"),
    ],
)
def test_bad_row(tmp_path: Path, row: str, pattern: str) -> None:
    path = _write(tmp_path / "CollectedData_me.csv", HEADER_1 + "a.png,1,2,3,4\n" + row + "\n")
    with pytest.raises(DLCFormatError, match=pattern) as info:
        read_collected_data(path)
    assert str(path) in str(info.value)


def test_all_empty_row_is_skipped_and_counted(tmp_path: Path) -> None:
    labels = _read_text(tmp_path, HEADER_1 + "a.png,,,,\nb.png,1,2,,\nc.png,nan,NaN,,\n")
    assert labels.image_paths == ("b.png",) and labels.lines == (5,)
    assert labels.skipped_empty_rows == 2


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(DLCFormatError, match=r"nope\.csv: no such file"):
        read_collected_data(tmp_path / "nope.csv")
    with pytest.raises(
        DLCFormatError, match=r"no label tables: looked for labeled-data/\*/CollectedData_\*\.csv"
    ):
        read_project(tmp_path)
    with pytest.raises(DLCFormatError, match="not a folder"):
        read_project(tmp_path / "missing")


def test_project_bodyparts_must_agree(tmp_path: Path) -> None:
    project = make_dlc_project(tmp_path, folders=("a", "b"))
    text = project.csv_files[1].read_text().replace("rightear", "right_ear")
    project.csv_files[1].write_text(text)
    with pytest.raises(DLCFormatError) as info:
        read_project(tmp_path)
    message = str(info.value)
    assert "bodyparts differ" in message and "right_ear" in message
    assert str(project.csv_files[0]) in message and str(project.csv_files[1]) in message


def test_project_image_in_two_tables(tmp_path: Path) -> None:
    project = make_dlc_project(tmp_path, folders=("a", "b"), index_columns=1)
    text = (
        project.csv_files[1].read_text().replace("labeled-data/b/img0001.png", "labeled-data/a/img0001.png")
    )
    project.csv_files[1].write_text(text)
    with pytest.raises(DLCFormatError) as info:
        read_project(tmp_path)
    message = str(info.value)
    assert "'labeled-data/a/img0001.png' is listed in" in message
    assert f"{project.csv_files[0]}, line 5" in message and f"{project.csv_files[1]}, line 5" in message


# ----------------------------------------------------------------------------------------------------
# labels against image sizes
# ----------------------------------------------------------------------------------------------------
def test_image_sizes_and_inside_check(tmp_path: Path) -> None:
    project = make_dlc_project(tmp_path, image_size=(40, 56))
    labels = read_project(tmp_path)
    sizes = read_image_sizes(labels, tmp_path)  # (N, 2) H, W from the PNG headers
    assert sizes.shape == (labels.num_images, 2) and (sizes == [40, 56]).all()
    check_inside_images(labels, sizes)  # the fixture's labels are inside
    check_inside_images(labels, {p: (40, 56) for p in project.image_paths})


@pytest.mark.parametrize(
    ("xy", "inside"),
    [((-0.5, -0.5), True), ((55.5, 39.5), True), ((55.51, 10.0), False), ((10.0, -0.51), False)],
)
def test_inside_check_edges(tmp_path: Path, xy: tuple[float, float], inside: bool) -> None:
    """A 56x40 image spans x in [-0.5, 55.5], y in [-0.5, 39.5]: the pixel edges, inclusive."""
    labels = _read_text(tmp_path, HEADER_1 + f"a.png,1,1,1,1\nb.png,{xy[0]},{xy[1]},,\n")
    sizes = np.array([[40, 56], [40, 56]])
    if inside:
        check_inside_images(labels, sizes)
        return
    with pytest.raises(DLCFormatError) as info:
        check_inside_images(labels, sizes)
    message = str(info.value)
    assert f"CollectedData_me.csv, line 5 (b.png): bodypart 'nose' at x={xy[0]:g}, y={xy[1]:g}" in message
    assert "outside the 56x40 image" in message


def test_unlabelled_keypoints_are_not_checked(tmp_path: Path) -> None:
    labels = _read_text(tmp_path, HEADER_1 + "a.png,1,1,,\n")
    check_inside_images(labels, np.array([[2, 2]]))  # leftear holds 0.0 but is unlabelled


def test_image_size_errors(tmp_path: Path) -> None:
    project = make_dlc_project(tmp_path, folders=("a",))
    labels = read_project(tmp_path)
    (tmp_path / project.image_paths[1]).unlink()
    with pytest.raises(
        DLCFormatError, match=r"line 5 \(labeled-data/a/img0001\.png\): image file .* does not exist"
    ):
        read_image_sizes(labels, tmp_path)
    (tmp_path / project.image_paths[1]).write_bytes(b"not a png")
    with pytest.raises(DLCFormatError, match=r"line 5 .*cannot read image"):
        read_image_sizes(labels, tmp_path)
    with pytest.raises(DLCFormatError, match=r"no image size for 'labeled-data/a/img0000\.png'"):
        check_inside_images(labels, {})
    with pytest.raises(DLCFormatError, match=r"got 1 image sizes for 3 labelled images"):
        check_inside_images(labels, np.array([[48, 64]]))


# ----------------------------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------------------------
def test_writer_text_by_hand(tmp_path: Path) -> None:
    path = write_collected_data(
        tmp_path / "out" / "pred.csv",
        "DLC_net",
        ["nose", "tail"],
        [0, 1],
        np.array([[[1.5, 2.0], [np.nan, np.nan]], [[0.1, 3.0], [4.0, 5.0]]]),
        likelihood=np.array([[0.9, 0.05], [1.0, 0.25]]),
    )
    assert path.read_text() == (
        "scorer,DLC_net,DLC_net,DLC_net,DLC_net,DLC_net,DLC_net\n"
        "bodyparts,nose,nose,nose,tail,tail,tail\n"
        "coords,x,y,likelihood,x,y,likelihood\n"
        "0,1.5,2.0,0.9,,,0.05\n"
        "1,0.1,3.0,1.0,4.0,5.0,0.25\n"
    )


@pytest.mark.parametrize("with_likelihood", [False, True])
def test_round_trip(tmp_path: Path, with_likelihood: bool) -> None:
    rng = np.random.default_rng(3)
    n, k = 7, 3
    xy = rng.uniform(-0.5, 639.5, (n, k, 2))  # (N, K, 2) x,y pixels, full float64 precision
    xy[rng.random((n, k)) < 0.3] = np.nan
    xy[4] = np.nan  # an all-unlabelled row: skipped and counted on reading
    conf = rng.random((n, k)) if with_likelihood else None
    images = [f"labeled-data/v/img{i:03d}.png" for i in range(n)]
    path = write_collected_data(tmp_path / "t.csv", "me", ["a", "b", "c"], images, xy, conf)
    labels = read_collected_data(path)
    keep = [i for i in range(n) if i != 4]
    assert labels.image_paths == tuple(images[i] for i in keep) and labels.skipped_empty_rows == 1
    np.testing.assert_array_equal(labels.labelled, ~np.isnan(xy[keep, :, 0]))
    np.testing.assert_allclose(
        labels.keypoints[labels.labelled], xy[keep][labels.labelled], rtol=0, atol=1e-6
    )
    # repr() writes the shortest text that reads back to the same float64: the round trip is exact.
    np.testing.assert_array_equal(labels.keypoints[labels.labelled], xy[keep][labels.labelled])
    if with_likelihood:
        assert conf is not None and labels.likelihood is not None
        np.testing.assert_array_equal(labels.likelihood, conf[keep])
    else:
        assert labels.likelihood is None


def test_round_trip_of_read_labels_with_mask(tmp_path: Path) -> None:
    """Labels read from a project written back with ``labelled=`` come back identical."""
    make_dlc_project(tmp_path / "p", index_columns=3)
    labels = read_project(tmp_path / "p")
    path = write_collected_data(
        tmp_path / "again.csv", labels.scorer, labels.bodyparts, labels.image_paths, labels.keypoints,
        labelled=labels.labelled,
    )  # fmt: skip
    _assert_same_labels(read_collected_data(path), labels)


def test_pandas_reads_what_we_write(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    xy = np.array([[[1.25, 2.5], [np.nan, np.nan]], [[3.0, 4.0], [5.5, 6.5]]])  # (2, 2, 2)
    conf = np.array([[0.5, 0.0], [1.0, 0.75]])
    path = write_collected_data(tmp_path / "p.csv", "net", ["nose", "tail"], [10, 11], xy, conf)
    frame = pd.read_csv(path, header=[0, 1, 2], index_col=0)
    assert list(frame.columns.names) == ["scorer", "bodyparts", "coords"]
    assert list(frame.columns) == [("net", b, c) for b in ("nose", "tail") for c in ("x", "y", "likelihood")]
    assert list(frame.index) == [10, 11]
    assert frame[("net", "nose", "x")].tolist() == [1.25, 3.0]
    assert math.isnan(frame.loc[10, ("net", "tail", "y")])
    assert frame[("net", "tail", "likelihood")].tolist() == [0.0, 0.75]


def test_half_labelled_keypoint_is_written_empty(tmp_path: Path) -> None:
    xy = np.array([[[1.0, np.nan], [2.0, 3.0]]])
    path = write_collected_data(tmp_path / "h.csv", "me", ["a", "b"], ["x.png"], xy)
    assert path.read_text().splitlines()[3] == "x.png,,,2.0,3.0"


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"xy": np.zeros((2, 3, 2))}, r"xy has shape \(2, 3, 2\), expected \(2, 2, 2\)"),
        ({"index": ["a", "a"]}, r"index entry 'a' appears more than once"),
        ({"index": ["a", " "]}, r"index entries must be non-empty"),
        ({"bodyparts": ["p", "p"]}, r"bodyparts must be unique"),
        ({"scorer": ""}, r"scorer must be a non-empty name"),
        ({"likelihood": np.zeros((2, 3))}, r"likelihood has shape \(2, 3\), expected \(2, 2\)"),
        ({"labelled": np.ones((1, 2), dtype=bool)}, r"labelled has shape \(1, 2\), expected \(2, 2\)"),
        ({"xy": np.full((2, 2, 2), np.inf)}, r"xy holds infinite values"),
    ],
)
def test_writer_bad_input(tmp_path: Path, kwargs: dict, pattern: str) -> None:
    args = {"scorer": "me", "bodyparts": ["p", "q"], "index": ["a", "b"], "xy": np.zeros((2, 2, 2))}
    args.update(kwargs)
    with pytest.raises(ValueError, match=pattern):
        write_collected_data(tmp_path / "w.csv", **args)


def test_project_config_gives_task_and_skeleton(tmp_path: Path) -> None:
    assert read_project_config(tmp_path) == DLCProjectConfig(None)  # Lightning Pose projects have none
    (tmp_path / "config.yaml").write_text("Task: mice\nscorer: Pranav\nskeleton:\n- [snout, tailbase]\n- [0, 3]\n")
    config = read_project_config(tmp_path)
    assert (config.path, config.task, config.skeleton) == (tmp_path / "config.yaml", "mice", (("snout", "tailbase"), (0, 3)))
    (tmp_path / "config.yaml").write_text("")
    assert read_project_config(tmp_path) == DLCProjectConfig(tmp_path / "config.yaml")


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("Task: [unclosed\n", r"config.yaml: not valid YAML"),
        ("- a\n- b\n", r"config.yaml: a DeepLabCut config holds a mapping of keys, got list"),
        ("skeleton: snout\n", r"config.yaml: 'skeleton' must be a list of \[bodypart, bodypart\] pairs"),
        ("skeleton:\n- [snout]\n", r"config.yaml: skeleton edge 0 is \['snout'\], expected two bodypart names"),
    ],
)
def test_bad_project_config_names_the_file(tmp_path: Path, text: str, pattern: str) -> None:
    (tmp_path / "config.yaml").write_text(text)
    with pytest.raises(DLCFormatError, match=pattern):
        read_project_config(tmp_path)


@pytest.mark.parametrize(("frame", "count", "name"), [(0, 10, "img0.png"), (7, 100, "img07.png"),
                                                     (7, 101, "img007.png"), (7, 2330, "img0007.png"), (0, 1, "img0.png")])
def test_frame_names_follow_deeplabcut(frame: int, count: int, name: str) -> None:
    # DeepLabCut pads to ceil(log10(frame count)) digits (frame_extraction.py, outlier_frames.py).
    from kpreg.formats.deeplabcut import frame_file_name

    assert frame_file_name(frame, count) == name
