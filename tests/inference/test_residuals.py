"""Per-frame residuals of a video's predictions: the temporal step and the pose-PCA distance, by hand."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from kpreg.inference.residuals import temporal_residual, write_residuals
from kpreg.posepca import PosePCA


def test_temporal_residual_is_the_step_from_the_previous_frame() -> None:
    track = np.array([[[0.0, 0.0]], [[3.0, 4.0]], [[3.0, 4.0]], [[np.nan, np.nan]]])  # (T=4, K=1, 2)
    np.testing.assert_allclose(temporal_residual(track)[:, 0], [0.0, 5.0, 0.0, np.nan])


def test_residuals_file_with_the_models_pose_pca(tmp_path: Path) -> None:
    t = np.linspace(0.2, 0.8, 20)
    poses = np.stack([np.zeros((20, 2)), np.stack([t, t], 1), np.ones((20, 2))], axis=1) * 10.0  # (20, 3, 2)
    pca = PosePCA(3)
    pca.fit(poses, np.ones((20, 3), bool), components=1, epsilon=0.5)
    track = np.array([[[0.0, 0.0], [5.0, 5.0], [10.0, 10.0]],  # on the span
                      [[0.0, 0.0], [6.0, 4.0], [10.0, 10.0]],  # keypoint 1 √2 px off it, and moved √2 px
                      [[0.0, 0.0], [np.nan, np.nan], [10.0, 10.0]]])  # a keypoint missing: no pose to score
    record = {"temporal_epsilon": 1.5, "pose_pca": pca.state()}
    write_residuals(tmp_path, track, ["a", "b", "c"], record)
    with open(tmp_path / "residuals.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["frame", "temporal_a", "temporal_b", "temporal_c", "pca_a", "pca_b", "pca_c",
                             "temporal", "pca"]
    assert float(rows[1]["pca_b"]) == 1.414 and float(rows[0]["pca_b"]) == 0.0
    assert float(rows[1]["temporal"]) == 1.414 and float(rows[1]["pca"]) == round(2**0.5 / 3, 3)
    assert rows[2]["pca"] == "" and rows[2]["temporal_b"] == ""
    meta = json.loads((tmp_path / "residuals.json").read_text())
    assert meta["temporal_epsilon"] == 1.5 and meta["pca_epsilon"] == {"a": 0.5, "b": 0.5, "c": 0.5}
