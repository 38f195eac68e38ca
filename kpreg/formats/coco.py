"""Reading, validating and writing COCO-format keypoint files.

Coordinate convention
---------------------
kpreg uses 0-based pixel centres: pixel (i, j) has its centre at x=j, y=i, so an
image of width W covers x in [-0.5, W - 0.5]. COCO keypoint coordinates are used
as-is in this convention (pycocotools treats them as plain floats and never
shifts them), and predictions are written to results files in the *same*
convention as the ground truth, with no +/-0.5 or +1 shift.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kpreg.formats.files import FormatError, read_json

__all__ = [
    "COCO_KEYPOINT_NAMES",
    "COCO_SIGMAS",
    "COCO_SKELETON",
    "COCO_FLIP_PAIRS",
    "CROWDPOSE_KEYPOINT_NAMES",
    "CROWDPOSE_SIGMAS",
    "KeypointCategory",
    "CocoImage",
    "read_images",
    "AnnotationProblem",
    "PROBLEM_KINDS",
    "read_category",
    "infer_flip_pairs",
    "find_keypoint_problems",
    "validate_coco_keypoints",
    "load_coco",
    "write_results_json",
    "load_results_json",
    "prepare_gt",
    "BOX_AREA_FACTOR",
]

COCO_KEYPOINT_NAMES: tuple[str, ...] = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)

# The official per-keypoint sigmas, in the same units as pycocotools' COCOeval
# (Params.kpt_oks_sigmas = array([.26, .25, ...]) / 10), e.g. nose = 0.026.
COCO_SIGMAS: np.ndarray = (
    np.array(
        [0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89]
    )
    / 10.0
)  # (17,)
COCO_SIGMAS.setflags(write=False)

# COCO's `categories[0].skeleton` is 1-based; this is the same list, 0-based.
COCO_SKELETON: tuple[tuple[int, int], ...] = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7),
    (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)  # fmt: skip

# (left, right) index pairs swapped by a horizontal flip.
COCO_FLIP_PAIRS: tuple[tuple[int, int], ...] = (
    (1, 2),
    (3, 4),
    (5, 6),
    (7, 8),
    (9, 10),
    (11, 12),
    (13, 14),
    (15, 16),
)

# CrowdPose (14 keypoints): sigmas as used by xtcocoapi / faster-coco-eval / mmpose
# for CrowdPose ('head' and 'neck' get 0.079).
CROWDPOSE_KEYPOINT_NAMES: tuple[str, ...] = (
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "head", "neck",
)  # fmt: skip
CROWDPOSE_SIGMAS: np.ndarray = (
    np.array([0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89, 0.79, 0.79]) / 10.0
)  # (14,)
CROWDPOSE_SIGMAS.setflags(write=False)

# Keypoint layouts whose official sigmas we know; anything else gets the caller's
# sigmas or a constant default.
_KNOWN_SIGMAS: dict[tuple[str, ...], np.ndarray] = {
    COCO_KEYPOINT_NAMES: COCO_SIGMAS,
    CROWDPOSE_KEYPOINT_NAMES: CROWDPOSE_SIGMAS,
}


# --------------------------------------------------------------------------------------
# Categories
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeypointCategory:
    """One keypoint category of a COCO file, in kpreg's 0-based indexing."""

    id: int
    name: str
    keypoint_names: tuple[str, ...]
    skeleton: tuple[tuple[int, int], ...]  # 0-based index pairs
    flip_pairs: tuple[tuple[int, int], ...]  # 0-based (i, j) with i < j
    sigmas: np.ndarray = field(repr=False)  # (K,) OKS sigmas, COCOeval units

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoint_names)

    def flip_index(self) -> list[int]:
        """Permutation p such that flipped[k] = original[p[k]]."""
        perm = list(range(self.num_keypoints))
        for i, j in self.flip_pairs:
            perm[i], perm[j] = j, i
        return perm


def _swap_case_like(word: str, template: str) -> str:
    """Return `word` with the capitalisation of `template` (left->right keeps 'Left' style)."""
    if template.isupper():
        return word.upper()
    if template[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


def _flip_candidates(name: str) -> list[str]:
    """Names that would be the mirror of `name`, most specific rule first."""
    out: list[str] = []
    # 1. 'left'/'right' anywhere, any case: left_eye, LeftEye, ear_left, leftear, front-left-paw.
    if re.search(r"left|right", name, flags=re.IGNORECASE):

        def swap(m: re.Match[str]) -> str:
            w = m.group(0)
            return _swap_case_like("right" if w.lower() == "left" else "left", w)

        out.append(re.sub(r"left|right", swap, name, flags=re.IGNORECASE))
    # 2. a whole separated token l/r/L/R: l_eye, eye_r, R-hand, paw.L
    parts = re.split(r"([_\-\s.]+)", name)
    swap_tok = {"l": "r", "r": "l", "L": "R", "R": "L"}
    if any(p in swap_tok for p in parts):
        out.append("".join(swap_tok.get(p, p) for p in parts))
    # 3. OpenPose style single capital prefix: LShoulder / RShoulder, LEye.
    m = re.match(r"^([LR])(?=[A-Z0-9])", name)
    if m:
        out.append(swap_tok[m.group(1)] + name[1:])
    # 4. MPII style lowercase prefix without separator: lsho / rsho, lank / rank.
    #    Only ever used when the exact counterpart exists (checked by the caller).
    m = re.match(r"^([lr])(?=[a-z])", name)
    if m:
        out.append(swap_tok[m.group(1)] + name[1:])
    return [c for c in out if c != name]


def infer_flip_pairs(keypoint_names: Sequence[str]) -> tuple[tuple[int, int], ...]:
    """Pair keypoints whose names differ only by a left/right marker.

    Recognised: ``left``/``right`` anywhere in the name (any case), separated
    ``l``/``r`` tokens (``l_eye``, ``eye_R``), OpenPose ``LShoulder``, MPII ``lsho``.
    A pair is only formed when both names exist, so an unpaired name (``nose``,
    ``rump``) stays its own mirror.
    """
    index = {n: i for i, n in enumerate(keypoint_names)}
    paired: set[int] = set()
    pairs: list[tuple[int, int]] = []
    for i, name in enumerate(keypoint_names):
        if i in paired:
            continue
        for cand in _flip_candidates(name):
            j = index.get(cand)
            if j is not None and j != i and j not in paired:
                pairs.append((min(i, j), max(i, j)))
                paired.update((i, j))
                break
    return tuple(sorted(pairs))


def _as_dataset(coco: Any) -> dict[str, Any]:
    """Accept a dict, a pycocotools COCO object (has `.dataset`) or a path."""
    if isinstance(coco, Mapping):
        return dict(coco)
    if hasattr(coco, "dataset"):
        return coco.dataset
    if isinstance(coco, (str, Path)):
        data = read_json(coco, "COCO file")
        if not isinstance(data, dict):
            raise FormatError(f"{coco}: a COCO file holds a JSON object, got {type(data).__name__}")
        return data
    raise TypeError(f"expected a COCO dict, a pycocotools COCO object or a path, got {type(coco).__name__}")


def read_category(
    coco: Any,
    category_id: int | None = None,
    sigmas: Sequence[float] | np.ndarray | None = None,
    default_sigma: float = 0.05,
    flip_pairs: Iterable[tuple[int, int]] | None = None,
) -> KeypointCategory:
    """Parse the keypoint category of a COCO file.

    Args:
        coco: COCO json dict, pycocotools ``COCO`` object, or path.
        category_id: which category; may be omitted when exactly one category has keypoints.
        sigmas: per-keypoint OKS sigmas (COCOeval units); default: the official ones
            for COCO-17 / CrowdPose-14 names, else ``default_sigma`` for every keypoint.
        default_sigma: constant sigma for layouts we do not know.
        flip_pairs: explicit 0-based flip pairs; default: inferred from names.
    """
    data = _as_dataset(coco)
    cats = [c for c in data.get("categories", []) if c.get("keypoints")]
    if category_id is None:
        if len(cats) != 1:
            ids = [c.get("id") for c in cats]
            raise ValueError(f"expected exactly one keypoint category, found ids {ids}; pass category_id")
        cat = cats[0]
    else:
        found = [c for c in cats if c.get("id") == category_id]
        if not found:
            raise ValueError(
                f"no keypoint category with id {category_id} (have {[c.get('id') for c in cats]})"
            )
        cat = found[0]

    names = tuple(str(n) for n in cat["keypoints"])
    k = len(names)

    # COCO's skeleton is 1-based. Some files ship a skeleton copied from another
    # layout (the CrowdPose example carries COCO's 17-keypoint skeleton for 14
    # keypoints): drop out-of-range edges with a warning rather than refuse the file.
    skeleton: list[tuple[int, int]] = []
    bad_edges = []
    for edge in cat.get("skeleton") or []:
        a, b = int(edge[0]) - 1, int(edge[1]) - 1
        if 0 <= a < k and 0 <= b < k:
            skeleton.append((a, b))
        else:
            bad_edges.append(list(edge))
    if bad_edges:
        warnings.warn(
            f"category {cat.get('id')} ({cat.get('name')}): skeleton edges {bad_edges} are out of range "
            f"for {k} keypoints (1-based) and were dropped",
            stacklevel=2,
        )

    if flip_pairs is None:
        pairs = infer_flip_pairs(names)
    else:
        pairs = tuple(sorted((min(int(i), int(j)), max(int(i), int(j))) for i, j in flip_pairs))
        for i, j in pairs:
            if not (0 <= i < k and 0 <= j < k) or i == j:
                raise ValueError(f"flip pair {(i, j)} invalid for {k} keypoints")

    if sigmas is not None:
        sig = np.asarray(sigmas, dtype=np.float64).reshape(-1)  # (K,)
        if sig.shape[0] != k:
            raise ValueError(f"got {sig.shape[0]} sigmas for {k} keypoints")
    elif names in _KNOWN_SIGMAS:
        sig = _KNOWN_SIGMAS[names].copy()
    else:
        sig = np.full(k, float(default_sigma))  # (K,)
    if not np.all(np.isfinite(sig)) or np.any(sig <= 0):
        raise ValueError(f"sigmas must be finite and positive, got {sig.tolist()}")

    return KeypointCategory(
        id=int(cat["id"]),
        name=str(cat.get("name", "")),
        keypoint_names=names,
        skeleton=tuple(skeleton),
        flip_pairs=pairs,
        sigmas=sig,
    )


# --------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CocoImage:
    """One entry of a COCO file's ``images`` list: its id, its file (relative to the images folder), its size."""

    id: int
    file_name: str
    width: float | None = None  # pixels; None where the file does not say
    height: float | None = None


def read_images(data: Any, path: str | Path, error: type[ValueError] = FormatError) -> dict[int, CocoImage]:
    """The ``images`` list of a COCO file (``data``: its parsed JSON, read from ``path`` if None) by image id.

    Every entry needs an integer ``id`` (COCO's ids are integers, and results files refer to them) and a
    ``file_name``; ``width`` / ``height``, where given, must be positive numbers. An error names ``path`` and the
    entry; ``error`` is the class raised (``FormatError`` unless the caller has its own).
    """
    data = read_json(path, "COCO file", error) if data is None else data
    images = data.get("images") if isinstance(data, Mapping) else None
    if not isinstance(images, list):
        raise error(f"{path}: no 'images' list (not a COCO file?)")
    out: dict[int, CocoImage] = {}
    for n, img in enumerate(images):
        if not isinstance(img, Mapping):
            raise error(f"{path}: images[{n}] is not an object")
        iid = img.get("id")
        if not isinstance(iid, int) or isinstance(iid, bool):
            raise error(f"{path}: images[{n}] has id {iid!r}; COCO image ids must be integers")
        if not img.get("file_name"):
            raise error(f"{path}: image id {iid} (images[{n}]) has no 'file_name'")
        size = [img.get("width"), img.get("height")]
        if any(v is not None and not (isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < math.inf)
               for v in size):
            raise error(f"{path}: image id {iid} has width {size[0]!r}, height {size[1]!r}; sizes are positive "
                        "numbers")
        if iid in out:
            raise error(f"{path}: image id {iid} is listed twice (images[{n}])")
        out[iid] = CocoImage(iid, str(img["file_name"]), size[0], size[1])
    return out


# --------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------

PROBLEM_KINDS: tuple[str, ...] = (
    "missing_keypoints",  # no `keypoints` field
    "bad_keypoints_length",  # len(keypoints) != 3*K
    "non_finite",  # NaN / inf in keypoints or bbox
    "bad_visibility",  # a visibility flag other than 0, 1, 2
    "zero_size_box",  # bbox width or height <= 0 (or no bbox)
    "keypoint_outside_image",  # a labelled keypoint outside [-0.5, W-0.5] x [-0.5, H-0.5]
    "unknown_image",  # image_id not in `images`
)

_KIND_TEXT = {
    "missing_keypoints": "has no 'keypoints' field",
    "bad_keypoints_length": "has a keypoints list of bad length",
    "non_finite": "has NaN/inf values",
    "bad_visibility": "has a visibility flag other than 0 (unlabelled), 1 (labelled, hidden), 2 (labelled, visible)",
    "zero_size_box": "has a zero or negative size box",
    "keypoint_outside_image": "has a keypoint outside the image",
    "unknown_image": "refers to an unknown image_id",
}


@dataclass(frozen=True)
class AnnotationProblem:
    kind: str  # one of PROBLEM_KINDS
    annotation_id: Any
    image_id: Any
    detail: str


def find_keypoint_problems(data: Any) -> dict[str, list[AnnotationProblem]]:
    """Check every annotation of a COCO keypoint file; return problems grouped by kind.

    Every kind in ``PROBLEM_KINDS`` is a key (empty list when clean), so a caller can
    e.g. skip ``problems["zero_size_box"]`` and print how many it skipped. Each
    annotation is reported under at most one kind, the first that applies in the
    order of ``PROBLEM_KINDS`` (a missing field makes the later checks meaningless).
    """
    data = _as_dataset(data)
    problems: dict[str, list[AnnotationProblem]] = {k: [] for k in PROBLEM_KINDS}
    images = {img["id"]: img for img in data.get("images", [])}
    num_kpts = {c["id"]: len(c["keypoints"]) for c in data.get("categories", []) if c.get("keypoints")}

    for ann in data.get("annotations", []):
        aid, iid = ann.get("id"), ann.get("image_id")

        def add(kind: str, detail: str, aid: Any = aid, iid: Any = iid) -> None:
            problems[kind].append(AnnotationProblem(kind, aid, iid, detail))

        if "keypoints" not in ann or ann["keypoints"] is None:
            add("missing_keypoints", "no 'keypoints' field")
            continue
        kp = ann["keypoints"]
        k = num_kpts.get(ann.get("category_id"))
        if (k is not None and len(kp) != 3 * k) or len(kp) % 3 != 0:
            expected = f"3*{k}={3 * k}" if k is not None else "a multiple of 3"
            add("bad_keypoints_length", f"{len(kp)} values, expected {expected}")
            continue
        try:
            arr = np.asarray(kp, dtype=np.float64).reshape(-1, 3)  # (K, 3) x, y, v
            box = np.asarray(ann.get("bbox", []), dtype=np.float64).reshape(-1)  # (4,) x, y, w, h
        except (TypeError, ValueError) as exc:
            add("non_finite", f"non-numeric values ({exc})")
            continue
        if not np.all(np.isfinite(arr)) or not np.all(np.isfinite(box)):
            add("non_finite", "NaN or inf in keypoints or bbox")
            continue
        # COCO's v is 0, 1 or 2. Anything else (a confidence 0.9, a -1 "unknown", a 3) is not COCO: reading it as
        # "labelled" or not would be a guess, so it is refused rather than accepted silently.
        bad_v = ~np.isin(arr[:, 2], (0.0, 1.0, 2.0))  # (K,)
        if bad_v.any():
            j = int(np.flatnonzero(bad_v)[0])
            add("bad_visibility", f"keypoint {j} has v={arr[j, 2]:g} ({int(bad_v.sum())} keypoint(s) with another "
                                  "value than 0, 1, 2)")
            continue
        if box.shape[0] != 4 or box[2] <= 0 or box[3] <= 0:
            add("zero_size_box", f"bbox {box.tolist()}")
            continue
        img = images.get(iid)
        if img is None:
            add("unknown_image", f"image_id {iid!r} not in 'images'")
            continue
        labelled = arr[:, 2] > 0  # (K,) unlabelled keypoints are (0, 0, 0): not checked
        if "width" in img and "height" in img and labelled.any():
            xy = arr[labelled, :2]  # (L, 2)
            # pixel-centre convention: the image spans [-0.5, W-0.5] x [-0.5, H-0.5]
            outside = (
                (xy[:, 0] < -0.5)
                | (xy[:, 1] < -0.5)
                | (xy[:, 0] > img["width"] - 0.5)
                | (xy[:, 1] > img["height"] - 0.5)
            )
            if outside.any():
                bad = xy[outside][0].tolist()
                add(
                    "keypoint_outside_image",
                    f"{int(outside.sum())} keypoint(s) outside {img['width']}x{img['height']}, e.g. {bad}",
                )
    return problems


def validate_coco_keypoints(
    path: str | Path,
    data: Any | None = None,
    allow: Iterable[str] = (),
) -> dict[str, list[AnnotationProblem]]:
    """Raise ``ValueError`` naming the file and the annotation id on the first problem.

    Args:
        path: the file (used in messages; loaded when ``data`` is None).
        data: the parsed json (or COCO object), if already loaded.
        allow: problem kinds not to raise for (e.g. ``{"zero_size_box"}`` when the
            caller skips those annotations and reports a count).

    Returns:
        all problems by kind (only allowed kinds can be non-empty).
    """
    data = _as_dataset(path if data is None else data)
    if not isinstance(data.get("annotations"), list):
        raise ValueError(f"{path}: no 'annotations' list")
    if not any(c.get("keypoints") for c in data.get("categories", [])):
        raise ValueError(f"{path}: no category has a 'keypoints' list")
    allowed = set(allow)
    unknown = allowed - set(PROBLEM_KINDS)
    if unknown:
        raise ValueError(f"unknown problem kinds {sorted(unknown)}; valid: {PROBLEM_KINDS}")
    problems = find_keypoint_problems(data)
    for kind in PROBLEM_KINDS:
        if kind in allowed or not problems[kind]:
            continue
        first = problems[kind][0]
        more = len(problems[kind]) - 1
        tail = f" (and {more} more annotation(s) with the same problem)" if more else ""
        raise ValueError(
            f"{path}: annotation id {first.annotation_id} (image_id {first.image_id}) "
            f"{_KIND_TEXT[kind]}: {first.detail}{tail}"
        )
    return problems


# xtcocoapi (CrowdPose) uses this fraction of the box area when a GT has no segment area.
BOX_AREA_FACTOR = 0.53


def prepare_gt(data: dict[str, Any]) -> dict[str, Any]:
    """The GT dict pycocotools can score: fills what custom COCO-format files often leave out.

    ``area`` (missing: ``BOX_AREA_FACTOR`` × box area, see the module docstring) and ``num_keypoints``
    (missing: the count of labelled keypoints, ``v > 0``; COCOeval reads it to ignore unlabelled GT).
    Returns ``data`` itself when nothing is missing, else a filled deep copy (the caller's dict is
    never changed). Used by ``score_coco_files`` and by ``COCODataModule``'s metric, so that a results
    file scores the same in both.
    """
    anns = data.get("annotations", [])
    if all("area" in a and "num_keypoints" in a for a in anns):
        return data
    data = copy.deepcopy(data)
    for ann in data["annotations"]:
        if "area" not in ann:
            _, _, w, h = ann["bbox"]
            ann["area"] = w * h * BOX_AREA_FACTOR
        if "num_keypoints" not in ann and ann.get("keypoints") is not None:
            ann["num_keypoints"] = int(sum(1 for v in ann["keypoints"][2::3] if v > 0))
    return data


# --------------------------------------------------------------------------------------
# pycocotools objects and results files
# --------------------------------------------------------------------------------------


def load_coco(source: Any) -> Any:
    """A pycocotools ``COCO`` from a path, a dict, or an existing COCO (returned as is); quiet."""
    from pycocotools.coco import COCO

    if isinstance(source, COCO):
        return source
    data = _as_dataset(source)
    coco = COCO()
    coco.dataset = copy.deepcopy(data)  # createIndex / loadRes never touch the caller's dict
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco.createIndex()
    return coco


def _check_results(path: str | Path, results: Any, coco_gt: Any | None) -> list[dict[str, Any]]:
    if not isinstance(results, list):
        raise ValueError(f"{path}: a results file must hold a JSON list, got {type(results).__name__}")
    images = {img["id"]: img for img in coco_gt.dataset.get("images", [])} if coco_gt is not None else None
    cat_k = (
        {c["id"]: len(c.get("keypoints", [])) for c in coco_gt.dataset.get("categories", [])}
        if coco_gt is not None
        else None
    )
    gt_ids_by_name = {_base(img.get("file_name")): i for i, img in (images or {}).items() if img.get("file_name")}
    for n, r in enumerate(results):
        if not isinstance(r, Mapping):
            raise ValueError(f"{path}: entry {n} is not an object")
        missing = [key for key in ("image_id", "category_id", "keypoints", "score") if key not in r]
        if missing:
            raise ValueError(f"{path}: entry {n} (image_id {r.get('image_id')!r}) lacks {missing}")
        name = _base(r.get("file_name"))
        if images is not None and r["image_id"] not in images:
            hint = ""
            if name in gt_ids_by_name:  # predict.py without --images-file numbers the images itself
                hint = (f"; its file_name {r['file_name']!r} is the ground truth's image {gt_ids_by_name[name]}: "
                        "predict with --images-file GT.json to give the results the ground truth's ids")
            raise ValueError(f"{path}: entry {n} has image_id {r['image_id']!r}, which is not in the ground "
                             f"truth{hint}")
        if images is not None and name and _base(images[r["image_id"]].get("file_name")) not in ("", name):
            raise ValueError(f"{path}: entry {n} has image_id {r['image_id']!r} and file_name {r['file_name']!r}, "
                             f"but the ground truth's image {r['image_id']!r} is "
                             f"{images[r['image_id']]['file_name']!r}: the results are of other images, or their "
                             "ids are")
        if cat_k is not None and r["category_id"] not in cat_k:
            raise ValueError(f"{path}: entry {n} has unknown category_id {r['category_id']!r}")
        kp = r["keypoints"]
        if not isinstance(kp, list):
            raise ValueError(f"{path}: entry {n} (image_id {r['image_id']}): keypoints must be a list [x, y, v, ...], "
                             f"got {type(kp).__name__}")
        bad = next((i for i, v in enumerate(kp) if not _is_number(v)), None)
        if bad is not None:
            raise ValueError(f"{path}: entry {n} (image_id {r['image_id']}): keypoints[{bad}] is "
                             f"{json.dumps(kp[bad])}, not a number")
        if not _is_number(r["score"]):
            raise ValueError(f"{path}: entry {n} (image_id {r['image_id']}): score is {json.dumps(r['score'])}, "
                             "not a number")
        if cat_k is not None and len(kp) != 3 * cat_k[r["category_id"]]:
            raise ValueError(
                f"{path}: entry {n} (image_id {r['image_id']}) has {len(kp)} keypoint values, "
                f"expected {3 * cat_k[r['category_id']]}"
            )
        if not all(math.isfinite(float(v)) for v in kp) or not math.isfinite(float(r["score"])):
            raise ValueError(f"{path}: entry {n} (image_id {r['image_id']}) has NaN/inf values")
    return results


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _base(file_name: Any) -> str:
    """A file name's last part (a results file names images relative to its input folder, a ground truth relative
    to its own), '' for none."""
    return str(file_name or "").replace("\\", "/").rsplit("/", 1)[-1]


def _to_builtin(obj: Any) -> Any:
    """numpy / torch scalars and arrays -> plain Python, for json."""
    if isinstance(obj, Mapping):
        return {k: _to_builtin(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_builtin(v) for v in obj]
    if hasattr(obj, "tolist"):  # np.ndarray, np.generic, torch.Tensor
        return obj.tolist()
    return obj


def write_results_json(path: str | Path, results: Sequence[Mapping[str, Any]]) -> Path:
    """Write COCO keypoint results ``[{image_id, category_id, keypoints: [x, y, v]*K, score}]``.

    Coordinates are written as given: the same 0-based pixel-centre convention as
    the ground truth (no shift). ``v`` is conventionally the keypoint confidence;
    pycocotools ignores it.
    """
    path = Path(path)
    out = _check_results(path, [_to_builtin(dict(r)) for r in results], None)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        json.dump(out, f)
    return path


def load_results_json(path: str | Path, coco_gt: Any) -> Any:
    """Load a results file against the ground truth; returns pycocotools' results ``COCO``.

    Raises ``ValueError`` naming the file and the offending id for an unknown
    image_id / category_id, a keypoints list of the wrong length, or NaN. Loading
    goes through ``COCO.loadRes`` (so a results entry with a ``bbox`` gets its area
    from that box, exactly as in plain pycocotools); an empty list gives an empty
    results set instead of pycocotools' IndexError.
    """
    coco_gt = load_coco(coco_gt)
    results = read_json(path, "results file")
    return results_to_coco(results, coco_gt, source=path)


def results_to_coco(
    results: list[dict[str, Any]], coco_gt: Any, source: str | Path = "<results>", copy_results: bool = True
) -> Any:
    """In-memory version of :func:`load_results_json`.

    ``COCO.loadRes`` adds ``id``/``area``/``bbox`` to the entries it is given; with
    ``copy_results=False`` (a throw-away list) the deep copy is skipped, which is a
    third of the scoring time for 10k predictions.
    """
    from pycocotools.coco import COCO

    _check_results(source, results, coco_gt)
    if not results:
        empty = COCO()
        empty.dataset = {
            "images": list(coco_gt.dataset.get("images", [])),
            "categories": copy.deepcopy(coco_gt.dataset.get("categories", [])),
            "annotations": [],
        }
        with contextlib.redirect_stdout(io.StringIO()):
            empty.createIndex()
        return empty
    with contextlib.redirect_stdout(io.StringIO()):
        return coco_gt.loadRes(copy.deepcopy(results) if copy_results else results)
