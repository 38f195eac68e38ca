"""Synthetic video with exact labels: the figures of ``kpreg.data.synthetic`` moving, turning, bending and passing
behind an occluder, smoothly over time.

Frame ``f`` of clip ``c`` of stream ``seed`` is a pure function of ``(seed, c, f)`` and the ``VideoSpec``: no state
is carried from frame to frame, so any frame can be drawn alone, in any order, by any process, and is the same
every time. A clip draws its person once (limb lengths, colours, facing), its scene once (background, distractor
shapes, an occluder's texture and path, the camera's noise level) and, for every parameter of the pose and the
placement, a smooth signal of time (a sum of two sinusoids of random frequency and phase, scaled into the range
``kpreg.data.synthetic`` draws that parameter from): every frame's pose is a pose of the still-image dataset, and
consecutive frames differ by little. Arms move fastest (up to ~1 Hz at ``speed`` 1), legs slower, the body's
position, rotation (the turn, ±30°) and size slowest. Each frame adds fresh camera noise. Facing is fixed per clip:
a figure turning round would swap its left and right labels at some instant, which no smooth track can follow.

Labels are exact for the rendered frame (sub-pixel, never rounded; occluded joints keep their label and are
flagged). An MP4 is lossy: a frame read back from the file is close to, not equal to, the rendered one; the
labelled PNG frames written by ``write_labelled_frames`` are lossless.

The API (also the base of learning from unlabelled video)::

    from kpreg.data.synthetic_video import VideoSpec, render_frame, render_clip, write_clip, write_labelled_frames

    spec = VideoSpec(size=(96, 96), frames=300, fps=30.0)
    fig = render_frame(seed=0, clip=3, frame=41, spec=spec)    # a SyntheticFigure:
    fig.image, fig.keypoints, fig.occluded, fig.head_box       # (H, W, 3) uint8 RGB, (16, 2) x,y px, (16,) bool
    clip = render_clip(0, 3, spec)                             # a ClipLabels: keypoints (T, 16, 2), occluded (T, 16),
                                                               # size (T,) the figure's larger extent, px
    files = write_clip("out/", 0, 3, spec)                     # out/s0_clip003.mp4, .csv (DeepLabCut table, frame
                                                               # index), .npz (keypoints, occluded, size, head_size)
    write_labelled_frames("project/", 0, 3, [0, 10, 20], spec) # project/labeled-data/s0_clip003/img010.png …,
                                                               # CollectedData_synthetic.csv, config.yaml

Keypoints are MPII's 16 joints in MPII's order (``MPII_JOINT_NAMES``), x,y in frame pixels with pixel centres on
integers (kpreg's convention and DeepLabCut's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from kpreg.data.synthetic import (
    NUM_JOINTS,
    FigureAngles,
    FigureShape,
    FigureStyle,
    SyntheticFigure,
    background,
    distractors,
    draw_figure,
    figure_joints,
    occlude,
    random_shape,
    random_style,
)
from kpreg.formats.deeplabcut import frame_file_name, read_collected_data, write_collected_data
from kpreg.formats.mpii import MPII_JOINT_NAMES, MPII_SKELETON

__all__ = [
    "VideoSpec", "ClipLabels", "ClipFiles", "render_frame", "render_clip", "clip_name", "frame_file_name",
    "write_clip", "write_labelled_frames", "SCORER", "KEYPOINT_NAMES", "SKELETON",
]

SCORER = "synthetic"
KEYPOINT_NAMES: tuple[str, ...] = tuple(MPII_JOINT_NAMES)
SKELETON: tuple[tuple[int, int], ...] = tuple((int(a), int(b)) for a, b in MPII_SKELETON)
MP4_FOURCC = "mp4v"  # the MP4 codec every OpenCV wheel writes (kpreg.inference.writers)

# Random streams: a clip's setup and a frame's camera noise never share a stream with each other or with the
# still-image dataset (``render_figure`` seeds with ``[seed, index]``).
_CLIP_STREAM = 7_301
_FRAME_STREAM = 7_302

# Frequency bands (Hz at speed 1) of the smooth signals.
_SLOW = (0.03, 0.15)  # position, rotation, size
_BODY = (0.05, 0.3)  # torso, neck, head
_LEGS = (0.1, 0.5)
_ARMS = (0.15, 1.0)


@dataclass(frozen=True)
class VideoSpec:
    """What every clip of a stream looks like.

    size: (H, W) of a frame, px. frames: frames per clip. fps: the frame rate (signals are in seconds).
    figure_height: the figure's height as a share of the frame's height (min, max), before it is shrunk to fit.
    speed: a factor on every frequency (2: twice as fast). occluder: the probability that a clip has an occluder
    passing through it. noise: the camera noise's standard deviation, grey levels (min, max), drawn per clip.
    joint_markers: a dark disc on every joint (the still-image dataset's default; real animals have none).
    """

    size: tuple[int, int] = (96, 96)
    frames: int = 300
    fps: float = 30.0
    figure_height: tuple[float, float] = (0.45, 0.75)
    speed: float = 1.0
    occluder: float = 0.7
    noise: tuple[float, float] = (2.0, 6.0)
    joint_markers: bool = False

    def __post_init__(self) -> None:
        h, w = self.size
        if h < 16 or w < 16:
            raise ValueError(f"VideoSpec.size must be at least 16 x 16 px, got {self.size}")
        if self.frames < 1 or not (self.fps > 0):
            raise ValueError(f"VideoSpec needs frames >= 1 and fps > 0, got {self.frames}, {self.fps}")
        lo, hi = self.figure_height
        if not 0.1 <= lo <= hi <= 0.9:
            raise ValueError(f"VideoSpec.figure_height must satisfy 0.1 <= min <= max <= 0.9, got {self.figure_height}")


@dataclass(frozen=True)
class _Signal:
    """A smooth value in [0, 1]: 0.5 + 0.5 × (a₁ sin(2π f₁ t + φ₁) + a₂ sin(2π f₂ t + φ₂)) / (a₁ + a₂)."""

    freqs: tuple[float, float]  # Hz
    phases: tuple[float, float]  # radians
    weights: tuple[float, float]

    def __call__(self, t: float) -> float:
        total = sum(w * math.sin(2 * math.pi * f * t + p) for f, p, w in zip(self.freqs, self.phases, self.weights))
        return 0.5 + 0.5 * total / sum(self.weights)


def _signal(rng: np.random.Generator, band: tuple[float, float], speed: float) -> _Signal:
    freqs = tuple(float(f) * speed for f in rng.uniform(*band, 2))
    phases = tuple(float(p) for p in rng.uniform(0, 2 * math.pi, 2))
    weights = (1.0, float(rng.uniform(0.2, 0.8)))
    return _Signal(freqs, phases, weights)  # type: ignore[arg-type]


def _between(lo: float, hi: float, u: float) -> float:
    return lo + (hi - lo) * u


@dataclass(frozen=True)
class _Clip:
    """Everything a clip draws once."""

    shape: FigureShape
    facing: float
    style: FigureStyle
    scene: np.ndarray  # (H, W, 3) uint8 RGB background with distractors
    signals: dict[str, _Signal]
    noise: float  # camera noise, grey levels
    occluder_half: np.ndarray | None  # (2,) px half size, None: no occluder
    occluder_texture: np.ndarray | None  # (H, W, 3) uint8, moved with the occluder
    occluder_path: tuple[np.ndarray, np.ndarray, float, float, float] | None  # centre, direction, start, speed, length


@lru_cache(maxsize=32)
def _clip(seed: int, clip: int, spec: VideoSpec) -> _Clip:
    rng = np.random.default_rng([seed, clip, _CLIP_STREAM])
    h, w = spec.size
    shape = random_shape(rng)
    facing = float(rng.choice([-1.0, 1.0]))
    nominal_height = float(np.mean(spec.figure_height)) * h
    style = random_style(rng, nominal_height, facing)
    scene = background(rng, h, w)
    distractors(rng, scene)
    names = {
        "up": _BODY, "neck": _BODY, "head": _BODY, "x": _SLOW, "y": _SLOW, "rotation": _SLOW, "height": _SLOW,
    }
    for side in ("left", "right"):
        names |= {f"thigh_spread_{side}": _LEGS, f"thigh_turn_{side}": _LEGS, f"knee_{side}": _LEGS,
                  f"arm_{side}": _ARMS, f"elbow_{side}": _ARMS}
    signals = {name: _signal(rng, band, spec.speed) for name, band in names.items()}
    noise = float(rng.uniform(*spec.noise))
    half = texture = path = None
    if rng.random() < spec.occluder:
        side_px = float(min(h, w))
        half = rng.uniform(0.1, 0.2, 2) * side_px
        texture = background(rng, h, w)
        heading = rng.uniform(0, 2 * math.pi)
        direction = np.array([math.cos(heading), math.sin(heading)])  # (2,) unit x, y
        centre = np.array([w, h], dtype=np.float64) / 2 + rng.uniform(-0.25, 0.25, 2) * side_px  # (2,) x, y
        length = 1.5 * (math.hypot(h, w) + 2 * float(half.max()))  # the loop: in view for two thirds of it at most
        crossing = rng.uniform(2.0, 6.0)  # seconds to cross the frame
        speed = math.hypot(h, w) / crossing * spec.speed
        path = (centre, direction, float(rng.uniform(0, length)), speed, length)
    return _Clip(shape, facing, style, scene, signals, noise, half, texture, path)


def _angles(c: _Clip, t: float) -> FigureAngles:
    s = {name: sig(t) for name, sig in c.signals.items()}
    pair = lambda lo, hi, name: (_between(lo, hi, s[f"{name}_left"]), _between(lo, hi, s[f"{name}_right"]))  # noqa: E731
    return FigureAngles(
        up=-90.0 + _between(-15, 15, s["up"]), neck=_between(-15, 15, s["neck"]), head=_between(-25, 25, s["head"]),
        thigh_spread=pair(0, 30, "thigh_spread"), thigh_turn=pair(-15, 15, "thigh_turn"), knee=pair(-40, 40, "knee"),
        arm=pair(-30, 150, "arm"), elbow=pair(-100, 100, "elbow"),
    )


def _place(c: _Clip, t: float, spec: VideoSpec) -> tuple[np.ndarray, float]:
    """(16, 2) x,y frame pixels of the pose at time ``t`` and the figure's height, px."""
    h, w = spec.size
    pose = figure_joints(c.shape, _angles(c, t), c.facing)  # (16, 2) figure units
    height = _between(*spec.figure_height, c.signals["height"](t)) * h
    rot = math.radians(_between(-30, 30, c.signals["rotation"](t)))
    cs, sn = math.cos(rot), math.sin(rot)
    pts = (pose - pose.mean(axis=0)) @ np.array([[cs, sn], [-sn, cs]]) * height  # (16, 2) px around 0
    extent = np.array([w, h], dtype=np.float64)
    margin = 0.06 * min(h, w)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    span = hi - lo
    if np.any(span > extent - 2 * margin):  # a sprawling pose: shrink it to fit (continuous in t)
        factor = float(np.min((extent - 2 * margin) / span))
        pts, lo, hi, height = pts * factor, lo * factor, hi * factor, height * factor
    low, high = margin - lo, extent - margin - hi  # (2,) admissible offsets
    u = np.array([c.signals["x"](t), c.signals["y"](t)])  # (2,) in [0, 1]
    return pts + low + u * np.maximum(high - low, 0.0), height


def render_frame(seed: int, clip: int, frame: int, spec: VideoSpec = VideoSpec()) -> SyntheticFigure:
    """Frame ``frame`` of clip ``clip`` of stream ``seed`` (a pure function of its arguments)."""
    if not 0 <= frame < spec.frames:
        raise IndexError(f"frame {frame} is outside the clip's {spec.frames} frames")
    c = _clip(int(seed), int(clip), spec)
    t = frame / spec.fps
    keypoints, _ = _place(c, t, spec)  # (16, 2) x,y px
    img = c.scene.copy()
    head_centre, head_radius = draw_figure(img, keypoints, c.style, spec.joint_markers)
    occluded = np.zeros(NUM_JOINTS, dtype=bool)
    if c.occluder_path is not None:
        centre0, direction, start, speed, length = c.occluder_path
        along = (start + speed * t) % length - length / 2  # px along the path, looping out of view
        centre = centre0 + along * direction  # (2,) x, y px
        shift = np.float32([[1, 0, along * direction[0]], [0, 1, along * direction[1]]])
        texture = cv2.warpAffine(c.occluder_texture, shift, (spec.size[1], spec.size[0]),
                                 flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        occluded = occlude(img, keypoints, centre, c.occluder_half, texture)
    rng = np.random.default_rng([seed, clip, _FRAME_STREAM, frame])
    img = np.clip(img.astype(np.float32) + rng.normal(0.0, c.noise, img.shape), 0, 255).astype(np.uint8)
    head_box = np.stack([head_centre - head_radius, head_centre + head_radius])  # (2, 2) x1y1, x2y2
    return SyntheticFigure(img, keypoints, occluded, head_box)


@dataclass(frozen=True, eq=False)
class ClipLabels:
    """The ground truth of every frame of a clip (no images)."""

    keypoints: np.ndarray  # (T, 16, 2) float64 x,y frame pixels
    occluded: np.ndarray  # (T, 16) bool
    size: np.ndarray  # (T,) float64 the larger side of the keypoints' extent, px (PCK's scale)
    head_size: np.ndarray  # (T,) float64 PCKh's normaliser, px
    fps: float


def render_clip(seed: int, clip: int, spec: VideoSpec = VideoSpec()) -> ClipLabels:
    """The labels of every frame, without drawing the images' pixels twice over (one pass)."""
    figs = [render_frame(seed, clip, f, spec) for f in range(spec.frames)]
    return _labels(figs, spec)


def _labels(figs: list[SyntheticFigure], spec: VideoSpec) -> ClipLabels:
    kp = np.stack([f.keypoints for f in figs])  # (T, 16, 2)
    extent = kp.max(axis=1) - kp.min(axis=1)  # (T, 2)
    return ClipLabels(kp, np.stack([f.occluded for f in figs]), extent.max(axis=1),
                      np.array([f.head_size for f in figs]), spec.fps)


def clip_name(seed: int, clip: int) -> str:
    return f"s{seed}_clip{clip:03d}"


@dataclass(frozen=True)
class ClipFiles:
    video: Path  # MP4 (mp4v)
    table: Path  # DeepLabCut table, x, y per keypoint, indexed by frame number
    labels: Path  # .npz: keypoints (T, 16, 2), occluded (T, 16), size (T,), head_size (T,), fps


def write_clip(out_dir: str | Path, seed: int, clip: int, spec: VideoSpec = VideoSpec()) -> ClipFiles:
    """Write clip ``clip`` of stream ``seed`` as ``<name>.mp4`` + its labels (``<name>.csv``, ``<name>.npz``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = clip_name(seed, clip)
    h, w = spec.size
    video_path = out / f"{name}.mp4"
    writer = cv2.VideoWriter(str(video_path), cv2.VideoWriter_fourcc(*MP4_FOURCC), spec.fps, (w, h))
    if not writer.isOpened():
        raise OSError(f"{video_path}: OpenCV cannot write an '{MP4_FOURCC}' video here")
    figs = []
    try:
        for f in range(spec.frames):
            fig = render_frame(seed, clip, f, spec)
            writer.write(cv2.cvtColor(fig.image, cv2.COLOR_RGB2BGR))
            figs.append(SyntheticFigure(np.empty(0, np.uint8), fig.keypoints, fig.occluded, fig.head_box))
    finally:
        writer.release()
    labels = _labels(figs, spec)
    table = write_collected_data(out / f"{name}.csv", SCORER, KEYPOINT_NAMES, list(range(spec.frames)),
                                 labels.keypoints)
    npz = out / f"{name}.npz"
    np.savez_compressed(npz, keypoints=labels.keypoints, occluded=labels.occluded, size=labels.size,
                        head_size=labels.head_size, fps=np.float64(spec.fps))
    return ClipFiles(video_path, table, npz)


def write_labelled_frames(
    project: str | Path, seed: int, clip: int, frames: list[int], spec: VideoSpec = VideoSpec(),
    scorer: str = SCORER,
) -> Path:
    """Add frames of a clip, labelled, to a DeepLabCut project: ``labeled-data/<clip>/img<frame>.png`` (lossless)
    and their rows in ``CollectedData_<scorer>.csv`` (one-column index ``labeled-data/<clip>/img….png``). A frame
    the table already has keeps its row and its image; new rows are added in frame order. Writes the project's
    ``config.yaml`` (bodyparts, skeleton) when it has none. Returns the table's path."""
    root = Path(project)
    folder = root / "labeled-data" / clip_name(seed, clip)
    folder.mkdir(parents=True, exist_ok=True)
    table = folder / f"CollectedData_{scorer}.csv"
    rows: dict[str, np.ndarray] = {}  # image path → (16, 2) x,y px, NaN unlabelled
    if table.exists():
        old = read_collected_data(table)
        for i, path in enumerate(old.image_paths):
            rows[path] = np.where(old.labelled[i][:, None], old.keypoints[i], np.nan)
    for f in sorted(set(int(f) for f in frames)):
        name = frame_file_name(f, spec.frames)
        path = f"labeled-data/{folder.name}/{name}"
        if path in rows:
            continue
        fig = render_frame(seed, clip, f, spec)
        cv2.imwrite(str(folder / name), cv2.cvtColor(fig.image, cv2.COLOR_RGB2BGR))
        rows[path] = fig.keypoints
    paths = sorted(rows)
    write_collected_data(table, scorer, KEYPOINT_NAMES, paths,
                         np.stack([rows[p] for p in paths]).reshape(-1, NUM_JOINTS, 2))
    config = root / "config.yaml"
    if not config.exists():
        import yaml

        config.write_text(yaml.safe_dump({
            "Task": "synthetic", "scorer": scorer, "bodyparts": list(KEYPOINT_NAMES),
            "skeleton": [[KEYPOINT_NAMES[a], KEYPOINT_NAMES[b]] for a, b in SKELETON], "colormap": "rainbow",
            "pcutoff": 0.5, "dotsize": 3,
        }, sort_keys=False))
    return table
