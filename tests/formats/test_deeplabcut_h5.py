"""kpreg's DeepLabCut analysis tables read as DeepLabCut reads them (pandas) and as movement loads them."""

import numpy as np
import pytest

from kpreg.formats.deeplabcut import write_collected_data
from kpreg.formats.deeplabcut_h5 import H5_KEY, write_analysis_h5

NAMES = ["snout", "leftear", "rightear"]


def _predictions() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 100, (6, 3, 2))
    conf = rng.uniform(0, 1, (6, 3))
    xy[2, 1] = np.nan  # a missing keypoint
    return xy, conf


def test_pandas_reads_the_csv_and_the_h5_as_deeplabcut_does(tmp_path) -> None:
    pd = pytest.importorskip("pandas")
    pytest.importorskip("tables")
    xy, conf = _predictions()
    csv = write_collected_data(tmp_path / "v.csv", "kpreg_heatmap", NAMES, list(range(6)), xy, likelihood=conf)
    h5 = write_analysis_h5(tmp_path / "v.h5", "kpreg_heatmap", NAMES, xy, conf)
    from_h5 = pd.read_hdf(h5, H5_KEY)  # deeplabcut.utils.auxiliaryfunctions.load_analyzed_data
    from_csv = pd.read_csv(csv, header=[0, 1, 2], index_col=0)
    for frame in (from_h5, from_csv):
        assert list(frame.columns.names) == ["scorer", "bodyparts", "coords"]
        assert list(frame.columns.get_level_values("bodyparts").unique()) == NAMES
        assert list(frame.index) == list(range(6))
        x = frame.xs("x", level="coords", axis=1).to_numpy()  # (T, K)
        np.testing.assert_allclose(x, np.where(np.isnan(xy[..., 1]), np.nan, xy[..., 0]))
        np.testing.assert_allclose(frame.xs("likelihood", level="coords", axis=1).to_numpy(), conf)


def test_movement_loads_kpregs_output(tmp_path) -> None:
    # movement is not a kpreg extra: its dependency sleap-io installs a top-level `tests` package that shadows a
    # project's own tests (docs/video.md). Where it is installed, it must read kpreg's files.
    load_poses = pytest.importorskip("movement.io.load_poses")
    pytest.importorskip("tables")
    xy, conf = _predictions()
    csv = write_collected_data(tmp_path / "v.csv", "kpreg_heatmap", NAMES, list(range(6)), xy, likelihood=conf)
    h5 = write_analysis_h5(tmp_path / "v.h5", "kpreg_heatmap", NAMES, xy, conf)
    for path in (csv, h5):
        ds = load_poses.from_dlc_file(path, fps=30)
        position = ds.position.values  # (time, space, keypoints, individuals)
        assert position.shape == (6, 2, 3, 1)
        np.testing.assert_allclose(position[..., 0].transpose(0, 2, 1), xy)
        np.testing.assert_allclose(ds.confidence.values[..., 0], conf)
        assert list(ds.keypoints.values) == NAMES
