"""Unlabelled video for the unsupervised losses: short clips of consecutive frames, one augmentation per clip.

``unlabelled_videos`` (a data part's argument: paths or glob patterns) are opened and checked once, in ``setup``:
a pattern that matches no file, a file OpenCV cannot open as a video, or a video shorter than one clip is one
``DataError`` naming it. A clip is ``frames`` frames, ``step`` video frames apart (``ClipOptions``)::

    video v:   0 1 2 3 4 5 6 7 8 9 …          frames = 3, step = 2: a clip spans (3 − 1) · 2 + 1 = 5 frames
    clip at 3:       3   5   7                 every start whose span fits in the video is a clip

**The view.** An unlabelled frame has no box: it is seen whole (the frame expanded to the input's aspect ratio), as a
data part's ``box_source: image`` (or ``both``) training sample is. A data part that trains only on crops around
the animal refuses unlabelled video (its network never saw a whole frame). The clip's augmentation — scale, rotation,
flip, colour jitter, the data part's own settings — is drawn **once per clip**: every frame of it gets the same warp
and the same colours, so a keypoint moves between its frames only as the animal moved. ``affine_inv`` maps the clip's
input pixels back to the video's pixels (the flip included, as a labelled sample's ``meta.affine_inv``).

**Reading.** Seeking in a compressed video decodes from the last key frame (DeepLabCut's openfield MP4: 119 ms to
seek and read 4 frames, 11 ms to read them in sequence). ``ClipSampler`` therefore hands out ``run_length`` clips one
after the other (clip after clip along the video) before it jumps to a random start, and each loader process keeps
its videos open and reads forward where the next clip lies ahead: one seek per run. Runs, their starts and their
order are drawn from (seed, epoch, rank).

A clip sample::

    images    (T, 3, H, W) float32   normalised frames (kpreg.data.sample.image_to_tensor)
    affine_inv (2, 3)      float64   input pixels → video pixels, the same for every frame of the clip
    flipped   ()           bool      the clip is mirrored (its keypoints' left/right are swapped)
    video     ()           int64     the video's position in ``unlabelled_videos`` (as expanded)
    frame     ()           int64     the clip's first frame
"""

from __future__ import annotations

import glob as globlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset
from torch.utils.data.distributed import DistributedSampler

from kpreg.coords import box_to_center_size, invert_affine
from kpreg.data.errors import DataError
from kpreg.data.sample import image_to_tensor
from kpreg.data.topdown import NO_AUGMENTATION, Augmentation, PersonRecord, TopDownTransform

_GLOB_MAGIC = ("*", "?", "[")
MAX_READ_AHEAD = 250  # frames: further ahead, a seek is cheaper than decoding every frame up to the clip


@dataclass(frozen=True)
class ClipOptions:
    """How unlabelled clips are drawn.

    frames: consecutive frames per clip (at least 2: the temporal loss compares neighbours).
    step: video frames between two frames of a clip (1: every frame; 2 at 60 fps gives a 30 fps clip).
    clips_per_batch: clips per training step (the step sees ``clips_per_batch × frames`` unlabelled images).
    num_workers: loader processes decoding clips (0: in the training process).
    run_length: clips read one after the other before a random jump (one seek per run).
    """

    frames: int = 4
    step: int = 1
    clips_per_batch: int = 2
    num_workers: int = 1
    run_length: int = 16

    def __post_init__(self) -> None:
        if self.frames < 2:
            raise DataError(f"unlabelled_clips.frames must be at least 2 (the temporal loss compares neighbouring "
                            f"frames), got {self.frames}")
        if self.step < 1 or self.clips_per_batch < 1 or self.num_workers < 0 or self.run_length < 1:
            raise DataError("unlabelled_clips: step, clips_per_batch and run_length must be at least 1 and "
                            f"num_workers at least 0, got {self}")

    @property
    def span(self) -> int:
        """Video frames from a clip's first frame to its last, both included."""
        return (self.frames - 1) * self.step + 1


@dataclass(frozen=True)
class VideoInfo:
    path: str
    frames: int  # frames that decode
    height: int
    width: int


def expand_videos(patterns: Sequence[str]) -> list[str]:
    """Paths and glob patterns → the files, in the order given (a pattern's matches sorted); a pattern that matches
    nothing, or a path that does not exist, is a ``DataError``."""
    out: list[str] = []
    for pattern in patterns:
        pattern = str(pattern)
        if any(c in pattern for c in _GLOB_MAGIC):
            matches = sorted(p for p in globlib.glob(pattern, recursive=True) if Path(p).is_file())
            if not matches:
                raise DataError(f"unlabelled_videos: {pattern!r} matches no file")
            out.extend(matches)
        elif not Path(pattern).is_file():
            raise DataError(f"unlabelled_videos: {pattern} does not exist")
        else:
            out.append(pattern)
    return out


def probe_video(path: str) -> VideoInfo:
    """The video's size and the number of frames that decode (the header's count, checked by reading its last frame;
    counted by decoding them all where the header is wrong). A file OpenCV cannot open is a ``DataError``."""
    cap = cv2.VideoCapture(path)
    try:
        ok, first = cap.read() if cap.isOpened() else (False, None)
        if not ok:
            raise DataError(f"unlabelled_videos: {path}: OpenCV cannot read it as a video (not a video, a codec it "
                            "lacks, or a damaged file)")
        height, width = first.shape[:2]
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if count > 1:
            cap.set(cv2.CAP_PROP_POS_FRAMES, count - 1)
            if cap.grab():
                return VideoInfo(path, count, height, width)
        cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        count = 0
        while cap.grab():
            count += 1
        return VideoInfo(path, count, height, width)
    finally:
        cap.release()


class _Reader:
    """Open videos and their read position, per process (a ``VideoCapture`` is never pickled to a worker)."""

    def __init__(self) -> None:
        self.captures: dict[str, tuple[cv2.VideoCapture, int]] = {}

    def read(self, path: str, start: int, frames: int, step: int) -> list[np.ndarray]:
        """``frames`` BGR frames from ``start``, ``step`` apart."""
        cap, pos = self.captures.get(path, (None, -1))
        if cap is None:
            cap, pos = cv2.VideoCapture(path), 0
        if not pos <= start <= pos + MAX_READ_AHEAD:
            cap.set(cv2.CAP_PROP_POS_FRAMES, start)
            pos = start
        out = []
        try:
            for i in range(frames):
                target = start + i * step
                while pos < target:
                    if not cap.grab():
                        raise DataError(f"unlabelled video {path}: frame {pos} does not decode")
                    pos += 1
                ok, image = cap.read()
                if not ok:
                    raise DataError(f"unlabelled video {path}: frame {pos} does not decode")
                pos += 1
                out.append(image)
        except DataError:
            cap.release()
            self.captures.pop(path, None)
            raise
        self.captures[path] = (cap, pos)
        return out


class VideoClipDataset(Dataset):
    """Every clip of the videos; item ``i`` is the clip at the ``i``-th start position (video by video).

    Args:
        videos: the probed videos (``probe_video``).
        options: frames per clip and their step.
        input_size: (H, W) of the network input.
        flip_pairs: the keypoints' left/right pairs (a flipped clip's keypoints are swapped, as in training).
        augmentation: drawn once per clip (``None``: none); half-body crops do not apply (no keypoints).
    """

    def __init__(self, videos: Sequence[VideoInfo], options: ClipOptions, input_size: tuple[int, int],
                 flip_pairs: Sequence[Sequence[int]] = (), augmentation: Augmentation | None = None) -> None:
        self.videos = list(videos)
        self.options = options
        self.input_size = (int(input_size[0]), int(input_size[1]))
        for v in self.videos:
            if v.frames < options.span:
                raise DataError(
                    f"unlabelled_videos: {v.path} has {v.frames} frame(s), fewer than one clip spans "
                    f"({options.frames} frames, {options.step} apart: {options.span} frames); shorten the clips "
                    "(data.init_args.unlabelled_clips.frames / .step) or leave this video out")
        aug = augmentation or NO_AUGMENTATION
        self.transform = TopDownTransform(self.input_size, flip_pairs,
                                          Augmentation(**{**aug.__dict__, "half_body_prob": 0.0}))
        self.starts = np.array([v.frames - options.span + 1 for v in self.videos], dtype=np.int64)  # per video
        self.offsets = np.concatenate([[0], np.cumsum(self.starts)])  # (V + 1,) first index of each video
        self._reader: _Reader | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_reader": None}

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, index: int) -> tuple[int, int]:
        """Item index → (video, first frame)."""
        if not 0 <= index < len(self):
            raise IndexError(f"clip {index} out of range for {len(self)} clips")
        v = int(np.searchsorted(self.offsets, index, side="right") - 1)
        return v, int(index - self.offsets[v])

    def _record(self, v: int) -> PersonRecord:
        """The whole frame as the box to crop (expanded to the input's aspect ratio, no padding)."""
        info = self.videos[v]
        aspect = self.input_size[1] / self.input_size[0]
        center, size = box_to_center_size([0.0, 0.0, float(info.width), float(info.height)], aspect, 1.0)
        return PersonRecord(info.path, center, size, np.zeros((0, 2)), np.zeros(0, dtype=bool), 0.0, 0.0, 0.0, {})

    def __getitem__(self, index: int) -> dict[str, Any]:
        v, start = self.locate(index)
        rec = self._record(v)
        rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
        affine, flip = self.transform.draw(rec, rng)  # (2, 3) video → input pixels, one for the clip
        if self._reader is None:
            self._reader = _Reader()
        h, w = self.input_size
        frames = self._reader.read(rec.image_path, start, self.options.frames, self.options.step)
        crops = [cv2.warpAffine(f, affine, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
                 for f in frames]
        clip = cv2.cvtColor(np.concatenate(crops, axis=0), cv2.COLOR_BGR2RGB)  # (T·H, W, 3): one image, one jitter
        if self.transform.photometric is not None:
            clip = self.transform.photometric(image=clip)["image"]
        images = torch.stack([image_to_tensor(c) for c in np.split(clip, len(frames), axis=0)])  # (T, 3, H, W)
        return {
            "images": images,
            "affine_inv": torch.as_tensor(invert_affine(affine), dtype=torch.float64),
            "flipped": torch.tensor(flip),
            "video": torch.tensor(v, dtype=torch.int64),
            "frame": torch.tensor(start, dtype=torch.int64),
        }


class ClipSampler(DistributedSampler):
    """``num_samples`` clip indices per epoch in runs of ``run_length`` consecutive clips (module docstring).

    A run starts at a random clip and goes on clip after clip (start + span, + 2 span …) while it stays inside its
    video. A ``DistributedSampler`` so that Lightning leaves it in place; each rank draws its own runs.
    """

    def __init__(self, dataset: VideoClipDataset, num_samples: int, seed: int = 0, num_replicas: int = 1,
                 rank: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.clips = dataset
        self.count = int(num_samples)

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch, self.rank])
        ds = self.clips
        span, run = ds.options.span, ds.options.run_length
        out: list[int] = []
        while len(out) < self.count:
            index = int(rng.integers(len(ds)))
            v, start = ds.locate(index)
            room = (int(ds.starts[v]) - 1 - start) // span + 1  # clips left in the video from this start
            out.extend(index + span * i for i in range(min(run, room)))
        return iter(out[: self.count])


def clip_batches_needed(labelled_batches: int, options: ClipOptions) -> int:
    """Clips per epoch so that the unlabelled loader has as many batches as the labelled one."""
    return max(int(labelled_batches), 1) * options.clips_per_batch


def unpermute_flipped(coords: torch.Tensor, flipped: torch.Tensor, flip_pairs: Sequence[Sequence[int]]) -> torch.Tensor:
    """(N, T, K, 2) keypoints of N clips → the same with a flipped clip's left/right keypoints swapped back, so that
    keypoint k is the animal's keypoint k in the video (a flipped clip's network output names the mirror image's)."""
    k = coords.shape[-2]
    perm = list(range(k))
    for a, b in flip_pairs:
        perm[a], perm[b] = b, a
    swapped = coords[..., perm, :]
    return torch.where(flipped.view(-1, *([1] * (coords.ndim - 1))), swapped, coords)


__all__ = ["ClipOptions", "ClipSampler", "VideoClipDataset", "VideoInfo", "clip_batches_needed", "expand_videos",
           "probe_video", "unpermute_flipped"]
