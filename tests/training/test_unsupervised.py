"""The unsupervised losses in training: keypoints in the video's pixels, the terms, refusals, and a run of train.py."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from testkit.cli import REPO, csv_logger, run_script
from testkit.heads import HEADS

import kpreg.heads
from kpreg.cli.lightning import make_cli
from kpreg.data.synthetic_video import VideoSpec, write_clip, write_labelled_frames
from kpreg.heads import HeatmapHead
from kpreg.training.module import KeypointModule
from kpreg.training.unsupervised import UnsupervisedLosses, UnsupervisedTerms


class Identity:
    """A head stand-in whose differentiable keypoints are its raw output (N·T, K, 2) input pixels."""

    def soft_coords(self, raw: torch.Tensor) -> torch.Tensor:
        return raw


def test_clip_keypoints_are_mapped_to_the_video_and_unflipped() -> None:
    terms = UnsupervisedTerms(UnsupervisedLosses(temporal_weight=1.0), num_keypoints=2, flip_pairs=[(0, 1)])
    raw = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]]] * 2)  # (N·T = 4, K = 2, 2) input px
    affine_inv = torch.tensor([[[2.0, 0.0, 10.0], [0.0, 2.0, 20.0]]] * 2, dtype=torch.float64)  # ×2, then shift
    clips = {"images": torch.zeros(2, 2, 3, 8, 8), "affine_inv": affine_inv, "flipped": torch.tensor([False, True])}
    video = terms.video_keypoints(Identity(), raw, clips)  # (N, T, K, 2)
    assert video.shape == (2, 2, 2, 2)
    torch.testing.assert_close(video[0, 0], torch.tensor([[12.0, 24.0], [16.0, 28.0]]))
    torch.testing.assert_close(video[1, 0], torch.tensor([[16.0, 28.0], [12.0, 24.0]]))  # left and right swapped back


def test_terms_by_hand_with_their_weights() -> None:
    keypoints = torch.zeros(1, 3, 2, 2)  # one clip, 3 frames, 2 keypoints
    keypoints[0, 1, 0] = torch.tensor([3.0, 4.0])  # keypoint 0 jumps 5 px and back
    terms = UnsupervisedTerms(UnsupervisedLosses(temporal_weight=0.5, temporal_epsilon=2.0), 2, [])
    out = terms(keypoints)
    # (5 − 2) twice for keypoint 0, nothing for keypoint 1: mean over the 2 pairs × 2 keypoints = 1.5 px.
    torch.testing.assert_close(out["temporal"], torch.tensor(1.5))
    torch.testing.assert_close(out["loss"], torch.tensor(0.75))
    assert "pca" not in out


def test_the_pca_term_counts_only_beyond_its_epsilon() -> None:
    terms = UnsupervisedTerms(UnsupervisedLosses(pca_weight=2.0, pca_components=1, pca_epsilon=0.5), 3, [])
    t = np.linspace(0.2, 0.8, 20)
    poses = np.stack([np.zeros((20, 2)), np.stack([t, t], 1), np.ones((20, 2))], axis=1) * 10.0  # (20, 3, 2)
    terms.fit(poses, np.ones((20, 3), bool))
    clip = torch.tensor([[[[0.0, 0.0], [6.0, 4.0], [10.0, 10.0]]] * 2])  # (1, 2, 3, 2): √2 px off the span, twice
    out = terms(clip)
    expected = (2**0.5 - 0.5) / 3  # keypoint 1 only, averaged over the 3 keypoints
    torch.testing.assert_close(out["pca"], torch.tensor(expected), atol=1e-5, rtol=0)
    torch.testing.assert_close(out["loss"], torch.tensor(2 * expected), atol=1e-5, rtol=0)


class NoSoftKeypointHead(HeatmapHead):
    """A heatmap head that declares no differentiable keypoint (as a third-party head might)."""

    soft_coords_source = ""


def test_a_head_without_a_differentiable_keypoint_is_refused() -> None:
    with pytest.raises(ValueError, match=r"model.unsupervised: NoSoftKeypointHead has no differentiable keypoint"):
        KeypointModule(NoSoftKeypointHead(), backbone="test_resnet", num_keypoints=2, input_size=(32, 32),
                       unsupervised=UnsupervisedLosses(temporal_weight=1.0))
    # without an unsupervised loss it trains as always
    KeypointModule(NoSoftKeypointHead(), backbone="test_resnet", num_keypoints=2, input_size=(32, 32),
                   unsupervised=UnsupervisedLosses())


# ---- train.py with a project and its unlabelled video ---------------------------------------------------------
SPEC = VideoSpec(size=(32, 32), frames=16, joint_markers=True)


@pytest.fixture(scope="module")
def video_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("semisup")
    for clip in range(3):
        write_labelled_frames(root / "project", 0, clip, [0, 5, 10, 15], SPEC)
        write_clip(root / "videos", 0, clip, SPEC)
    return root


def train_args(root: Path, run: Path, *extra: str) -> list[str]:
    return [
        "--config", "configs/data/deeplabcut.yaml", "--config", "configs/protocols/from_scratch_cpu.yaml",
        "--config", "configs/heads/dsnt.yaml",
        "--model.backbone", "test_resnet", "--model.head.init_args.neck_channels", "8",
        "--data.init_args.project", str(root / "project"), "--data.init_args.box_source", "image",
        "--data.init_args.input_size", "[32,32]", "--data.init_args.batch_size", "4",
        "--data.init_args.num_workers", "0", "--data.init_args.val_every", "4",
        "--data.init_args.unlabelled_videos", f"[{root / 'videos'}/*.mp4]",
        "--data.init_args.unlabelled_clips.frames", "3", "--data.init_args.unlabelled_clips.num_workers", "0",
        "--trainer.max_epochs", "2", "--trainer.log_every_n_steps", "1",
        *csv_logger(run), *extra,
    ]


@pytest.mark.slow
def test_train_logs_the_unsupervised_losses_and_keeps_the_pca(video_project: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    done = run_script("train.py", *train_args(video_project, run, "--model.unsupervised.temporal_weight", "1",
                                              "--model.unsupervised.pca_weight", "1",
                                              "--model.unsupervised.pca_components", "3"))
    assert done.returncode == 0, done.stderr[-3000:]
    rows = list(csv.DictReader(next(run.rglob("metrics.csv")).open()))
    logged = {k for row in rows for k, v in row.items() if v}
    assert {"train/loss", "train/supervised", "train/temporal", "train/pca"} <= logged
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    pca = checkpoint["kpreg"]["unsupervised"]["pose_pca"]
    assert len(pca["axes"]) == 3 and len(pca["epsilon"]) == 16


@pytest.mark.slow
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model.unsupervised.pca_weight", "1"],  # 9 training poses, 32 dimensions, a share of variance
         r"error: pose PCA: 9 labelled poses with every keypoint, not more than the 32 dimensions of a pose"),
        ([], r"error: data.init_args.unlabelled_videos are given but no unsupervised loss is on"),
    ],
)
def test_train_refuses_with_one_message(video_project: Path, tmp_path: Path, extra: list[str], message: str) -> None:
    done = run_script("train.py", *train_args(video_project, tmp_path / "run", *extra))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len([line for line in done.stderr.splitlines() if line.startswith("error:")]) == 1
    assert re.search(message, done.stderr.replace("\n", " ")), done.stderr[-2000:]


# ---- the config part, with every head ------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name", HEADS)
def test_the_config_part_trains_every_head_on_video(name: str, video_project: Path, tmp_path: Path) -> None:
    """configs/unlabelled/video.yaml after any head part: a training step computes and logs both unsupervised terms
    (every head declares a differentiable keypoint; tests/heads/test_suite.py checks that it carries gradients)."""
    head = getattr(kpreg.heads, name)
    parts = ["configs/data/deeplabcut.yaml", "configs/protocols/from_scratch_cpu.yaml",
             f"configs/heads/{head.name}.yaml", "configs/unlabelled/video.yaml"]
    cli = make_cli([
        *(a for part in parts for a in ("--config", str(REPO / part))),
        "--model.backbone", "test_resnet", "--data.init_args.project", str(video_project / "project"),
        "--data.init_args.box_source", "image", "--data.init_args.input_size", "[32,32]",
        "--data.init_args.batch_size", "4", "--data.init_args.num_workers", "0", "--data.init_args.val_every", "4",
        "--data.init_args.unlabelled_videos", f"[{video_project / 'videos'}/*.mp4]",
        "--data.init_args.unlabelled_clips.num_workers", "0",
        "--model.unsupervised.temporal_epsilon", "0", "--model.unsupervised.pca_epsilon", "0",
        "--model.unsupervised.pca_components", "3",  # 9 training poses of 16 keypoints: a share of variance is refused
        "--trainer.fast_dev_run", "true", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(tmp_path / "run"),
    ], evaluate=False)
    assert cli.model.unsupervised is not None and cli.datamodule.unlabelled_clips.frames == 4  # from the part
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    metrics = cli.trainer.callback_metrics
    assert torch.isfinite(metrics["train/temporal"]) and torch.isfinite(metrics["train/pca"])
    assert float(metrics["train/temporal"]) > 0  # ε = 0: any motion of a keypoint costs
