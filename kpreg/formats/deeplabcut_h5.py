"""DeepLabCut's ``.h5`` tables as its video analysis writes them (pandas + PyTables, the ``dlc-h5`` extra).

``analyze_videos`` saves one DataFrame per video: columns a MultiIndex with levels ``scorer`` / ``bodyparts`` /
``coords`` (``x, y, likelihood`` per keypoint), rows the frame numbers 0 … T−1, under the key
``df_with_missing`` in PyTables' ``table`` format (DeepLabCut's ``create_df_from_prediction``). Its ``.csv`` twin is
what ``kpreg.formats.deeplabcut.DLCTableWriter`` writes (pandas' ``to_csv`` of the same frame). DeepLabCut's tools,
Lightning Pose, ``movement`` (``load_poses.from_dlc_file``) and SLEAP's importer read both. Coordinates are written
in DeepLabCut's convention, which is kpreg's (``DLC_TO_KPREG_SHIFT``); a missing keypoint is NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kpreg.formats.deeplabcut import DLC_TO_KPREG_SHIFT, DLCFormatError

H5_KEY = "df_with_missing"


def write_analysis_h5(
    path: str | Path,
    scorer: str,
    bodyparts: Sequence[str],
    xy: np.ndarray,
    likelihood: np.ndarray,
    index: Sequence[int] | None = None,
) -> Path:
    """Write xy (T, K, 2) kpreg pixels (NaN: missing) and likelihood (T, K) as DeepLabCut's analysis ``.h5``;
    ``index``: the frame numbers (default 0 … T−1)."""
    try:
        import pandas as pd
        import tables  # noqa: F401  (pandas' to_hdf needs it; imported here for a clear message)
    except ImportError as exc:
        raise DLCFormatError(f"{path}: writing DeepLabCut .h5 files needs pandas and PyTables ({exc.name} is "
                             "missing): pip install 'kpreg[dlc-h5]', or use the .csv twin") from None
    pts = np.asarray(xy, dtype=np.float64)  # (T, K, 2) kpreg pixels
    conf = np.asarray(likelihood, dtype=np.float64)  # (T, K)
    names = [str(b) for b in bodyparts]
    if pts.ndim != 3 or pts.shape[1:] != (len(names), 2) or conf.shape != pts.shape[:2]:
        raise DLCFormatError(f"{path}: xy {pts.shape} and likelihood {conf.shape} must be (T, {len(names)}, 2) and "
                             f"(T, {len(names)})")
    values = np.concatenate([pts - DLC_TO_KPREG_SHIFT, conf[..., None]], axis=-1)  # (T, K, 3) x, y, likelihood
    columns = pd.MultiIndex.from_product([[str(scorer)], names, ["x", "y", "likelihood"]],
                                         names=["scorer", "bodyparts", "coords"])
    rows = range(len(pts)) if index is None else [int(i) for i in index]
    frame = pd.DataFrame(values.reshape(len(pts), -1), columns=columns, index=rows)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_hdf(out, key=H5_KEY, format="table", mode="w")
    return out
