import cv2
import numpy as np
import pytest
import yaml

from kpreg.data.synthetic_video import KEYPOINT_NAMES, VideoSpec, render_frame, write_clip
from kpreg.formats.deeplabcut import read_collected_data, read_project, write_collected_data
from kpreg.inference.labelling import LabellingError, project_scorer, write_suggestions

SPEC = VideoSpec(size=(48, 48), frames=12, fps=10.0)
K = len(KEYPOINT_NAMES)


@pytest.fixture
def video(tmp_path):
    return write_clip(tmp_path / "videos", 0, 1, SPEC).video  # s0_clip001.mp4, 12 frames


def _project(root, scorer="Ada"):
    """A project with one labelled frame of another video, and a config naming the scorer."""
    (root / "labeled-data" / "old").mkdir(parents=True)
    cv2.imwrite(str(root / "labeled-data" / "old" / "img0.png"), np.zeros((48, 48, 3), np.uint8))
    write_collected_data(root / "labeled-data" / "old" / f"CollectedData_{scorer}.csv", scorer, KEYPOINT_NAMES,
                         ["labeled-data/old/img0.png"], np.full((1, K, 2), 5.0))
    (root / "config.yaml").write_text(yaml.safe_dump({"scorer": scorer, "bodyparts": list(KEYPOINT_NAMES)}))
    return root


def _predictions(n: int, conf: float = 0.9):
    rng = np.random.default_rng(0)
    return rng.uniform(0, 47, (n, K, 2)), np.full((n, K), conf)


def test_frames_are_written_as_deeplabcut_extracts_them_and_prefilled(tmp_path, video) -> None:
    project = _project(tmp_path / "p")
    xy, conf = _predictions(2)
    conf[0, 3] = 0.2  # an unconfident keypoint is left for the labeller
    report = write_suggestions(project, video, [7, 2], xy, conf, KEYPOINT_NAMES, SPEC.frames, min_confidence=0.5)
    folder = project / "labeled-data" / "s0_clip001"
    assert report.table == folder / "CollectedData_Ada.csv" and not report.skipped
    assert sorted(report.written) == ["labeled-data/s0_clip001/img02.png", "labeled-data/s0_clip001/img07.png"]
    png = cv2.cvtColor(cv2.imread(str(folder / "img07.png")), cv2.COLOR_BGR2RGB)
    diff = [np.abs(png.astype(int) - render_frame(0, 1, f, SPEC).image.astype(int)).mean() for f in range(12)]
    assert int(np.argmin(diff)) == 7  # frame 7 of the (lossy) MP4
    table = read_collected_data(report.table)
    assert table.image_paths == ("labeled-data/s0_clip001/img02.png", "labeled-data/s0_clip001/img07.png")
    assert not table.labelled[1, 3] and table.labelled[1].sum() == K - 1
    keep = table.labelled[1]
    np.testing.assert_array_equal(table.keypoints[1][keep], xy[0][keep])  # frame 7 was the first prediction
    # Training reads the project: the old frame and the two new ones.
    assert read_project(project).num_images == 3
    if report.h5 is not None:  # pandas + tables: DeepLabCut's .h5 twin with three-level rows
        import pandas as pd

        frame = pd.read_hdf(report.h5, "df_with_missing")
        assert frame.index.nlevels == 3 and frame.index[0] == ("labeled-data", "s0_clip001", "img02.png")
        np.testing.assert_array_equal(read_collected_data(report.h5).keypoints, table.keypoints)


def test_labelled_frames_are_never_overwritten(tmp_path, video) -> None:
    project = _project(tmp_path / "p")
    xy, conf = _predictions(1)
    first = write_suggestions(project, video, [3], xy, conf, KEYPOINT_NAMES, SPEC.frames, 0.5)
    corrected = read_collected_data(first.table).keypoints.copy()
    corrected[0, 0] = [1.0, 2.0]  # the labeller's correction
    write_collected_data(first.table, "Ada", KEYPOINT_NAMES, ["labeled-data/s0_clip001/img03.png"], corrected)
    (first.folder / "img05.png").write_bytes(b"a labeller's own image")
    xy2, conf2 = _predictions(3, conf=0.95)
    again = write_suggestions(project, video, [3, 5, 9], xy2, conf2, KEYPOINT_NAMES, SPEC.frames, 0.5)
    assert again.written == ["labeled-data/s0_clip001/img09.png"]
    assert set(again.skipped) == {"labeled-data/s0_clip001/img03.png", "labeled-data/s0_clip001/img05.png"}
    assert "already in" in again.skipped["labeled-data/s0_clip001/img03.png"] and "skipped" in again.summary()
    table = read_collected_data(again.table)
    np.testing.assert_array_equal(table.keypoints[0], corrected[0])  # the correction survives
    assert (first.folder / "img05.png").read_bytes() == b"a labeller's own image"


def test_a_model_of_other_keypoints_is_refused(tmp_path, video) -> None:
    project = _project(tmp_path / "p")
    xy, conf = _predictions(1)
    names = list(KEYPOINT_NAMES)
    names[0] = "nose"
    with pytest.raises(LabellingError, match="differ from the project's"):
        write_suggestions(project, video, [1], xy, conf, names, SPEC.frames, 0.5)
    with pytest.raises(LabellingError, match="outside the video's 12 frames"):
        write_suggestions(project, video, [12], xy, conf, KEYPOINT_NAMES, SPEC.frames, 0.5)


def test_the_scorer_comes_from_the_config_or_the_tables(tmp_path) -> None:
    project = _project(tmp_path / "p", scorer="Bo")
    assert project_scorer(project) == "Bo"
    (project / "config.yaml").unlink()
    assert project_scorer(project) == "Bo"  # from CollectedData_Bo.csv
    (tmp_path / "empty").mkdir()
    assert project_scorer(tmp_path / "empty") is None
