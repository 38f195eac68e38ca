"""Unlabelled clips: consecutive frames, one augmentation per clip, the whole frame, runs of clips, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from testkit.dlc import make_dlc_project
from testkit.media import VIDEO_SIZE, frame_number, write_video

from kpreg.coords import apply_affine
from kpreg.data.deeplabcut import DeepLabCutDataModule
from kpreg.data.errors import DataError
from kpreg.data.sample import tensor_to_image
from kpreg.data.topdown import Augmentation
from kpreg.data.unlabelled import (
    ClipOptions,
    ClipSampler,
    VideoClipDataset,
    expand_videos,
    probe_video,
    unpermute_flipped,
)

W, H = VIDEO_SIZE
SPIN = Augmentation(scale_factor=0.2, rotation=30.0, rotation_prob=1.0, flip_prob=0.5, half_body_prob=0.0,
                    photometric=False)


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("videos")
    return [write_video(root / "a.mp4", 20, "mp4v"), write_video(root / "b.avi", 12, "MJPG")]


def number(image: torch.Tensor) -> int:
    """The frame index a (3, 32, 32) clip frame shows (read in its middle: the frame is letterboxed in the input)."""
    return frame_number(tensor_to_image(image)[12:20, 12:20])


def clips(videos: list[Path], options: ClipOptions, augmentation: Augmentation | None = None) -> VideoClipDataset:
    return VideoClipDataset([probe_video(str(v)) for v in videos], options, (32, 32), [(0, 1)], augmentation)


def test_every_clip_is_consecutive_frames_of_one_video(videos: list[Path]) -> None:
    ds = clips(videos, ClipOptions(frames=3, step=2))
    assert [v.frames for v in ds.videos] == [20, 12]
    assert len(ds) == (20 - 5 + 1) + (12 - 5 + 1)  # every start whose 5-frame span fits
    for index in (0, 7, 15, 16, len(ds) - 1):
        v, start = ds.locate(index)
        item = ds[index]
        assert item["images"].shape == (3, 3, 32, 32) and (int(item["video"]), int(item["frame"])) == (v, start)
        seen = [number(img) for img in item["images"]]
        assert seen == [start, start + 2, start + 4]
    assert ds.locate(16) == (1, 0)


def test_reading_ahead_and_seeking_give_the_same_frames(videos: list[Path]) -> None:
    ds = clips(videos[:1], ClipOptions(frames=2))
    order = [3, 4, 10, 2, 17, 0]  # forward reads, a jump back (a seek), forward again
    seen = [[number(img) for img in ds[i]["images"]] for i in order]
    assert seen == [[i, i + 1] for i in order]


def test_one_warp_per_clip_maps_back_to_the_video(videos: list[Path]) -> None:
    torch.manual_seed(0)
    ds = clips(videos[:1], ClipOptions(frames=4), SPIN)
    flips = set()
    for i in range(8):
        item = ds[i]
        affine_inv = item["affine_inv"].numpy()  # (2, 3) input → video pixels, one for the whole clip
        # Without scale or rotation noise the whole frame would fill the input; here it is turned and zoomed, but the
        # input's centre always comes from the frame's centre (the augmentation keeps the box's centre).
        centre = apply_affine(np.array([[15.5, 15.5]]), affine_inv)[0]
        np.testing.assert_allclose(centre, [(W - 1) / 2, (H - 1) / 2], atol=1e-6)
        flips.add(bool(item["flipped"]))
    assert flips == {True, False}


def test_the_whole_frame_fills_the_input_without_augmentation(videos: list[Path]) -> None:
    ds = clips(videos[:1], ClipOptions(frames=2))
    affine_inv = ds[0]["affine_inv"].numpy()
    # 64 × 48 video into a 32 × 32 input: the frame's width fills it (2 video px per input px), centred.
    corners = apply_affine(np.array([[-0.5, 15.5], [31.5, 15.5]]), affine_inv)
    np.testing.assert_allclose(corners, [[-0.5, (H - 1) / 2], [W - 0.5, (H - 1) / 2]], atol=1e-6)


def test_runs_of_clips_follow_the_video_and_stay_inside_it(videos: list[Path]) -> None:
    ds = clips(videos, ClipOptions(frames=2, step=1, run_length=4))
    sampler = ClipSampler(ds, num_samples=40, seed=1)
    first = list(sampler)
    assert len(first) == len(sampler) == 40 and first == list(sampler)  # the same for a seed and epoch
    sampler.set_epoch(1)
    assert list(sampler) != first
    located = [ds.locate(i) for i in first]
    steps = [b[1] - a[1] for a, b in zip(located, located[1:]) if a[0] == b[0]]
    assert steps.count(2) >= 20  # most neighbours in the order are the next clip of the same video (2 frames on)


def test_flipped_clips_get_their_left_and_right_keypoints_back() -> None:
    coords = torch.arange(2 * 1 * 3 * 2, dtype=torch.float32).view(2, 1, 3, 2)  # (N, T, K, 2)
    out = unpermute_flipped(coords, torch.tensor([False, True]), [(0, 2)])
    torch.testing.assert_close(out[0], coords[0])
    torch.testing.assert_close(out[1], coords[1][:, [2, 1, 0]])


# ---- bad input: one message each ---------------------------------------------------------------------------
def test_a_video_that_does_not_open(tmp_path: Path) -> None:
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    with pytest.raises(DataError, match=r"unlabelled_videos: .*notes.mp4: OpenCV cannot read it as a video"):
        probe_video(str(bad))


def test_a_pattern_that_matches_nothing_or_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"unlabelled_videos: '.*/\*.mp4' matches no file"):
        expand_videos([str(tmp_path / "*.mp4")])
    with pytest.raises(DataError, match=r"unlabelled_videos: .*/gone.mp4 does not exist"):
        expand_videos([str(tmp_path / "gone.mp4")])


def test_a_clip_longer_than_the_video(videos: list[Path]) -> None:
    with pytest.raises(DataError, match=r"b.avi has 12 frame\(s\), fewer than one clip spans \(5 frames, 3 apart: "
                                        r"13 frames\)"):
        clips(videos, ClipOptions(frames=5, step=3))


def test_clip_options_need_two_frames() -> None:
    with pytest.raises(DataError, match="at least 2"):
        ClipOptions(frames=1)


# ---- the data part -----------------------------------------------------------------------------------------
def test_the_data_part_combines_labelled_batches_and_clips(tmp_path: Path, videos: list[Path]) -> None:
    project = make_dlc_project(tmp_path / "p")
    dm = DeepLabCutDataModule(str(project.root), box_source="both", input_size=(32, 32), batch_size=4,
                              num_workers=0, val_every=3, unlabelled_videos=[str(videos[0].parent / "*")],
                              unlabelled_clips=ClipOptions(frames=3, clips_per_batch=2, num_workers=0))
    dm.setup("fit")
    loader = dm.train_dataloader()
    iter(loader)
    labelled_batches = len(dm.datasets["train"]) // 4
    assert len(loader) == labelled_batches
    batch, _, _ = next(iter(loader))
    assert batch["labelled"]["image"].shape == (4, 3, 32, 32)
    assert batch["unlabelled"]["images"].shape == (2, 3, 3, 32, 32)
    poses, labelled = dm.labelled_poses()  # original pixels of the training records
    assert poses.shape == (len(dm.datasets["train"]), dm.num_keypoints, 2) and labelled.dtype == bool


def test_a_crop_only_data_part_refuses_unlabelled_video(tmp_path: Path, videos: list[Path]) -> None:
    project = make_dlc_project(tmp_path / "p")
    dm = DeepLabCutDataModule(str(project.root), box_source="keypoints", input_size=(32, 32), num_workers=0,
                              val_every=3, unlabelled_videos=[str(videos[0])])
    with pytest.raises(DataError, match=r"unlabelled_videos: unlabelled frames are seen whole, and box_source: "
                                        r"keypoints trains the network on crops around the animal only"):
        dm.setup("fit")


def test_the_synthetic_data_part_takes_synthetic_video(tmp_path: Path) -> None:
    from kpreg.data.synthetic_datamodule import SyntheticPoseDataModule
    from kpreg.data.synthetic_video import VideoSpec, write_clip

    video = write_clip(tmp_path, 0, 0, VideoSpec(size=(32, 32), frames=10)).video
    dm = SyntheticPoseDataModule(image_size=32, num_train=8, num_val=4, batch_size=4, num_workers=0,
                                 unlabelled_videos=[str(video)],
                                 unlabelled_clips=ClipOptions(frames=2, clips_per_batch=3, num_workers=0))
    loader = dm.train_dataloader()
    batch, _, _ = next(iter(loader))
    assert batch["unlabelled"]["images"].shape == (3, 2, 3, 32, 32)
    # the figures are drawn at the input size, so their keypoints are already in original pixels
    poses, labelled = dm.labelled_poses()
    assert poses.shape == (8, 16, 2) and labelled.all()


def test_a_coco_data_part_takes_video_only_on_whole_images(tmp_path: Path, videos: list[Path]) -> None:
    from testkit.coco import make_coco_fixture

    from kpreg.data.coco import COCODataModule

    fx = make_coco_fixture(tmp_path / "coco")
    paths = dict(train_ann=str(fx.train_ann), val_ann=str(fx.val_ann), train_images=str(fx.images),
                 input_size=(32, 32), num_workers=0, unlabelled_videos=[str(videos[0])])
    with pytest.raises(DataError, match=r"box_source: bbox trains the network on crops around each instance only"):
        COCODataModule(**paths).setup("fit")
    dm = COCODataModule(**paths, box_source="image", unlabelled_clips=ClipOptions(num_workers=0))
    dm.setup("fit")
    assert len(dm.datasets["unlabelled"]) == 20 - 4 + 1
