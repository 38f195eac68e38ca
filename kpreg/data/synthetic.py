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

__all__ = ["SyntheticFigure", "render_figure", "NUM_JOINTS", "MPII_FLIP_PAIRS", "MPII_SKELETON"]


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


def _pose(rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Joint positions in figure units (height ≈ 1, y down) and facing (+1 towards the camera)."""
    j = np.zeros((NUM_JOINTS, 2))
    jitter = lambda: rng.uniform(0.85, 1.15)  # noqa: E731 - limb-length variation
    torso, neck, head = 0.30 * jitter(), 0.05 * jitter(), 0.15 * jitter()
    thigh, shin = 0.24 * jitter(), 0.23 * jitter()
    upper_arm, forearm = 0.17 * jitter(), 0.15 * jitter()
    shoulder_w, hip_w = 0.10 * jitter(), 0.07 * jitter()

    up = -90.0 + rng.uniform(-15, 15)  # torso direction, degrees (image y points down)
    facing = rng.choice([-1.0, 1.0])  # +1: the person's right is on the image's left (facing us)
    side = _direction(up + 90.0) * facing  # unit vector towards the person's left on screen

    j[PELVIS] = 0.0
    j[THORAX] = j[PELVIS] + torso * _direction(up)
    j[NECK] = j[THORAX] + neck * _direction(up + rng.uniform(-15, 15))
    j[HEAD] = j[NECK] + head * _direction(up + rng.uniform(-25, 25))
    j[L_HIP], j[R_HIP] = j[PELVIS] + hip_w * side, j[PELVIS] - hip_w * side
    j[L_SHO], j[R_SHO] = j[THORAX] + shoulder_w * side, j[THORAX] - shoulder_w * side
    for hip, knee, ankle, sign in ((L_HIP, L_KNE, L_ANK, 1.0), (R_HIP, R_KNE, R_ANK, -1.0)):
        # 90° is straight down; each leg spreads towards its own side (the person's left is on the
        # screen's right when facing us), with some freedom to cross.
        thigh_angle = 90.0 - sign * facing * rng.uniform(0, 30) + rng.uniform(-15, 15)
        j[knee] = j[hip] + thigh * _direction(thigh_angle)
        j[ankle] = j[knee] + shin * _direction(thigh_angle + rng.uniform(-40, 40))
    for sho, elb, wri, sign in ((L_SHO, L_ELB, L_WRI, 1.0), (R_SHO, R_ELB, R_WRI, -1.0)):
        # From hanging down (90°) through sideways to raised 60° above the shoulder, on the arm's own
        # side, or reaching 30° across the body.
        arm_angle = 90.0 - sign * facing * rng.uniform(-30, 150)
        j[elb] = j[sho] + upper_arm * _direction(arm_angle)
        j[wri] = j[elb] + forearm * _direction(arm_angle + rng.uniform(-100, 100))
    return j, facing


def _hue_colour(rng: np.random.Generator, hue_lo: float, hue_hi: float) -> tuple[int, int, int]:
    hsv = np.uint8([[[rng.uniform(hue_lo, hue_hi), rng.uniform(150, 255), rng.uniform(140, 255)]]])
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])


def _random_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(0, 256, size=3))


def _fixed(p: np.ndarray) -> tuple[int, int]:
    """Pixel-centre coordinates → OpenCV fixed-point (shift=4) integers."""
    return int(round(p[0] * _ONE)), int(round(p[1] * _ONE))


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    # Low-frequency colour texture (a tiny random grid, upsampled) + pixel noise + a few random lines.
    grid = rng.integers(0, 256, size=(rng.integers(2, 6), rng.integers(2, 6), 3)).astype(np.uint8)
    img = cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
    noise = rng.normal(0, rng.uniform(3, 18), size=img.shape)
    img = np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    for _ in range(rng.integers(0, 4)):
        p, q = rng.uniform(0, size, 2), rng.uniform(0, size, 2)
        cv2.line(img, _fixed(p), _fixed(q), _random_colour(rng), int(rng.integers(1, 3)), cv2.LINE_AA, _SHIFT)
    return img


def _distractors(rng: np.random.Generator, img: np.ndarray, size: int) -> None:
    """Shapes that look like body parts but are not: blobs, boxes and limb-like bars."""
    for _ in range(rng.integers(0, 3)):
        colour = _random_colour(rng) if rng.random() < 0.6 else _hue_colour(rng, 0, 180)
        c = rng.uniform(0, size, 2)
        kind = rng.integers(3)
        if kind == 0:
            axes = (int(rng.uniform(2, size / 6) * _ONE), int(rng.uniform(2, size / 6) * _ONE))
            cv2.ellipse(img, _fixed(c), axes, rng.uniform(0, 180), 0, 360, colour, -1, cv2.LINE_AA, _SHIFT)
        elif kind == 1:
            half = rng.uniform(2, size / 8, 2)
            cv2.rectangle(img, _fixed(c - half), _fixed(c + half), colour, -1, cv2.LINE_AA, _SHIFT)
        else:
            d = _direction(rng.uniform(0, 360)) * rng.uniform(size / 10, size / 4)
            cv2.line(img, _fixed(c), _fixed(c + d), colour, int(rng.integers(2, 5)), cv2.LINE_AA, _SHIFT)


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

    img = _background(rng, size)
    _distractors(rng, img, size)

    thick = max(2, int(round(rng.uniform(0.05, 0.09) * height)))
    torso_colour = _random_colour(rng)
    hue = rng.uniform(0, 180)
    right_colour = _hue_colour(rng, hue, hue + 1)  # two hues half the colour wheel apart, random per figure:
    left_colour = _hue_colour(rng, (hue + 90) % 180, (hue + 90) % 180 + 1)  # they group, they don't label
    torso = np.array([keypoints[L_SHO], keypoints[R_SHO], keypoints[R_HIP], keypoints[L_HIP]])
    cv2.fillPoly(img, [np.round(torso * _ONE).astype(np.int32)], torso_colour, cv2.LINE_AA, _SHIFT)
    cv2.line(img, _fixed(keypoints[THORAX]), _fixed(keypoints[NECK]), torso_colour, thick, cv2.LINE_AA, _SHIFT)
    head_centre = (keypoints[NECK] + keypoints[HEAD]) / 2.0
    head_radius = float(np.linalg.norm(keypoints[HEAD] - keypoints[NECK])) / 2.0
    # The facing cue: a light face towards the camera, dark hair away from it.
    head_colour = tuple(int(c) for c in (rng.uniform(200, 255, 3) if facing > 0 else rng.uniform(15, 60, 3)))
    cv2.circle(img, _fixed(head_centre), int(round(head_radius * _ONE)), head_colour, -1, cv2.LINE_AA, _SHIFT)
    # Draw the far side first so the near side overlaps it, like a person seen from the front or back.
    sides = [(LEFT_LIMBS, left_colour), (RIGHT_LIMBS, right_colour)]
    for limbs, colour in sides if rng.random() < 0.5 else sides[::-1]:
        for a, b in limbs:
            cv2.line(img, _fixed(keypoints[a]), _fixed(keypoints[b]), colour, thick, cv2.LINE_AA, _SHIFT)
    joint_radius = max(1, thick // 2 + 1)
    for k in range(NUM_JOINTS if joint_markers else 0):  # small joint markers, darker than the limb
        cv2.circle(img, _fixed(keypoints[k]), joint_radius * _ONE // 2, (40, 40, 40), -1, cv2.LINE_AA, _SHIFT)

    occluded = np.zeros(NUM_JOINTS, dtype=bool)
    if rng.random() < 0.25:
        mask = np.zeros((size, size), dtype=np.uint8)
        centre = keypoints[rng.integers(NUM_JOINTS)] + rng.normal(0, 0.05 * size, 2)
        half = rng.uniform(0.06, 0.14, 2) * size
        cv2.rectangle(mask, _fixed(centre - half), _fixed(centre + half), 255, -1, cv2.LINE_8, _SHIFT)
        texture = _background(rng, size)
        img[mask > 0] = texture[mask > 0]
        cols = np.clip(np.round(keypoints[:, 0]).astype(int), 0, size - 1)
        rows = np.clip(np.round(keypoints[:, 1]).astype(int), 0, size - 1)
        occluded = mask[rows, cols] > 0

    head_box = np.stack([head_centre - head_radius, head_centre + head_radius])  # (2, 2) x1y1, x2y2
    return SyntheticFigure(img, keypoints, occluded, head_box)
