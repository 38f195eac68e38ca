"""Reading and writing MPII ground-truth, prediction and annotation files.

Coordinate convention
---------------------
kpreg uses 0-based pixel centres: pixel (i, j) has its centre at x=j, y=i, so an image of
width W spans x in [-0.5, W-0.5]. The MPII files are MATLAB 1-based (the pixel centre of the
top-left pixel is (1, 1)):

* ``gt_valid.mat`` / ``detections_our_format.mat`` (``pos_gt_src``, ``headboxes_src``),
* the community ``pred.mat`` (``preds``; HRNet adds 1 before saving),
* the published prediction files (bearpaw ``*.mat``, anewell/Tompson ``*.h5``): scoring them
  as-is against the 1-based GT reproduces the published tables, and shifting them by one pixel
  lowers the score, so they are 1-based too (see ``docs/mpii_metric.md``),
* the community ``annot/{train,valid}.json`` (``joints`` and ``center``; HRNet subtracts 1 from both).

We convert exactly once, here: ``kpreg = mat - 1`` on read and ``mat = kpreg + 1`` on write.
Head-box sizes are differences and are unaffected. ``load_predictions(..., one_based=False)``
exists for files that are already 0-based (e.g. written by a 0-based tool without the +1).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import scipy.io

from kpreg.formats.files import read_json
from kpreg.formats.predictions import read_predictions

NUM_JOINTS = 16

# ---- the MPII skeleton ------------------------------------------------------------------------------
MPII_JOINT_NAMES: tuple[str, ...] = (
    "r_ankle",
    "r_knee",
    "r_hip",
    "l_hip",
    "l_knee",
    "l_ankle",
    "pelvis",
    "thorax",
    "upper_neck",
    "head_top",
    "r_wrist",
    "r_elbow",
    "r_shoulder",
    "l_shoulder",
    "l_elbow",
    "l_wrist",
)
MPII_FLIP_PAIRS: tuple[tuple[int, int], ...] = ((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13))
# Limbs for drawing: legs, pelvis-thorax-neck-head chain, arms (shoulders hang off the thorax).
MPII_SKELETON: tuple[tuple[int, int], ...] = (
    (0, 1),
    (1, 2),
    (2, 6),
    (6, 3),
    (3, 4),
    (4, 5),
    (6, 7),
    (7, 8),
    (8, 9),
    (10, 11),
    (11, 12),
    (12, 7),
    (7, 13),
    (13, 14),
    (14, 15),
)
# Table columns. "Head" is head_top only, as in HRNet / bearpaw and every published table of
# the 2958-person validation split; the MPII toolkit's genTablePCK.m averages neck and head top.
MPII_GROUPS: dict[str, tuple[int, ...]] = {
    "Head": (9,),
    "Shoulder": (12, 13),
    "Elbow": (11, 14),
    "Wrist": (10, 15),
    "Hip": (2, 3),
    "Knee": (1, 4),
    "Ankle": (0, 5),
}
# Pelvis and thorax are excluded from the official Total / Mean.
MPII_MEAN_JOINTS: tuple[int, ...] = tuple(i for i in range(16) if i not in (6, 7))
# OKS sigmas for MPII's joints (COCOeval units), mmpose's (configs/_base_/datasets/mpii.py, "adapted from COCO"):
# MPII defines no OKS, these only serve scale-aware losses (OKS loss) and OKS-NMS on MPII-layout data.
MPII_SIGMAS: tuple[float, ...] = (0.089, 0.083, 0.107, 0.107, 0.083, 0.089, 0.026, 0.026, 0.026, 0.026,
                                  0.062, 0.072, 0.179, 0.179, 0.072, 0.062)

SC_BIAS = 0.6  # PCKh's head size = 0.6 * head-box diagonal (util_get_head_size.m)


def head_sizes_from_boxes(headboxes: np.ndarray) -> np.ndarray:
    """0.6 x ||box[1] - box[0]|| for head boxes of shape (N, 2, 2) ([corner, xy]); returns (N,).

    Raises ValueError naming the first index whose head size is zero or not finite, because
    PCKh would divide by it.
    """
    boxes = np.asarray(headboxes, dtype=np.float64)  # (N, 2, 2) [corner, xy]
    if boxes.ndim != 3 or boxes.shape[1:] != (2, 2):
        raise ValueError(f"headboxes must have shape (N, 2, 2), got {boxes.shape}")
    sizes = SC_BIAS * np.linalg.norm(boxes[:, 1] - boxes[:, 0], axis=-1)  # (N,)
    check_head_sizes(sizes)
    return sizes


def check_head_sizes(head_size: np.ndarray) -> None:
    """Raise ValueError naming the indices of zero / negative / non-finite head sizes."""
    bad = np.flatnonzero(~(np.isfinite(head_size) & (head_size > 0)))
    if bad.size:
        raise ValueError(
            f"invalid head size (zero, negative or non-finite) at index {int(bad[0])}"
            f" (value {head_size[bad[0]]!r}; {bad.size} invalid in total: {bad[:10].tolist()})"
        )


_PathLike = str | Path


@dataclass(frozen=True)
class MPIIGroundTruth:
    """Validation ground truth in kpreg's 0-based convention."""

    joints: np.ndarray  # (N, 16, 2) float64 x,y original-image pixels, 0-based
    visible: np.ndarray  # (N, 16) bool, 1 - jnt_missing (annotated, not the occlusion flag)
    headboxes: np.ndarray  # (N, 2, 2) float64 [corner, xy], 0-based
    head_size: np.ndarray  # (N,) float64 px, 0.6 x head-box diagonal

    def __len__(self) -> int:
        return int(self.joints.shape[0])


@dataclass(frozen=True)
class MPIIAnnotation:
    """One person of the community ``annot/*.json``, converted to 0-based."""

    image: str
    center: np.ndarray  # (2,) float64 x,y, 0-based (no HRNet crop adjustment applied)
    scale: float  # person scale, x 200 px
    joints: np.ndarray  # (16, 2) float64 x,y, 0-based; rows with joints_vis == 0 are placeholders
    joints_vis: np.ndarray  # (16,) bool


def _read_mat(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Read variables from a MATLAB file, v5 via scipy or v7.3 (HDF5) via h5py, in MATLAB axis order."""
    try:
        data = scipy.io.loadmat(str(path), variable_names=list(keys))
        out = {k: np.asarray(data[k]) for k in keys if k in data}
    except (NotImplementedError, ValueError):
        # v7.3 files are HDF5; h5py shows MATLAB (column-major) arrays with reversed axes.
        try:
            with h5py.File(path, "r") as f:
                out = {k: np.asarray(f[k]).T for k in keys if k in f}
        except OSError as err:  # neither a MATLAB v5 file nor an HDF5 one
            raise ValueError(f"{path}: not a MATLAB .mat file (v5 or v7.3/HDF5): {err}") from None
    missing = [k for k in keys if k not in out]
    if missing:
        raise ValueError(f"{path}: missing variable(s) {missing}")
    return out


def load_gt_mat(path: _PathLike) -> MPIIGroundTruth:
    """Load ``gt_valid.mat``-style ground truth (``pos_gt_src`` 16x2xN, ``jnt_missing`` 16xN,
    ``headboxes_src`` 2x2xN, MATLAB 1-based) as 0-based arrays."""
    path = Path(path)
    d = _read_mat(path, ("pos_gt_src", "jnt_missing", "headboxes_src"))
    pos, missing, boxes = d["pos_gt_src"], d["jnt_missing"], d["headboxes_src"]
    if pos.ndim != 3 or pos.shape[:2] != (NUM_JOINTS, 2):
        raise ValueError(f"{path}: pos_gt_src must be 16x2xN, got {pos.shape}")
    n = pos.shape[2]
    if missing.shape != (NUM_JOINTS, n) or boxes.shape != (2, 2, n):
        raise ValueError(
            f"{path}: expected jnt_missing 16x{n} and headboxes_src 2x2x{n}, got {missing.shape} and {boxes.shape}"
        )
    joints = pos.transpose(2, 0, 1).astype(np.float64) - 1.0  # (N, 16, 2) 0-based
    visible = missing.T == 0  # (N, 16)
    headboxes = boxes.transpose(2, 0, 1).astype(np.float64) - 1.0  # (N, 2, 2) [corner, xy] 0-based
    try:
        head_size = head_sizes_from_boxes(headboxes)  # (N,)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    return MPIIGroundTruth(joints=joints, visible=visible, headboxes=headboxes, head_size=head_size)


def _to_n16x2(arr: np.ndarray, path: Path, num_joints: int) -> np.ndarray:
    """Normalise N x K x 2, 2 x K x N (Tompson .h5, MATLAB permute) or K x 2 x N (pos_*_src) to (N, K, 2).

    N x K x 2 wins when ambiguous (N == 2), since that is what we write."""
    k = num_joints
    if arr.ndim == 3 and arr.shape[1:] == (k, 2):
        return arr
    if arr.ndim == 3 and arr.shape[:2] == (2, k):
        return arr.transpose(2, 1, 0)
    if arr.ndim == 3 and arr.shape[:2] == (k, 2):
        return arr.transpose(2, 0, 1)
    raise ValueError(f"{path}: 'preds' must be Nx{k}x2, 2x{k}xN or {k}x2xN, got shape {arr.shape}")


def load_predictions(path: _PathLike, one_based: bool = True, num_joints: int = NUM_JOINTS) -> np.ndarray:
    """Load ``preds`` from a ``.mat`` or ``.h5`` file, or kpreg's ``predictions.json``, as a 0-based (N, K, 2)
    float64 array in validation order.

    ``one_based=True`` (default) is right for ``pred.mat`` and every published MPII prediction
    file we know of; pass ``one_based=False`` only for files known to hold 0-based coordinates.
    A ``predictions.json`` (``kpreg.formats.predictions``) is 0-based by its schema whatever ``one_based`` says;
    its ``index`` must number the validation persons 0 … N-1, once each.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _json_predictions(path, num_joints)
    if suffix == ".mat":
        arr = _read_mat(path, ("preds",))["preds"]
    elif suffix in (".h5", ".hdf5"):
        with h5py.File(path, "r") as f:
            if "preds" not in f:
                raise ValueError(f"{path}: no dataset 'preds' (has {sorted(f.keys())})")
            arr = np.asarray(f["preds"])  # written C-order by Torch/numpy: shape as stored
    else:
        raise ValueError(f"{path}: unsupported prediction file type {suffix!r} (use .mat, .h5 or kpreg's .json)")
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{path}: 'preds' must be numeric, got dtype {arr.dtype}")
    preds = _to_n16x2(arr, path, num_joints).astype(np.float64)  # (N, K, 2) file convention
    return preds - 1.0 if one_based else preds  # (N, K, 2) 0-based


def _json_predictions(path: Path, num_joints: int) -> np.ndarray:
    """(N, K, 2) 0-based keypoints of a ``predictions.json``, ordered by ``index``."""
    predictions = read_predictions(path)
    if len(predictions) and predictions.num_keypoints != num_joints:
        raise ValueError(f"{path}: {predictions.num_keypoints} keypoints per instance, MPII has {num_joints}")
    order = np.argsort(predictions.index, kind="stable")  # (N,)
    if not np.array_equal(predictions.index[order], np.arange(len(predictions))):
        raise ValueError(f"{path}: its 'index' values must be 0 … {len(predictions) - 1}, once each (one prediction per "
                         "validation person, as evaluate.py writes them)")
    return predictions.keypoints[order]  # (N, K, 2) 0-based


def save_pred_mat(path: _PathLike, preds: np.ndarray) -> None:
    """Write 0-based (N, K, 2) predictions as ``preds`` N x K x 2 in MATLAB 1-based coordinates."""
    preds = np.asarray(preds, dtype=np.float64)  # (N, K, 2) 0-based
    if preds.ndim != 3 or preds.shape[2] != 2:
        raise ValueError(f"{path}: predictions must be (N, K, 2), got {preds.shape}")
    scipy.io.savemat(str(path), {"preds": preds + 1.0})  # (N, K, 2) 1-based


_JSON_KEYS = ("image", "center", "scale", "joints", "joints_vis")


def load_annotation_json(path: _PathLike, require_joints: bool = True) -> list[MPIIAnnotation]:
    """Load the community ``annot/{train,valid,test}.json`` (list of person dicts) with validation.

    ``joints`` and ``center`` are MATLAB 1-based in that file and are shifted to 0-based. With
    ``require_joints=False`` (test split) missing ``joints``/``joints_vis`` give NaN joints, all invisible.
    Raises ValueError naming the file and entry index for malformed entries.
    """
    path = Path(path)
    data = read_json(path, "MPII annotation file")
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of person entries, got {type(data).__name__}")
    out: list[MPIIAnnotation] = []
    for i, entry in enumerate(data):

        def bad(msg: str, i: int = i) -> ValueError:
            return ValueError(f"{path}: entry {i}: {msg}")

        if not isinstance(entry, dict):
            raise bad(f"expected an object, got {type(entry).__name__}")
        needed = _JSON_KEYS if require_joints else _JSON_KEYS[:3]
        missing = [k for k in needed if k not in entry]
        if missing:
            raise bad(f"missing key(s) {missing}")
        try:
            center = np.asarray(entry["center"], dtype=np.float64)  # (2,) 1-based
            scale = float(entry["scale"])
            if "joints" in entry:
                joints = np.asarray(entry["joints"], dtype=np.float64)  # (16, 2) 1-based
                vis = np.asarray(entry["joints_vis"], dtype=np.float64)  # (16,)
            else:
                joints = np.full((NUM_JOINTS, 2), np.nan)
                vis = np.zeros(NUM_JOINTS)
        except (TypeError, ValueError, KeyError) as e:
            raise bad(f"non-numeric or ragged values ({e})") from None
        if center.shape != (2,) or not np.all(np.isfinite(center)):
            raise bad(f"center must be 2 finite numbers, got {entry['center']!r}")
        if not (np.isfinite(scale) and scale > 0):
            raise bad(f"scale must be positive and finite, got {entry['scale']!r}")
        if joints.shape != (NUM_JOINTS, 2):
            raise bad(f"joints must be {NUM_JOINTS}x2, got shape {joints.shape}")
        if vis.shape != (NUM_JOINTS,):
            raise bad(f"joints_vis must have {NUM_JOINTS} values, got shape {vis.shape}")
        if "joints" in entry and np.isnan(joints).any():
            raise bad(f"NaN joint coordinates at joint(s) {np.flatnonzero(np.isnan(joints).any(1)).tolist()}")
        if not np.isin(vis, (0, 1)).all():
            raise bad(f"joints_vis must be 0/1, got {vis.tolist()}")
        if not isinstance(entry["image"], str):
            raise bad(f"image must be a string, got {entry['image']!r}")
        out.append(
            MPIIAnnotation(
                image=entry["image"],
                center=center - 1.0,  # (2,) 0-based
                scale=scale,
                joints=joints - 1.0,  # (16, 2) 0-based
                joints_vis=vis.astype(bool),  # (16,)
            )
        )
    return out
