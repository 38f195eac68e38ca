"""Frames of a video added to a DeepLabCut project for labelling, prefilled with the model's predictions.

``write_suggestions(project, video, frames, keypoints, confidence, ...)`` writes, as DeepLabCut's frame extraction
does, each frame as ``labeled-data/<video stem>/img<index>.png`` (the index zero-padded to the digits of the video's
frame count, ``ceil(log10(frames))``) and adds one row per frame to ``labeled-data/<video stem>/
CollectedData_<scorer>.csv`` (the project's scorer: its ``config.yaml``'s, else that of its tables). The row holds the
model's prediction of every keypoint at least ``min_confidence`` confident, so the labeller corrects rather than
starts; the others are empty, to be placed by hand. With pandas and PyTables the ``.h5`` twin is written too, with
DeepLabCut ≥ 2.3's three-level row index: DeepLabCut's own tools read the ``.h5``, its labelling GUI (napari-
deeplabcut) opens the folder, and kpreg's reader takes either. Training on the project again picks the new rows up:
kpreg reads every ``labeled-data/*/`` folder (DeepLabCut's ``create_training_dataset`` reads the folders of the
videos in ``config.yaml``'s ``video_sets``).

Nothing labelled is ever overwritten: a frame whose image exists already or that the table already lists is skipped
and reported, and the existing rows are written back unchanged (the table is rewritten with the new rows added, in
frame order).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import yaml

from kpreg.formats.deeplabcut import (
    DLCFormatError,
    find_label_files,
    frame_file_name,
    read_collected_data,
    write_collected_data,
)
from kpreg.inference.filtering import confident
from kpreg.inference.sources import open_source


class LabellingError(ValueError):
    """Suggestions that cannot be added to the project: names the project, the table or the frame."""


@dataclass
class SuggestionReport:
    folder: Path
    table: Path
    written: list[str] = field(default_factory=list)  # image paths added, relative to the project
    skipped: dict[str, str] = field(default_factory=dict)  # image path → why it was not written
    h5: Path | None = None  # the .h5 twin, where pandas + tables could write it

    def summary(self) -> str:
        lines = [f"{len(self.written)} frame(s) added to {self.table}"]
        if self.skipped:
            shown = ", ".join(f"{p} ({why})" for p, why in list(self.skipped.items())[:5])
            more = f", … {len(self.skipped) - 5} more" if len(self.skipped) > 5 else ""
            lines.append(f"{len(self.skipped)} skipped (never overwritten): {shown}{more}")
        return "\n".join(lines)


def project_scorer(project: Path) -> str | None:
    """The scorer of a project: its ``config.yaml``'s ``scorer``, else that of its label tables, else None."""
    config = project / "config.yaml"
    if config.is_file():
        try:
            data = yaml.safe_load(config.read_text())
        except yaml.YAMLError as err:
            raise LabellingError(f"{config}: not a valid YAML file ({err})") from None
        if isinstance(data, dict) and data.get("scorer"):
            return str(data["scorer"])
    try:
        tables = find_label_files(project)
    except DLCFormatError:
        return None
    return tables[0].stem.removeprefix("CollectedData_") if tables[0].stem.startswith("CollectedData_") else None


def _project_bodyparts(project: Path) -> tuple[tuple[str, ...], Path] | None:
    try:
        first = find_label_files(project)[0]
    except DLCFormatError:
        return None
    return read_collected_data(first).bodyparts, first


def _read_frames(video: Path, wanted: set[int]) -> dict[int, np.ndarray]:
    """The wanted frames (H, W, 3) uint8 RGB of a video, read in order up to the last one."""
    out: dict[int, np.ndarray] = {}
    if not wanted:
        return out
    last = max(wanted)
    source = open_source(video)
    for frame in source:
        if frame.index in wanted:
            out[frame.index] = frame.image
        if frame.index >= last:
            break
    return out


def write_suggestions(
    project: str | Path,
    video: str | Path,
    frames: Sequence[int],
    keypoints: np.ndarray,
    confidence: np.ndarray,
    bodyparts: Sequence[str],
    frame_count: int,
    min_confidence: float,
    scorer: str | None = None,
) -> SuggestionReport:
    """Add ``frames`` of ``video`` to ``project`` (module docstring). keypoints (N, K, 2) image pixels and confidence
    (N, K) are the predictions of those N frames; ``frame_count`` is the video's (it sets the names' width)."""
    root, video = Path(project), Path(video)
    if not root.is_dir():
        raise LabellingError(f"{root}: the project folder does not exist")
    names = tuple(str(b) for b in bodyparts)
    xy = np.asarray(keypoints, dtype=np.float64)  # (N, K, 2)
    conf = np.asarray(confidence, dtype=np.float64)  # (N, K)
    if xy.shape != (len(frames), len(names), 2) or conf.shape != xy.shape[:2]:
        raise LabellingError(f"predictions for {len(frames)} frames and {len(names)} keypoints must be "
                             f"({len(frames)}, {len(names)}, 2) and ({len(frames)}, {len(names)}), got {xy.shape}, "
                             f"{conf.shape}")
    existing = _project_bodyparts(root)
    if existing is not None and existing[0] != names:
        raise LabellingError(f"the model's keypoints {list(names)} differ from the project's {list(existing[0])} "
                             f"({existing[1]}): suggest with a model trained on this project")
    scorer = scorer or project_scorer(root)
    if not scorer:
        raise LabellingError(f"{root}: no scorer in config.yaml and no label table: give the scorer (your name as "
                             "DeepLabCut's config.yaml has it)")
    folder = root / "labeled-data" / video.stem
    table = folder / f"CollectedData_{scorer}.csv"
    rows: dict[str, np.ndarray] = {}  # image path → (K, 2) x,y, NaN unlabelled
    old = table if table.is_file() else table.with_suffix(".h5") if table.with_suffix(".h5").is_file() else None
    if old is not None:
        labels = read_collected_data(old)
        if labels.bodyparts != names:
            raise LabellingError(f"{old}: its keypoints {list(labels.bodyparts)} differ from the model's {list(names)}")
        for i, path in enumerate(labels.image_paths):
            rows[path.replace("\\", "/")] = np.where(labels.labelled[i][:, None], labels.keypoints[i], np.nan)
    report = SuggestionReport(folder, table)
    todo: dict[int, tuple[str, np.ndarray]] = {}
    for n, f in enumerate(int(f) for f in frames):
        if not 0 <= f < frame_count:
            raise LabellingError(f"frame {f} is outside the video's {frame_count} frames ({video})")
        name = frame_file_name(f, frame_count)
        path = f"labeled-data/{folder.name}/{name}"
        if path in rows:
            report.skipped[path] = f"already in {old.name if old else table.name}"
        elif (folder / name).exists():
            report.skipped[path] = "an image of that name exists"
        else:
            shown = confident(conf[n:n + 1], min_confidence, xy[n:n + 1])[0]  # (K,)
            todo[f] = (path, np.where(shown[:, None], xy[n], np.nan))
    images = _read_frames(video, set(todo))
    folder.mkdir(parents=True, exist_ok=True)
    for f, (path, prefill) in sorted(todo.items()):
        if f not in images:
            report.skipped[path] = "the video ended before this frame"
            continue
        cv2.imwrite(str(root / path), cv2.cvtColor(images[f], cv2.COLOR_RGB2BGR))
        rows[path] = prefill
        report.written.append(path)
    if report.written:
        paths = sorted(rows)
        xy_all = np.stack([rows[p] for p in paths]).reshape(-1, len(names), 2)  # (M, K, 2)
        write_collected_data(table, scorer, names, paths, xy_all)
        report.h5 = _write_h5_twin(table.with_suffix(".h5"), scorer, names, paths, xy_all)
    return report


def _write_h5_twin(path: Path, scorer: str, names: tuple[str, ...], paths: list[str], xy: np.ndarray) -> Path | None:
    """DeepLabCut's ``CollectedData_<scorer>.h5`` (three-level rows, x, y per keypoint) where pandas + tables exist."""
    try:
        import pandas as pd
        import tables  # noqa: F401
    except ImportError:
        return None
    columns = pd.MultiIndex.from_product([[scorer], list(names), ["x", "y"]], names=["scorer", "bodyparts", "coords"])
    index = pd.MultiIndex.from_tuples([tuple(p.split("/")) for p in paths])
    pd.DataFrame(xy.reshape(len(paths), -1), columns=columns, index=index).to_hdf(path, key="df_with_missing",
                                                                                   mode="w")
    return path
