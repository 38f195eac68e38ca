"""suggest.py end to end: a synthetic video, its predictions (the exact labels, a few frames made wrong and
unconfident), a DeepLabCut project with some of its frames labelled; the suggested frames land in the project,
prefilled, readable by kpreg's project reader, never over a labelled frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from testkit.cli import run_in_process

from kpreg.cli.suggest import frame_scores
from kpreg.cli.suggest import main as suggest_main
from kpreg.data.synthetic_video import SCORER, VideoSpec, clip_name, write_clip, write_labelled_frames
from kpreg.formats.deeplabcut import DLCTableWriter, frame_file_name, read_collected_data, read_project
from kpreg.inference import ranking
from kpreg.inference.tracks import read_track

SPEC = VideoSpec(size=(64, 64), frames=60)
LABELLED = [0, 15, 30, 45]
BAD = [8, 23, 52]  # frames whose keypoint 3 is predicted 12 px off with confidence 0.2
WRONG = 3


@pytest.fixture()
def setup(tmp_path: Path) -> tuple[Path, Path, Path, np.ndarray]:
    files = write_clip(tmp_path / "videos", 0, 0, SPEC)
    truth = np.load(files.labels)["keypoints"]  # (T, K, 2)
    project = tmp_path / "project"
    write_labelled_frames(project, 0, 0, LABELLED, SPEC)
    rng = np.random.default_rng(0)
    xy = truth + rng.normal(0, 0.3, truth.shape)
    conf = np.full(truth.shape[:2], 0.9)
    xy[BAD, WRONG] += 12.0
    conf[BAD, WRONG] = 0.2
    table = tmp_path / "predictions.csv"
    with DLCTableWriter(table, "kpreg_test", read_collected_data(files.table).bodyparts) as writer:
        for t in range(len(xy)):
            writer.add(t, xy[t], conf[t])
    return files.video, project, table, xy


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    return run_in_process(suggest_main, capsys, *args)


def test_the_wrong_frames_rank_first(setup: tuple[Path, Path, Path, np.ndarray]) -> None:
    video, project, table, _ = setup
    scores = frame_scores(read_track(table, SPEC.frames), project)
    assert set(scores) == {"p_wrong", "jump", "pca"}  # the project has labelled poses: the PCA residual counts
    combined = ranking.combine(scores)
    assert sorted(np.argsort(-combined)[:3].tolist()) == BAD


def test_suggested_frames_are_added_prefilled_and_never_overwrite(setup: tuple[Path, Path, Path, np.ndarray],
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    video, project, table, xy = setup
    folder = project / "labeled-data" / clip_name(0, 0)
    before = read_collected_data(folder / f"CollectedData_{SCORER}.csv")
    code, out, err = run_main(capsys, "--predictions", str(table), "--video", str(video), "--project", str(project),
                              "--n", "3", "--min-gap", "5")
    assert code == 0, err
    assert "3 frame(s) added" in out and f"{len(LABELLED)} excluded" in out
    after = read_collected_data(folder / f"CollectedData_{SCORER}.csv")
    new = [p for p in after.image_paths if p not in before.image_paths]
    assert len(new) == 3 and len(after.image_paths) == len(LABELLED) + 3
    for i, path in enumerate(before.image_paths):  # the labelled rows are written back unchanged
        j = after.image_paths.index(path)
        np.testing.assert_allclose(after.keypoints[j][after.labelled[j]], before.keypoints[i][before.labelled[i]])
    picked = [int(Path(p).stem.removeprefix("img")) for p in new]
    assert set(picked) & set(BAD) and not set(picked) & set(LABELLED)
    for path, frame in zip(new, picked):
        assert (project / path).is_file()
        j = after.image_paths.index(path)
        unsure = frame in BAD
        assert after.labelled[j, WRONG] != unsure  # an unconfident keypoint is left to place by hand
        shown = after.labelled[j]
        np.testing.assert_allclose(after.keypoints[j][shown], xy[frame][shown], atol=1e-3)  # prefilled
    assert len(read_project(project).image_paths) == len(LABELLED) + 3  # training reads the new rows as they are

    code, out, _ = run_main(capsys, "--predictions", str(table), "--video", str(video), "--project", str(project),
                            "--n", "3", "--min-gap", "5")
    assert code == 0 and f"{len(LABELLED) + 3} excluded" in out  # a second round picks other frames
    again = read_collected_data(folder / f"CollectedData_{SCORER}.csv")
    assert len(again.image_paths) == len(LABELLED) + 6


def test_bad_input_is_exit_2(setup: tuple[Path, Path, Path, np.ndarray], tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    video, project, table, _ = setup
    short = tmp_path / "short.csv"  # the predictions of another (shorter) video
    lines = table.read_text().splitlines()
    short.write_text("\n".join(lines[:-5]) + "\n")
    cases = [
        (["--predictions", str(short), "--video", str(video), "--project", str(project)],
         "has 55 frame(s) but the video has 60"),
        (["--predictions", str(table), "--video", str(video), "--project", str(tmp_path / "nope")],
         "the project folder does not exist"),
        (["--predictions", str(table), "--video", str(video), "--project", str(project), "--n", "0"],
         "--n must be at least 1"),
    ]
    for args, message in cases:
        code, _, err = run_main(capsys, *args)
        assert code == 2 and message in err, (args, err)
    assert not any(p.name == frame_file_name(BAD[0], SPEC.frames) for p in (project / "labeled-data").rglob("*.png"))


def test_an_ensembles_disagreement_ranks_too(setup: tuple[Path, Path, Path, np.ndarray], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from kpreg.inference.ensemble import write_disagreement

    video, project, table, _ = setup
    names = read_track(table, SPEC.frames).bodyparts
    variance = np.full((SPEC.frames, len(names)), 0.01)
    variance[37] = 25.0  # the members disagree on frame 37 only
    path = write_disagreement(tmp_path / "disagreement.csv", names, list(range(SPEC.frames)), variance)
    code, out, err = run_main(capsys, "--predictions", str(table), "--video", str(video), "--project", str(project),
                              "--n", "4", "--min-gap", "5", "--disagreement", str(path))
    assert code == 0, err
    assert "p_wrong, jump, pca, disagreement" in out and "37" in out.split("picked 4:")[1].splitlines()[0]
    short = write_disagreement(tmp_path / "short.csv", names, list(range(10)), variance[:10])
    code, _, err = run_main(capsys, "--predictions", str(table), "--video", str(video), "--project", str(project),
                            "--disagreement", str(short))
    assert code == 2 and "the disagreement of another video" in err
