"""Tiny DeepLabCut projects written to a temporary folder, for reader tests and end-to-end training.

``make_dlc_project(root)`` writes, per video folder, ``labeled-data/<folder>/img0000.png ...`` (a coloured
disk per labelled keypoint on a dark background, one colour per bodypart) and
``labeled-data/<folder>/CollectedData_<scorer>.csv`` in the chosen index layout, with its own minimal
writer (the csv module, not kpreg's), so reader tests do not depend on kpreg's writer. It returns the exact
labels it wrote. Unlabelled keypoints are empty cells; ``empty_rows`` adds frames with every cell empty
(a reader skips and counts them).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

DEFAULT_BODYPARTS: tuple[str, ...] = ("snout", "leftear", "rightear", "tailbase")
# BGR colours, one per bodypart (cycled when there are more bodyparts).
_COLOURS: tuple[tuple[int, int, int], ...] = (
    (0, 0, 255),
    (0, 255, 0),
    (255, 0, 0),
    (0, 255, 255),
    (255, 0, 255),
    (255, 255, 0),
)


@dataclass(frozen=True)
class DLCProject:
    root: Path
    scorer: str
    bodyparts: tuple[str, ...]
    image_size: tuple[int, int]  # (H, W) of every frame
    csv_files: tuple[Path, ...]  # one per folder, in folder order
    h5_files: tuple[Path, ...]  # the pandas twins (write_h5=True), else ()
    image_paths: tuple[str, ...]  # (N,) labelled rows in file order, project-relative, "/"-joined
    keypoints: np.ndarray  # (N, K, 2) x,y pixels exactly as written; NaN where unlabelled
    empty_images: tuple[str, ...]  # rows written with every keypoint empty (not in image_paths)
    lines: tuple[int, ...]  # (N,) 1-based CSV line of each labelled row in its file

    @property
    def labelled(self) -> np.ndarray:
        """(N, K) bool: which keypoints have coordinates."""
        return ~np.isnan(self.keypoints[..., 0])


def make_dlc_project(
    root: str | Path,
    folders: Sequence[str] = ("mouseA", "mouseB"),
    frames: int = 3,
    bodyparts: Sequence[str] = DEFAULT_BODYPARTS,
    scorer: str = "tester",
    image_size: tuple[int, int] = (48, 64),
    index_columns: int = 3,
    unlabelled: bool = True,
    empty_rows: int = 0,
    write_h5: bool = False,
    seed: int = 0,
) -> DLCProject:
    """Write a single-animal DeepLabCut project under ``root``; return what was written.

    Args:
        folders: the ``labeled-data`` sub-folders (videos).
        frames: labelled frames per folder.
        index_columns: 3 (``labeled-data,<folder>,imgXXXX.png``, DeepLabCut >= 2.3) or 1
            (``labeled-data/<folder>/imgXXXX.png``, older DeepLabCut and Lightning Pose).
        unlabelled: leave keypoint ``n % K`` empty on every odd labelled frame ``n`` (counted over the
            project), so files hold empty cells.
        empty_rows: extra frames per folder whose keypoints are all empty (they come last in each file).
        write_h5: also write ``CollectedData_<scorer>.h5`` as DeepLabCut does (needs pandas + tables).
        seed: keypoint positions (uniform, 3 decimals like DeepLabCut's GUI, 4 px from the border).
    """
    if index_columns not in (1, 3):
        raise ValueError(f"index_columns must be 1 or 3, got {index_columns}")
    root = Path(root)
    rng = np.random.default_rng(seed)
    h, w = image_size
    k = len(bodyparts)
    csv_files: list[Path] = []
    h5_files: list[Path] = []
    image_paths: list[str] = []
    points: list[np.ndarray] = []
    lines: list[int] = []
    empty: list[str] = []
    n = 0
    for folder in folders:
        out_dir = root / "labeled-data" / folder
        out_dir.mkdir(parents=True, exist_ok=True)
        rows: list[tuple[tuple[str, ...], np.ndarray]] = []
        for j in range(frames + empty_rows):
            name = f"img{j:04d}.png"
            x, y = rng.uniform(4.0, w - 5.0, k), rng.uniform(4.0, h - 5.0, k)  # (K,) pixels
            xy = np.column_stack((x, y)).round(3)  # (K, 2) x,y pixels
            if j >= frames:
                xy[:] = np.nan
                empty.append(f"labeled-data/{folder}/{name}")
            else:
                if unlabelled and n % 2 == 1:
                    xy[n % k] = np.nan
                image_paths.append(f"labeled-data/{folder}/{name}")
                points.append(xy)
                n += 1
            image = np.full((h, w, 3), 30, dtype=np.uint8)
            for b in range(k):
                if not np.isnan(xy[b, 0]):
                    centre = (int(round(xy[b, 0])), int(round(xy[b, 1])))
                    cv2.circle(image, centre, 2, _COLOURS[b % len(_COLOURS)], -1)
            cv2.imwrite(str(out_dir / name), image)
            rows.append((("labeled-data", folder, name), xy))
        csv_path = out_dir / f"CollectedData_{scorer}.csv"
        _write_csv(csv_path, scorer, bodyparts, rows, index_columns)
        lines += [4 + r for r in range(frames)]  # the labelled rows come first, after 3 header lines
        csv_files.append(csv_path)
        if write_h5:
            h5_path = csv_path.with_suffix(".h5")
            _write_h5(h5_path, scorer, bodyparts, rows, index_columns)
            h5_files.append(h5_path)
    return DLCProject(
        root=root,
        scorer=scorer,
        bodyparts=tuple(bodyparts),
        image_size=(h, w),
        csv_files=tuple(csv_files),
        h5_files=tuple(h5_files),
        image_paths=tuple(image_paths),
        keypoints=np.stack(points) if points else np.zeros((0, k, 2)),
        empty_images=tuple(empty),
        lines=tuple(lines),
    )


def _cell(v: float) -> str:
    return "" if np.isnan(v) else repr(float(v))


def _write_csv(
    path: Path,
    scorer: str,
    bodyparts: Sequence[str],
    rows: Sequence[tuple[tuple[str, ...], np.ndarray]],
    index_columns: int,
) -> None:
    pad = [""] * (index_columns - 1)  # header cells above the extra index columns are empty
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["scorer", *pad] + [scorer] * (2 * len(bodyparts)))
        writer.writerow(["bodyparts", *pad] + [b for b in bodyparts for _ in "xy"])
        writer.writerow(["coords", *pad] + ["x", "y"] * len(bodyparts))
        for parts, xy in rows:
            index = list(parts) if index_columns == 3 else ["/".join(parts)]
            writer.writerow(index + [_cell(v) for v in xy.reshape(-1)])


def _write_h5(
    path: Path,
    scorer: str,
    bodyparts: Sequence[str],
    rows: Sequence[tuple[tuple[str, ...], np.ndarray]],
    index_columns: int,
) -> None:
    import pandas as pd

    columns = pd.MultiIndex.from_product(
        [[scorer], list(bodyparts), ["x", "y"]], names=["scorer", "bodyparts", "coords"]
    )
    if index_columns == 3:
        index = pd.MultiIndex.from_tuples([parts for parts, _ in rows])
    else:
        index = pd.Index(["/".join(parts) for parts, _ in rows])
    values = np.stack([xy.reshape(-1) for _, xy in rows])  # (rows, 2K)
    frame = pd.DataFrame(values, index=index, columns=columns)
    if index_columns == 3:
        # napari-deeplabcut (DeepLabCut >= 2.3): key "keypoints", pandas' default fixed format (the table
        # format cannot hold MultiIndex rows and MultiIndex columns together).
        frame.to_hdf(path, key="keypoints", mode="w")
    else:
        # DeepLabCut 2.0 - 2.2's labelling GUI: key "df_with_missing", table format.
        frame.to_hdf(path, key="df_with_missing", format="table", mode="w")
