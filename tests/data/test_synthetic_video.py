import cv2
import numpy as np
import pytest
import yaml

from kpreg.data import synthetic_video as sv
from kpreg.data.synthetic_video import (
    KEYPOINT_NAMES,
    VideoSpec,
    render_clip,
    render_frame,
    write_clip,
    write_labelled_frames,
)
from kpreg.formats.deeplabcut import read_collected_data, read_project

SPEC = VideoSpec(size=(64, 80), frames=40, fps=20.0)


def test_a_frame_is_a_pure_function_of_seed_clip_frame() -> None:
    a = render_frame(1, 2, 17, SPEC)
    render_frame(1, 2, 3, SPEC)  # other frames in between change nothing
    sv._clip.cache_clear()  # nor does drawing the clip's setup again
    b = render_frame(1, 2, 17, SPEC)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.keypoints, b.keypoints)
    assert np.array_equal(a.occluded, b.occluded) and np.array_equal(a.head_box, b.head_box)
    assert a.image.shape == (64, 80, 3) and a.image.dtype == np.uint8
    assert not np.array_equal(a.keypoints, render_frame(1, 3, 17, SPEC).keypoints)  # another clip
    assert not np.array_equal(a.keypoints, render_frame(2, 2, 17, SPEC).keypoints)  # another stream
    assert not np.array_equal(a.image, render_frame(1, 2, 18, SPEC).image)  # the next frame


def test_frames_outside_the_clip_are_refused() -> None:
    with pytest.raises(IndexError, match="40 frames"):
        render_frame(0, 0, 40, SPEC)


def test_motion_is_smooth_and_labels_stay_in_the_frame() -> None:
    clip = render_clip(0, 5, SPEC)
    assert clip.keypoints.shape == (40, 16, 2) and clip.occluded.shape == (40, 16)
    h, w = SPEC.size
    assert (clip.keypoints[..., 0] >= -0.5).all() and (clip.keypoints[..., 0] <= w - 0.5).all()
    assert (clip.keypoints[..., 1] >= -0.5).all() and (clip.keypoints[..., 1] <= h - 0.5).all()
    step = np.linalg.norm(np.diff(clip.keypoints, axis=0), axis=-1)  # (T-1, 16) px per frame
    assert step.max() < 0.15 * h  # at 20 fps a joint moves a few pixels per frame, never jumps
    assert step.mean() > 0.05  # and it does move
    # A twice faster clip covers about twice the distance (the same path, sampled twice as fast).
    fast = render_clip(0, 5, VideoSpec(size=(64, 80), frames=40, fps=20.0, speed=2.0))
    fast_step = np.linalg.norm(np.diff(fast.keypoints, axis=0), axis=-1)
    assert 1.4 < fast_step.mean() / step.mean() < 2.6
    np.testing.assert_allclose(clip.size, (clip.keypoints.max(1) - clip.keypoints.min(1)).max(-1))


def test_the_labels_are_exact_where_the_joints_are_drawn() -> None:
    # With joint markers, every joint not under the occluder sits on its dark disc.
    spec = VideoSpec(size=(96, 96), frames=30, joint_markers=True, noise=(2.0, 2.0))
    on_marker, total = 0, 0
    for f in range(0, 30, 3):
        fig = render_frame(4, 1, f, spec)
        x, y = np.round(fig.keypoints).astype(int).T
        dark = fig.image[y, x].mean(-1) < 70  # (16,) the marker is (40, 40, 40)
        on_marker += int(dark[~fig.occluded].sum())
        total += int((~fig.occluded).sum())
    assert on_marker / total > 0.97


def test_the_occluder_passes_and_hides_joints() -> None:
    spec = VideoSpec(size=(64, 64), frames=150, occluder=1.0)
    hidden = np.concatenate([render_clip(0, c, spec).occluded for c in range(3)])
    assert 0.0 < hidden.mean() < 0.4
    # Occlusion comes and goes gradually: a joint's flag changes a few times, not every frame.
    assert np.abs(np.diff(hidden.astype(int), axis=0)).sum() < 0.2 * hidden.size
    none = VideoSpec(size=(64, 64), frames=30, occluder=0.0)
    assert not render_clip(0, 0, none).occluded.any()


def test_write_clip_gives_a_video_and_its_exact_labels(tmp_path) -> None:
    files = write_clip(tmp_path, 3, 7, SPEC)
    assert files.video.name == "s3_clip007.mp4"
    cap = cv2.VideoCapture(str(files.video))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    assert len(frames) == SPEC.frames and frames[0].shape == (64, 80, 3)
    # Lossy, but the same picture.
    assert np.abs(frames[9].astype(int) - render_frame(3, 7, 9, SPEC).image.astype(int)).mean() < 12
    truth = render_clip(3, 7, SPEC)
    table = read_collected_data(files.table)
    assert table.bodyparts == KEYPOINT_NAMES and table.image_paths == tuple(str(i) for i in range(SPEC.frames))
    assert np.array_equal(table.keypoints, truth.keypoints)  # written with the shortest exact text
    saved = np.load(files.labels)
    assert np.array_equal(saved["keypoints"], truth.keypoints) and np.array_equal(saved["occluded"], truth.occluded)
    assert float(saved["fps"]) == SPEC.fps


def test_labelled_frames_make_a_project_and_are_never_overwritten(tmp_path) -> None:
    table = write_labelled_frames(tmp_path, 0, 2, [5, 1], SPEC)
    assert table == tmp_path / "labeled-data" / "s0_clip002" / "CollectedData_synthetic.csv"
    png = cv2.cvtColor(cv2.imread(str(table.parent / "img05.png")), cv2.COLOR_BGR2RGB)
    assert np.array_equal(png, render_frame(0, 2, 5, SPEC).image)  # lossless
    # A labeller's correction of frame 5 survives a second call that names frame 5 again.
    labels = read_collected_data(table)
    moved = labels.keypoints.copy()
    moved[1, 0] += 3.0  # rows are sorted: img01, img05
    from kpreg.formats.deeplabcut import write_collected_data

    write_collected_data(table, "synthetic", KEYPOINT_NAMES, labels.image_paths, moved)
    write_labelled_frames(tmp_path, 0, 2, [5, 9], SPEC)
    project = read_project(tmp_path)
    assert project.image_paths == tuple(f"labeled-data/s0_clip002/img0{i}.png" for i in (1, 5, 9))
    assert np.array_equal(project.keypoints[1], moved[1])
    assert np.array_equal(project.keypoints[2], render_frame(0, 2, 9, SPEC).keypoints)
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert config["bodyparts"] == list(KEYPOINT_NAMES)
    assert all(a in KEYPOINT_NAMES and b in KEYPOINT_NAMES for a, b in config["skeleton"])


def test_spec_is_checked() -> None:
    with pytest.raises(ValueError, match="figure_height"):
        VideoSpec(figure_height=(0.8, 0.5))
    with pytest.raises(ValueError, match="16 x 16"):
        VideoSpec(size=(8, 64))
