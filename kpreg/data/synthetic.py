"""A procedural pose dataset: articulated 16-joint figures in MPII's joint order, drawn with OpenCV.

Nothing is read from disk: sample ``i`` of a split is a pure function of ``(seed, i)``. Each figure has
random limb lengths, thickness and colours, random joint angles, scale, rotation and position, on a
textured, noisy background with distractor shapes; an occluder may hide part of the figure (occluded
joints keep their label and are flagged in ``occluded``). The figure faces the camera (a light face)
or turns away (dark hair) at random; as for a real person, that is what tells its left from its right:
facing the camera, the person's right is on the image's left. The two sides' limbs get two different
random colours, which helps to group a limb with its side but says nothing about which side it is.
This keeps the data mirror-consistent: the mirror image of a figure is a valid figure whose left and
right labels are swapped, exactly what flip augmentation and the flip test assume.

Keypoints are exact to sub-pixel precision: OpenCV draws with 4 fractional bits (``shift=4``), so the
drawn joint is within 1/32 px of the label, and labels are never rounded. A head box (as MPII's) gives the
PCKh normaliser ``0.6 × ‖box diagonal‖``.

The pieces are public for ``kpreg.data.synthetic_video``, which moves one figure over time: a figure is its
``FigureShape`` (limb lengths), ``FigureAngles`` (a pose) and facing, placed in pixels and drawn by ``draw_figure``
in a ``FigureStyle``, on a ``background`` with ``distractors``, partly hidden by ``occlude``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from kpreg.formats.mpii import MPII_FLIP_PAIRS, MPII_JOINT_NAMES, MPII_SKELETON

NUM_JOINTS = len(MPII_JOINT_NAMES)
# MPII indices, named for readability below.
R_ANK, R_KNE, R_HIP, L_HIP, L_KNE, L_ANK, PELVIS, THORAX, NECK, HEAD = range(10)
R_WRI, R_ELB, R_SHO, L_SHO, L_ELB, L_WRI = range(10, 16)
RIGHT_LIMBS = [(R_HIP, R_KNE), (R_KNE, R_ANK), (R_SHO, R_ELB), (R_ELB, R_WRI)]
LEFT_LIMBS = [(L_HIP, L_KNE), (L_KNE, L_ANK), (L_SHO, L_ELB), (L_ELB, L_WRI)]

_SHIFT = 4  # fractional bits of OpenCV's fixed-point drawing
_ONE = 1 << _SHIFT

__all__ = [
    "SyntheticFigure", "render_figure", "NUM_JOINTS", "MPII_FLIP_PAIRS", "MPII_SKELETON",
    "FigureShape", "FigureAngles", "FigureStyle", "figure_joints", "random_shape", "random_style", "draw_figure",
    "occlude", "background", "distractors",
]


@dataclass
class SyntheticFigure:
    image: np.ndarray  # (S, S, 3) uint8 RGB
    keypoints: np.ndarray  # (16, 2) float64 x,y pixels, 0-based pixel centres
    occluded: np.ndarray  # (16,) bool, True where an occluder covers the joint (label kept)
    head_box: np.ndarray  # (2, 2) float64 [[x1, y1], [x2, y2]] pixels

    @property
    def head_size(self) -> float:
        """MPII's PCKh normaliser: 0.6 × the head box diagonal."""
        return float(0.6 * np.linalg.norm(self.head_box[1] - self.head_box[0]))


def _direction(angle_deg: float) -> np.ndarray:
    a = math.radians(angle_deg)
    return np.array([math.cos(a), math.sin(a)])


@dataclass(frozen=True)
class FigureShape:
    """A figure's proportions in figure units (height ≈ 1): fixed for a person, random per figure."""

    torso: float
    neck: float
    head: float
    thigh: float
    shin: float
    upper_arm: float
    forearm: float
    shoulder_width: float
    hip_width: float


@dataclass(frozen=True)
class FigureAngles:
    """The joint angles of a pose, degrees, each in the range ``_pose`` draws it from.

    Pairs are (left, right). ``up``: torso direction, −90 ± 15 (image y points down); ``neck``, ``head``: bends
    of the neck (± 15) and head (± 25) off the torso; ``thigh_spread``: 0–30 away from the body towards the
    leg's own side, plus ``thigh_turn`` (± 15); ``knee``: ± 40 off the thigh; ``arm``: −30 (across the body)
    to 150 (raised above the shoulder) away from hanging down; ``elbow``: ± 100 off the upper arm.
    """

    up: float
    neck: float
    head: float
    thigh_spread: tuple[float, float]
    thigh_turn: tuple[float, float]
    knee: tuple[float, float]
    arm: tuple[float, float]
    elbow: tuple[float, float]


def figure_joints(shape: FigureShape, angles: FigureAngles, facing: float) -> np.ndarray:
    """(16, 2) joint positions in figure units (y down, pelvis at 0) of a figure facing the camera
    (``facing`` +1: the person's right is on the image's left) or turned away (−1)."""
    j = np.zeros((NUM_JOINTS, 2))
    side = _direction(angles.up + 90.0) * facing  # unit vector towards the person's left on screen
    j[PELVIS] = 0.0
    j[THORAX] = j[PELVIS] + shape.torso * _direction(angles.up)
    j[NECK] = j[THORAX] + shape.neck * _direction(angles.up + angles.neck)
    j[HEAD] = j[NECK] + shape.head * _direction(angles.up + angles.head)
    j[L_HIP], j[R_HIP] = j[PELVIS] + shape.hip_width * side, j[PELVIS] - shape.hip_width * side
    j[L_SHO], j[R_SHO] = j[THORAX] + shape.shoulder_width * side, j[THORAX] - shape.shoulder_width * side
    legs = ((L_HIP, L_KNE, L_ANK, 1.0), (R_HIP, R_KNE, R_ANK, -1.0))
    for n, (hip, knee, ankle, sign) in enumerate(legs):
        # 90° is straight down; each leg spreads towards its own side (the person's left is on the
        # screen's right when facing us), with some freedom to cross.
        thigh_angle = 90.0 - sign * facing * angles.thigh_spread[n] + angles.thigh_turn[n]
        j[knee] = j[hip] + shape.thigh * _direction(thigh_angle)
        j[ankle] = j[knee] + shape.shin * _direction(thigh_angle + angles.knee[n])
    for n, (sho, elb, wri, sign) in enumerate(((L_SHO, L_ELB, L_WRI, 1.0), (R_SHO, R_ELB, R_WRI, -1.0))):
        # From hanging down (90°) through sideways to raised 60° above the shoulder, on the arm's own
        # side, or reaching 30° across the body.
        arm_angle = 90.0 - sign * facing * angles.arm[n]
        j[elb] = j[sho] + shape.upper_arm * _direction(arm_angle)
        j[wri] = j[elb] + shape.forearm * _direction(arm_angle + angles.elbow[n])
    return j


def random_shape(rng: np.random.Generator) -> FigureShape:
    """Limb lengths, each ± 15 % around a person's proportions."""
    jitter = lambda: rng.uniform(0.85, 1.15)  # noqa: E731 - limb-length variation
    return FigureShape(
        torso=0.30 * jitter(), neck=0.05 * jitter(), head=0.15 * jitter(), thigh=0.24 * jitter(),
        shin=0.23 * jitter(), upper_arm=0.17 * jitter(), forearm=0.15 * jitter(),
        shoulder_width=0.10 * jitter(), hip_width=0.07 * jitter(),
    )


def _pose(rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Joint positions in figure units (height ≈ 1, y down) and facing (+1 towards the camera)."""
    shape = random_shape(rng)
    up = -90.0 + rng.uniform(-15, 15)
    facing = float(rng.choice([-1.0, 1.0]))
    neck, head = rng.uniform(-15, 15), rng.uniform(-25, 25)
    legs = [(rng.uniform(0, 30), rng.uniform(-15, 15), rng.uniform(-40, 40)) for _ in range(2)]  # left, right
    arms = [(rng.uniform(-30, 150), rng.uniform(-100, 100)) for _ in range(2)]
    angles = FigureAngles(
        up=up, neck=neck, head=head,
        thigh_spread=(legs[0][0], legs[1][0]), thigh_turn=(legs[0][1], legs[1][1]), knee=(legs[0][2], legs[1][2]),
        arm=(arms[0][0], arms[1][0]), elbow=(arms[0][1], arms[1][1]),
    )
    return figure_joints(shape, angles, facing), facing


def _hue_colour(rng: np.random.Generator, hue_lo: float, hue_hi: float) -> tuple[int, int, int]:
    hsv = np.uint8([[[rng.uniform(hue_lo, hue_hi), rng.uniform(150, 255), rng.uniform(140, 255)]]])
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])


def _random_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(0, 256, size=3))


def _fixed(p: np.ndarray) -> tuple[int, int]:
    """Pixel-centre coordinates → OpenCV fixed-point (shift=4) integers."""
    return int(round(p[0] * _ONE)), int(round(p[1] * _ONE))


def background(rng: np.random.Generator, height: int, width: int | None = None) -> np.ndarray:
    """A (height, width, 3) uint8 RGB scene (square when ``width`` is None): a low-frequency colour texture
    (a tiny random grid, upsampled), pixel noise and a few random lines."""
    width = height if width is None else width
    grid = rng.integers(0, 256, size=(rng.integers(2, 6), rng.integers(2, 6), 3)).astype(np.uint8)
    img = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
    noise = rng.normal(0, rng.uniform(3, 18), size=img.shape)
    img = np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    extent = np.array([width, height], dtype=np.float64)  # (2,) x, y
    for _ in range(rng.integers(0, 4)):
        p, q = rng.uniform(0, extent), rng.uniform(0, extent)
        cv2.line(img, _fixed(p), _fixed(q), _random_colour(rng), int(rng.integers(1, 3)), cv2.LINE_AA, _SHIFT)
    return img


def distractors(rng: np.random.Generator, img: np.ndarray) -> None:
    """Draw shapes that look like body parts but are not (blobs, boxes, limb-like bars) on ``img``, in place."""
    extent = np.array([img.shape[1], img.shape[0]], dtype=np.float64)  # (2,) x, y
    side = float(min(img.shape[:2]))
    for _ in range(rng.integers(0, 3)):
        colour = _random_colour(rng) if rng.random() < 0.6 else _hue_colour(rng, 0, 180)
        c = rng.uniform(0, extent)
        kind = rng.integers(3)
        if kind == 0:
            axes = (int(rng.uniform(2, side / 6) * _ONE), int(rng.uniform(2, side / 6) * _ONE))
            cv2.ellipse(img, _fixed(c), axes, rng.uniform(0, 180), 0, 360, colour, -1, cv2.LINE_AA, _SHIFT)
        elif kind == 1:
            half = rng.uniform(2, side / 8, 2)
            cv2.rectangle(img, _fixed(c - half), _fixed(c + half), colour, -1, cv2.LINE_AA, _SHIFT)
        else:
            d = _direction(rng.uniform(0, 360)) * rng.uniform(side / 10, side / 4)
            cv2.line(img, _fixed(c), _fixed(c + d), colour, int(rng.integers(2, 5)), cv2.LINE_AA, _SHIFT)


@dataclass(frozen=True)
class FigureStyle:
    """How a figure is drawn: limb thickness (px), colours (RGB) and which side is drawn first (the far one)."""

    thickness: int
    torso_colour: tuple[int, int, int]
    left_colour: tuple[int, int, int]
    right_colour: tuple[int, int, int]
    head_colour: tuple[int, int, int]  # light (a face) when the figure faces the camera, dark (hair) otherwise
    left_first: bool


def random_style(rng: np.random.Generator, height: float, facing: float) -> FigureStyle:
    """A random style for a figure ``height`` px tall that faces the camera (``facing`` +1) or not (−1)."""
    thick = max(2, int(round(rng.uniform(0.05, 0.09) * height)))
    torso_colour = _random_colour(rng)
    hue = rng.uniform(0, 180)
    right_colour = _hue_colour(rng, hue, hue + 1)  # two hues half the colour wheel apart, random per figure:
    left_colour = _hue_colour(rng, (hue + 90) % 180, (hue + 90) % 180 + 1)  # they group, they don't label
    # The facing cue: a light face towards the camera, dark hair away from it.
    head_colour = tuple(int(c) for c in (rng.uniform(200, 255, 3) if facing > 0 else rng.uniform(15, 60, 3)))
    return FigureStyle(thick, torso_colour, left_colour, right_colour, head_colour, bool(rng.random() < 0.5))


def draw_figure(
    img: np.ndarray, keypoints: np.ndarray, style: FigureStyle, joint_markers: bool = True
) -> tuple[np.ndarray, float]:
    """Draw the figure whose joints are ``keypoints`` (16, 2) x,y pixels on ``img`` (H, W, 3) uint8 RGB, in place.
    Returns the head disc's centre (2,) and radius, px."""
    thick = style.thickness
    torso = np.array([keypoints[L_SHO], keypoints[R_SHO], keypoints[R_HIP], keypoints[L_HIP]])
    cv2.fillPoly(img, [np.round(torso * _ONE).astype(np.int32)], style.torso_colour, cv2.LINE_AA, _SHIFT)
    cv2.line(img, _fixed(keypoints[THORAX]), _fixed(keypoints[NECK]), style.torso_colour, thick, cv2.LINE_AA, _SHIFT)
    head_centre = (keypoints[NECK] + keypoints[HEAD]) / 2.0
    head_radius = float(np.linalg.norm(keypoints[HEAD] - keypoints[NECK])) / 2.0
    cv2.circle(img, _fixed(head_centre), int(round(head_radius * _ONE)), style.head_colour, -1, cv2.LINE_AA, _SHIFT)
    # Draw the far side first so the near side overlaps it, like a person seen from the front or back.
    sides = [(LEFT_LIMBS, style.left_colour), (RIGHT_LIMBS, style.right_colour)]
    for limbs, colour in sides if style.left_first else sides[::-1]:
        for a, b in limbs:
            cv2.line(img, _fixed(keypoints[a]), _fixed(keypoints[b]), colour, thick, cv2.LINE_AA, _SHIFT)
    joint_radius = max(1, thick // 2 + 1)
    for k in range(NUM_JOINTS if joint_markers else 0):  # small joint markers, darker than the limb
        cv2.circle(img, _fixed(keypoints[k]), joint_radius * _ONE // 2, (40, 40, 40), -1, cv2.LINE_AA, _SHIFT)
    return head_centre, head_radius


def occlude(
    img: np.ndarray, keypoints: np.ndarray, centre: np.ndarray, half: np.ndarray, texture: np.ndarray
) -> np.ndarray:
    """Cover the rectangle ``centre ± half`` (px) of ``img`` with ``texture`` (same shape), in place; returns
    (16,) bool, True for the joints under it (their labels are kept)."""
    h, w = img.shape[:2]
    mask = np.zeros((h, w), dtype=np.uint8)
    cv2.rectangle(mask, _fixed(centre - half), _fixed(centre + half), 255, -1, cv2.LINE_8, _SHIFT)
    img[mask > 0] = texture[mask > 0]
    cols = np.clip(np.round(keypoints[:, 0]).astype(int), 0, w - 1)
    rows = np.clip(np.round(keypoints[:, 1]).astype(int), 0, h - 1)
    return mask[rows, cols] > 0


def render_figure(seed: int, index: int, size: int = 64, joint_markers: bool = True) -> SyntheticFigure:
    """Draw sample ``index`` of the stream ``seed`` on a ``size × size`` image (deterministic). The random stream
    is the same with and without ``joint_markers``: only the markers differ."""
    rng = np.random.default_rng([seed, index])
    pose, facing = _pose(rng)

    # Place the figure: scale to 55–85 % of the image height, rotate, and keep every joint inside
    # a small margin so all 16 labels are in the image.
    height = rng.uniform(0.55, 0.85) * size
    rot = rng.uniform(-30, 30)
    c, s = math.cos(math.radians(rot)), math.sin(math.radians(rot))
    pts = (pose - pose.mean(axis=0)) @ np.array([[c, s], [-s, c]]) * height
    margin = 0.06 * size
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    span = hi - lo
    if np.any(span > size - 2 * margin):  # a sprawling pose: shrink it to fit
        factor = float(np.min((size - 2 * margin) / span))
        pts, lo, hi, height = pts * factor, lo * factor, hi * factor, height * factor
    low, high = margin - lo, size - margin - hi  # (2,) admissible offsets; high >= low up to rounding
    offset = low + rng.uniform(0.0, 1.0, 2) * np.maximum(high - low, 0.0)
    keypoints = pts + offset  # (16, 2) x,y pixels

    img = background(rng, size)
    distractors(rng, img)
    style = random_style(rng, height, facing)
    head_centre, head_radius = draw_figure(img, keypoints, style, joint_markers)

    occluded = np.zeros(NUM_JOINTS, dtype=bool)
    if rng.random() < 0.25:
        centre = keypoints[rng.integers(NUM_JOINTS)] + rng.normal(0, 0.05 * size, 2)
        half = rng.uniform(0.06, 0.14, 2) * size
        occluded = occlude(img, keypoints, centre, half, background(rng, size))

    head_box = np.stack([head_centre - head_radius, head_centre + head_radius])  # (2, 2) x1y1, x2y2
    return SyntheticFigure(img, keypoints, occluded, head_box)
