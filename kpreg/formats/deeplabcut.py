"""DeepLabCut / Lightning Pose labelled-data tables: read, validate, write.

The table
---------
A single-animal DeepLabCut project keeps its labels in ``labeled-data/<video>/CollectedData_<scorer>.csv``
(and an ``.h5`` twin written by pandas). Lightning Pose uses the same table, usually one
``CollectedData.csv`` at the project root. Three header rows, then one row per labelled frame::

    scorer,Pranav,Pranav,Pranav,Pranav              <- line 1: the annotator, repeated
    bodyparts,snout,snout,leftear,leftear           <- line 2: keypoint names, one per coordinate column
    coords,x,y,x,y                                  <- line 3: x, y per keypoint (predictions: + likelihood)
    labeled-data/m4s1/img0000.png,21.5,265.4,,      <- an empty cell (or NaN) is an unlabelled keypoint

The frame is named by one index column (``labeled-data/m4s1/img0000.png``, DeepLabCut < 2.3 and Lightning
Pose; a frame number in ``analyze_videos`` output) or by three (``labeled-data,m4s1,img0000.png``,
DeepLabCut >= 2.3, pandas' MultiIndex rows); header cells above extra index columns are empty. Both are read;
the three parts are joined with ``/``. Paths are relative to the project folder.

Multi-animal files (maDLC) carry a fourth header row, ``individuals``, between ``scorer`` and ``bodyparts``.
They are refused with one clear error: kpreg's top-down pipeline needs one box per instance, which maDLC
tables do not have (convert such a project to COCO keypoints, one annotation and box per animal).

Coordinate convention: DeepLabCut pixel centres are integers, as in kpreg
--------------------------------------------------------------------------
kpreg puts pixel centres on integers: an image of width W spans x in [-0.5, W - 0.5]. DeepLabCut labels
are in the same convention, so they are used as-is (``DLC_TO_KPREG_SHIFT = 0``). The evidence:

1. DeepLabCut 2.0 - 2.2 labelled with a wxPython + matplotlib GUI (``deeplabcut/gui/labeling_toolbox.py``):
   the frame is drawn with ``axes.imshow(im)`` (no ``extent``) and a click's ``event.xdata, event.ydata``
   are stored unchanged in the table. matplotlib's ``imshow`` docs: "Unless *extent* is used, pixel centers
   will be located at integer coordinates" (default extent ``(-0.5, W - 0.5, H - 0.5, -0.5)``).
2. DeepLabCut >= 2.3 labels in napari-deeplabcut, whose writer (``_writer._form_df``) copies the Points
   layer's ``(y, x)`` data into the table's ``x, y`` columns with no offset. napari places the centre of
   pixel (0, 0) at world (0, 0) (napari issue #310, "the coordinates at the *center* of pixel [0, 0]
   should be [0, 0]", fixed; PR #3381 keeps the world origin at a pixel centre, image extent from -0.5).
3. DeepLabCut's own label plots (``check_labels``) draw labels with matplotlib on ``imshow`` the same way.

(DeepLabCut's *trainers* place heatmap cell j at ``stride * j + stride / 2`` -- pixel-edge origin, e.g.
``pose_estimation_pytorch/.../heatmap_targets.py`` -- a half-pixel inconsistency inside its models that
does not change what a label means.) Predictions written by :func:`write_collected_data` use the same
convention, so DeepLabCut's plotting tools draw them where kpreg meant them.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kpreg.formats.coco import infer_flip_pairs
from kpreg.formats.files import read_yaml

__all__ = [
    "DLC_TO_KPREG_SHIFT",
    "DLCFormatError",
    "DLCLabels",
    "read_collected_data",
    "find_label_files",
    "read_project",
    "DLCProjectConfig",
    "read_project_config",
    "read_image_sizes",
    "check_inside_images",
    "write_collected_data",
    "DLCTableWriter",
    "frame_file_name",
]

# Added to DeepLabCut x, y to get kpreg input/original pixels (see the module docstring: both put pixel
# centres on integers). Subtracted on writing. The one place the convention is converted.
DLC_TO_KPREG_SHIFT: float = 0.0

_HEADER = ("scorer", "bodyparts", "coords")
_XY = ("x", "y")
_XYL = ("x", "y", "likelihood")
_MULTI_ANIMAL = (
    "multi-animal projects are not supported: kpreg reads single-animal tables (header rows scorer, "
    "bodyparts, coords); convert the project to COCO keypoints (one annotation with a box per animal) "
    "and use the COCO reader"
)


class DLCFormatError(ValueError):
    """A DeepLabCut table kpreg cannot use; the message names the file and the line, column or image."""


@dataclass(frozen=True, eq=False)  # eq=False: arrays have no single truth value
class DLCLabels:
    """Labels of one table, or of a whole project (several tables concatenated).

    Unlabelled keypoints (empty / NaN cells) hold 0.0 in ``keypoints`` -- finite, like COCO's (0, 0, v=0) --
    and ``labelled`` says which are real. Rows whose every keypoint is empty are not kept; they are counted
    in ``skipped_empty_rows`` so the caller can report them.
    """

    scorer: str
    bodyparts: tuple[str, ...]
    image_paths: tuple[str, ...]  # (N,) relative to the project folder, as written; frame numbers for videos
    keypoints: np.ndarray = field(repr=False)  # (N, K, 2) float64 x,y original pixels (kpreg convention)
    labelled: np.ndarray = field(repr=False)  # (N, K) bool
    likelihood: np.ndarray | None = field(repr=False)  # (N, K) float64, only for x,y,likelihood tables
    sources: tuple[Path, ...]  # (N,) the table each row came from
    lines: tuple[int | None, ...]  # (N,) 1-based CSV line of each row; None for rows read from .h5
    skipped_empty_rows: int = 0

    @property
    def num_images(self) -> int:
        return len(self.image_paths)

    @property
    def num_keypoints(self) -> int:
        return len(self.bodyparts)

    @property
    def flip_pairs(self) -> tuple[tuple[int, int], ...]:
        """0-based index pairs (i < j) that a horizontal flip swaps, inferred from the names (``leftear``)."""
        return infer_flip_pairs(self.bodyparts)

    def where(self, i: int) -> str:
        """``<table>, line <n> (<image path>)``: where row ``i`` came from, for error messages."""
        line = "" if self.lines[i] is None else f", line {self.lines[i]}"
        return f"{self.sources[i]}{line} ({self.image_paths[i]})"

    def image_file(self, i: int, project_dir: str | Path) -> Path:
        """The image of row ``i`` under ``project_dir`` (Windows ``\\`` separators accepted)."""
        return Path(project_dir) / self.image_paths[i].replace("\\", "/")


# ----------------------------------------------------------------------------------------------------
# reading one table
# ----------------------------------------------------------------------------------------------------
@dataclass
class _Columns:
    """What the header rows say about the value columns."""

    scorer: str
    bodyparts: tuple[str, ...]
    coords: tuple[str, ...]  # ("x", "y") or ("x", "y", "likelihood"), the same for every keypoint


def _column_layout(
    source: Path, scorers: Sequence[str], bodyparts: Sequence[str], coords: Sequence[str], where: str
) -> _Columns:
    """Check the three header levels of the value columns (parallel lists, one entry per column).

    ``where`` names the place in the file (e.g. ``"header"``) for messages; columns are reported 1-based
    among the value columns with their bodypart.
    """
    if not coords:
        raise DLCFormatError(f"{source}: {where}: no value columns after the index")
    distinct = sorted(set(scorers))
    if len(distinct) != 1 or not distinct[0]:
        raise DLCFormatError(f"{source}: {where}: the scorer row must repeat one name, found {distinct}")
    names: list[str] = []
    kind: tuple[str, ...] | None = None
    col = 0
    while col < len(coords):
        name = bodyparts[col]
        if not name:
            raise DLCFormatError(f"{source}: {where}: value column {col + 1} has an empty bodypart name")
        width = 1
        while col + width < len(coords) and bodyparts[col + width] == name:
            width += 1
        group = tuple(coords[col : col + width])
        if group not in (_XY, _XYL):
            raise DLCFormatError(
                f"{source}: {where}: bodypart {name!r} (value columns {col + 1}-{col + width}) has coords "
                f"{list(group)}; expected [x, y] or [x, y, likelihood]"
            )
        if kind is not None and group != kind:
            raise DLCFormatError(
                f"{source}: {where}: bodypart {name!r} has coords {list(group)} but {names[0]!r} has "
                f"{list(kind)}; every keypoint needs the same columns"
            )
        if name in names:
            raise DLCFormatError(
                f"{source}: {where}: bodypart {name!r} appears twice (value column {col + 1})"
            )
        kind = group
        names.append(name)
        col += width
    assert kind is not None
    return _Columns(scorer=distinct[0], bodyparts=tuple(names), coords=kind)


def _parse_cell(source: Path, line: int, column: str, cell: str) -> float:
    """One CSV value cell → float; empty / NaN → NaN; anything non-numeric or infinite is an error."""
    text = cell.strip()
    if not text:
        return math.nan
    try:
        value = float(text)
    except ValueError:
        raise DLCFormatError(f"{source}: line {line}, {column}: {cell!r} is not a number") from None
    if math.isinf(value):
        raise DLCFormatError(f"{source}: line {line}, {column}: {cell!r} is not finite")
    return value


def _read_csv_rows(
    source: Path,
) -> tuple[_Columns, list[tuple[str, int | None, np.ndarray]]]:
    """Parse a CSV table into its column layout and rows ``(image path, line, values (C,) float64)``."""
    with open(source, newline="", encoding="utf-8-sig") as f:  # -sig: a spreadsheet's BOM is dropped
        reader = csv.reader(f)
        header: list[list[str]] = []
        header_lines: list[int] = []
        rows: list[tuple[int, list[str]]] = []
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue  # blank line or a line of bare commas: not an entry
            if len(header) < 3:
                header.append(cells)
                header_lines.append(reader.line_num)
                if len(header) == 2 and cells[0].strip() == "individuals":
                    raise DLCFormatError(
                        f"{source}: line {reader.line_num} is an 'individuals' row: {_MULTI_ANIMAL}"
                    )
            else:
                rows.append((reader.line_num, cells))
    if len(header) < 3:
        raise DLCFormatError(
            f"{source}: expected 3 header rows (scorer, bodyparts, coords), found {len(header)} line(s)"
        )
    for n, want, cells in zip(header_lines, _HEADER, header):
        if cells[0].strip() != want:
            raise DLCFormatError(
                f"{source}: line {n} should start with {want!r} (header rows: scorer, bodyparts, coords), "
                f"found {cells[0]!r}"
            )
    width = len(header[2])
    for n, cells in zip(header_lines, header):
        if len(cells) != width:
            raise DLCFormatError(
                f"{source}: line {n} has {len(cells)} cells, "
                f"the coords row (line {header_lines[2]}) has {width}"
            )
    # Index columns: the coords row is empty above them (pandas writes MultiIndex rows that way).
    num_index = 1
    while num_index < width and not header[2][num_index].strip():
        num_index += 1
    for n, cells in zip(header_lines, header):
        if any(c.strip() for c in cells[1:num_index]):
            raise DLCFormatError(
                f"{source}: line {n}: cells above the {num_index} index column(s) must be empty, found "
                f"{cells[:num_index]}"
            )
    strip = [[c.strip() for c in cells[num_index:]] for cells in header]
    columns = _column_layout(
        source, strip[0], strip[1], strip[2], f"header (lines {header_lines[0]}-{header_lines[2]})"
    )
    labels = [f"{b}.{c}" for b in columns.bodyparts for c in columns.coords]  # cell names for messages

    out: list[tuple[str, int | None, np.ndarray]] = []
    for line, cells in rows:
        if len(cells) != width:
            raise DLCFormatError(f"{source}: line {line} has {len(cells)} cells, the header has {width}")
        parts = [c.strip() for c in cells[:num_index]]
        if not all(parts):
            raise DLCFormatError(
                f"{source}: line {line}: empty image path / frame cell(s) {cells[:num_index]}"
            )
        values = np.array(
            [_parse_cell(source, line, labels[j], c) for j, c in enumerate(cells[num_index:])],
            dtype=np.float64,
        )  # (K * C,) C = 2 or 3 columns per keypoint
        out.append(("/".join(parts), line, values))
    return columns, out


def _read_h5_rows(source: Path) -> tuple[_Columns, list[tuple[str, int | None, np.ndarray]]]:
    """Parse the pandas/PyTables ``.h5`` twin of a table (needs the optional pandas + tables)."""
    try:
        import pandas as pd
        import tables  # noqa: F401  (pandas' read_hdf needs it; import here for a clear message)
    except ImportError as exc:
        raise DLCFormatError(
            f"{source}: reading DeepLabCut .h5 files needs pandas and PyTables ({exc.name} is missing): "
            f"`pip install pandas tables`, or read the CSV twin {source.with_suffix('.csv')}"
        ) from None
    try:
        frame = pd.read_hdf(source)
    except (ValueError, KeyError, OSError, TypeError) as exc:
        raise DLCFormatError(f"{source}: not a pandas HDF table ({exc})") from None
    if not isinstance(frame, pd.DataFrame):
        raise DLCFormatError(f"{source}: holds a {type(frame).__name__}, expected a DataFrame")
    names = list(frame.columns.names)
    if "individuals" in names:
        raise DLCFormatError(f"{source}: the columns have an 'individuals' level: {_MULTI_ANIMAL}")
    if names != list(_HEADER):
        raise DLCFormatError(f"{source}: column levels are {names}, expected {list(_HEADER)}")
    levels = [[str(v) for v in frame.columns.get_level_values(i)] for i in range(3)]
    columns = _column_layout(source, *levels, "column levels")
    try:
        values = frame.to_numpy(dtype=np.float64)  # (N, K * C) C = 2 or 3 columns per keypoint
    except (TypeError, ValueError) as exc:
        raise DLCFormatError(f"{source}: non-numeric values ({exc})") from None
    out: list[tuple[str, int | None, np.ndarray]] = []
    for i, key in enumerate(frame.index):
        parts = [str(p) for p in key] if isinstance(key, tuple) else [str(key)]
        if np.isinf(values[i]).any():
            raise DLCFormatError(f"{source}: row {i + 1} ({'/'.join(parts)}) has an infinite value")
        out.append(("/".join(parts), None, values[i]))
    return columns, out


def read_collected_data(path: str | Path) -> DLCLabels:
    """Read one ``CollectedData_<scorer>.csv`` (or its ``.h5`` twin, with pandas + tables installed).

    Raises :class:`DLCFormatError` naming the file and the line (CSV) or image path for: missing or wrong
    header rows, a multi-animal ``individuals`` row, coords that are not ``x, y`` (or ``x, y, likelihood``)
    per keypoint, a non-numeric or infinite cell, a keypoint with only one of x / y, a row of the wrong
    width and an image listed twice. Rows with every keypoint empty are skipped and counted.
    """
    source = Path(path)
    if not source.is_file():
        raise DLCFormatError(f"{source}: no such file")
    if source.suffix.lower() in (".h5", ".hdf5", ".hdf"):
        columns, rows = _read_h5_rows(source)
    else:
        columns, rows = _read_csv_rows(source)

    k = len(columns.bodyparts)
    per_kpt = len(columns.coords)
    seen: dict[str, str] = {}
    kept_paths: list[str] = []
    kept_lines: list[int | None] = []
    kept_values: list[np.ndarray] = []
    skipped = 0
    for n, (image, line, values) in enumerate(rows, start=1):
        at = f"line {line}" if line is not None else f"row {n}"
        key = image.replace("\\", "/")
        if key in seen:
            raise DLCFormatError(f"{source}: {at}: image {image!r} is listed twice (first at {seen[key]})")
        seen[key] = at
        table = values.reshape(k, per_kpt)  # (K, 2 or 3) x, y[, likelihood] DeepLabCut pixels
        x_nan, y_nan = np.isnan(table[:, 0]), np.isnan(table[:, 1])  # (K,)
        half = x_nan != y_nan
        if half.any():
            name = columns.bodyparts[int(np.flatnonzero(half)[0])]
            raise DLCFormatError(f"{source}: {at} ({image}): bodypart {name!r} has only one of x, y")
        if x_nan.all():
            skipped += 1  # an image nobody labelled: nothing to learn from, the caller reports the count
            continue
        kept_paths.append(image)
        kept_lines.append(line)
        kept_values.append(table)

    n_kept = len(kept_paths)
    table = (
        np.stack(kept_values) if kept_values else np.zeros((0, k, per_kpt), dtype=np.float64)
    )  # (N, K, 2 or 3)
    labelled = ~np.isnan(table[:, :, 0])  # (N, K) bool
    keypoints = np.where(labelled[..., None], table[:, :, :2] + DLC_TO_KPREG_SHIFT, 0.0)  # (N, K, 2) x,y px
    likelihood = table[:, :, 2].copy() if per_kpt == 3 else None  # (N, K)
    return DLCLabels(
        scorer=columns.scorer,
        bodyparts=columns.bodyparts,
        image_paths=tuple(kept_paths),
        keypoints=keypoints,
        labelled=labelled,
        likelihood=likelihood,
        sources=(source,) * n_kept,
        lines=tuple(kept_lines),
        skipped_empty_rows=skipped,
    )


# ----------------------------------------------------------------------------------------------------
# a whole project
# ----------------------------------------------------------------------------------------------------
def find_label_files(project_dir: str | Path, scorer: str | None = None) -> list[Path]:
    """The label tables of a project, in sorted order.

    DeepLabCut: ``labeled-data/*/CollectedData_<scorer>.csv`` (``scorer=None``: any), or the ``.h5`` where a
    folder has no CSV twin. If there are none, Lightning Pose: ``CollectedData*.csv`` in ``project_dir``.
    """
    root = Path(project_dir)
    if not root.is_dir():
        raise DLCFormatError(f"{root}: not a folder")
    name = f"CollectedData_{scorer}" if scorer is not None else "CollectedData_*"
    found = sorted(root.glob(f"labeled-data/*/{name}.csv"))
    have_csv = {p.with_suffix("") for p in found}
    found += [p for p in root.glob(f"labeled-data/*/{name}.h5") if p.with_suffix("") not in have_csv]
    if not found:
        found = sorted(root.glob("CollectedData*.csv"))
    if not found:
        raise DLCFormatError(
            f"{root}: no label tables: looked for labeled-data/*/{name}.csv (DeepLabCut) and "
            f"CollectedData*.csv (Lightning Pose)"
        )
    return sorted(found)


def read_project(project_dir: str | Path, scorer: str | None = None) -> DLCLabels:
    """All label tables of a project (:func:`find_label_files`) as one label set.

    Every table must list the same bodyparts in the same order and the same scorer (DeepLabCut trains on
    ``CollectedData_<config scorer>`` only; pass ``scorer`` to choose when several annotators' files
    exist); an image may appear in one table only. Each error names both files.
    """
    files = find_label_files(project_dir, scorer)
    parts = [read_collected_data(f) for f in files]
    first_file, first = files[0], parts[0]
    for file, part in zip(files[1:], parts[1:]):
        if part.bodyparts != first.bodyparts:
            raise DLCFormatError(
                f"bodyparts differ between {first_file} {list(first.bodyparts)} and "
                f"{file} {list(part.bodyparts)}"
            )
        if part.scorer != first.scorer:
            raise DLCFormatError(
                f"scorers differ between {first_file} ({first.scorer!r}) and {file} ({part.scorer!r}); "
                f"pass scorer= to read one annotator's files"
            )
    seen: dict[str, str] = {}
    for part in parts:
        for i, image in enumerate(part.image_paths):
            key = image.replace("\\", "/")
            if key in seen:
                raise DLCFormatError(f"image {image!r} is listed in {seen[key]} and in {part.where(i)}")
            seen[key] = part.where(i)
    k = first.num_keypoints
    likelihoods = [p.likelihood for p in parts]
    return DLCLabels(
        scorer=first.scorer,
        bodyparts=first.bodyparts,
        image_paths=tuple(p for part in parts for p in part.image_paths),
        keypoints=np.concatenate([p.keypoints for p in parts]).reshape(-1, k, 2),  # (N, K, 2)
        labelled=np.concatenate([p.labelled for p in parts]).reshape(-1, k),  # (N, K)
        # (N, K); a table without likelihood columns (hand labels) makes the whole set have none
        likelihood=None
        if any(c is None for c in likelihoods)
        else np.concatenate(likelihoods).reshape(-1, k),
        sources=tuple(s for part in parts for s in part.sources),
        lines=tuple(n for part in parts for n in part.lines),
        skipped_empty_rows=sum(p.skipped_empty_rows for p in parts),
    )


@dataclass(frozen=True)
class DLCProjectConfig:
    """What kpreg reads from a DeepLabCut project's ``config.yaml``: the task name and the skeleton."""

    path: Path | None  # the file read; None when the project has none
    task: str | None = None  # ``Task``
    skeleton: tuple[tuple[str | int, str | int], ...] = ()  # ``skeleton``: pairs of bodypart names, as written


def read_project_config(project_dir: str | Path) -> DLCProjectConfig:
    """The project's ``config.yaml`` (``Task``, ``skeleton``); an empty config when the project has none (a
    Lightning Pose project, or labels copied without it). Every other key is DeepLabCut's and ignored."""
    path = Path(project_dir) / "config.yaml"
    if not path.is_file():
        return DLCProjectConfig(None)
    config = read_yaml(path, "DeepLabCut config", DLCFormatError)
    if config is None:
        return DLCProjectConfig(path)
    if not isinstance(config, Mapping):
        raise DLCFormatError(f"{path}: a DeepLabCut config holds a mapping of keys, got {type(config).__name__}")
    task = config.get("Task")
    edges = config.get("skeleton") or []
    if not isinstance(edges, list) or not all(isinstance(e, (list, tuple)) for e in edges):
        raise DLCFormatError(f"{path}: 'skeleton' must be a list of [bodypart, bodypart] pairs, got {edges!r}")
    for n, edge in enumerate(edges):
        if len(edge) != 2 or not all(isinstance(end, (str, int)) and not isinstance(end, bool) for end in edge):
            raise DLCFormatError(f"{path}: skeleton edge {n} is {list(edge)}, expected two bodypart names")
    return DLCProjectConfig(path, None if task in (None, "") else str(task), tuple((e[0], e[1]) for e in edges))


# ----------------------------------------------------------------------------------------------------
# labels against images
# ----------------------------------------------------------------------------------------------------
def read_image_sizes(labels: DLCLabels, project_dir: str | Path) -> np.ndarray:
    """(N, 2) int64 (height, width) of each row's image, read from the file header only (Pillow)."""
    from PIL import Image, UnidentifiedImageError

    sizes = np.zeros((labels.num_images, 2), dtype=np.int64)  # (N, 2) H, W
    for i in range(labels.num_images):
        file = labels.image_file(i, project_dir)
        try:
            with Image.open(file) as img:
                w, h = img.size
        except FileNotFoundError:
            raise DLCFormatError(f"{labels.where(i)}: image file {file} does not exist") from None
        except (UnidentifiedImageError, OSError) as exc:
            raise DLCFormatError(f"{labels.where(i)}: cannot read image {file} ({exc})") from None
        sizes[i] = (h, w)
    return sizes


def check_inside_images(labels: DLCLabels, sizes: np.ndarray | Mapping[str, Sequence[int]]) -> None:
    """Raise :class:`DLCFormatError` for the first labelled keypoint outside its image.

    ``sizes``: (N, 2) (height, width) per row (:func:`read_image_sizes`), or a mapping image path → (H, W).
    An image of width W spans x in [-0.5, W - 0.5] (pixel centres on integers; the edges are allowed).
    """
    if isinstance(sizes, Mapping):
        missing = [p for p in labels.image_paths if p not in sizes]
        if missing:
            raise DLCFormatError(f"no image size for {missing[0]!r} ({len(missing)} image(s) without a size)")
        hw = np.array([list(sizes[p]) for p in labels.image_paths], dtype=np.float64).reshape(-1, 2)
    else:
        hw = np.asarray(sizes, dtype=np.float64).reshape(-1, 2)  # (N, 2) H, W
    if hw.shape[0] != labels.num_images:
        raise DLCFormatError(f"got {hw.shape[0]} image sizes for {labels.num_images} labelled images")
    x, y = labels.keypoints[..., 0], labels.keypoints[..., 1]  # (N, K) original pixels
    outside = labels.labelled & (
        (x < -0.5) | (y < -0.5) | (x > hw[:, 1:2] - 0.5) | (y > hw[:, 0:1] - 0.5)
    )  # (N, K)
    if outside.any():
        i, k = (int(v) for v in np.argwhere(outside)[0])
        raise DLCFormatError(
            f"{labels.where(i)}: bodypart {labels.bodyparts[k]!r} at x={x[i, k]:g}, y={y[i, k]:g} is outside "
            f"the {int(hw[i, 1])}x{int(hw[i, 0])} image (x in [-0.5, {hw[i, 1] - 0.5:g}], "
            f"y in [-0.5, {hw[i, 0] - 0.5:g}]); {int(outside.sum())} keypoint(s) outside in all"
        )


# ----------------------------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------------------------
def frame_file_name(frame: int, frame_count: int) -> str:
    """DeepLabCut's name of a frame extracted from a video for labelling: ``img`` + the frame index zero-padded to
    ``ceil(log10(frame count))`` digits (``frame_extraction.py``, ``outlier_frames.py``): ``img0042.png`` in a video
    of 2 330 frames."""
    width = int(math.ceil(math.log10(frame_count))) if frame_count > 1 else 1
    return f"img{frame:0{width}d}.png"


def _format(value: float) -> str:
    """Shortest text that reads back to the same float64; NaN → empty cell (DeepLabCut / pandas style)."""
    return "" if math.isnan(value) else repr(float(value))


def write_collected_data(
    path: str | Path,
    scorer: str,
    bodyparts: Sequence[str],
    index: Sequence[str] | Sequence[int],
    xy: np.ndarray,
    likelihood: np.ndarray | None = None,
    *,
    labelled: np.ndarray | None = None,
) -> Path:
    """Write a DeepLabCut table: ``scorer`` / ``bodyparts`` / ``coords`` rows, one index column.

    Args:
        path: the ``.csv`` to write (folders are created).
        scorer: the scorer row (DeepLabCut names a network's output ``DLC_<net>_...``).
        bodyparts: (K,) keypoint names.
        index: (N,) image paths relative to the project folder, or frame numbers of a video.
        xy: (N, K, 2) x,y pixels in kpreg's convention; NaN = unlabelled (written as empty cells).
        likelihood: (N, K) or None; given, every keypoint gets ``x, y, likelihood`` columns as
            DeepLabCut's ``analyze_videos`` writes them.
        labelled: (N, K) bool or None; False entries are written empty whatever ``xy`` holds.

    pandas reads the result with ``pd.read_csv(path, header=[0, 1, 2], index_col=0)``; values are written
    with the shortest text that reads back exactly.
    """
    names = [str(b) for b in bodyparts]
    pts = np.asarray(xy, dtype=np.float64)  # (N, K, 2) x,y kpreg pixels
    n = len(index)
    k = len(names)
    if not scorer or not str(scorer).strip():
        raise ValueError("write_collected_data: scorer must be a non-empty name")
    if any(not b.strip() for b in names) or len(set(names)) != k:
        raise ValueError(f"write_collected_data: bodyparts must be unique non-empty names, got {names}")
    if pts.shape != (n, k, 2):
        raise ValueError(f"write_collected_data: xy has shape {pts.shape}, expected ({n}, {k}, 2)")
    keys = [str(i) for i in index]
    if len(set(keys)) != n:
        dup = next(key for key in keys if keys.count(key) > 1)
        raise ValueError(f"write_collected_data: index entry {dup!r} appears more than once")
    if any(not key.strip() for key in keys):
        raise ValueError("write_collected_data: index entries must be non-empty")
    if np.isinf(pts).any():
        raise ValueError("write_collected_data: xy holds infinite values")
    conf = None
    if likelihood is not None:
        conf = np.asarray(likelihood, dtype=np.float64)  # (N, K)
        if conf.shape != (n, k):
            raise ValueError(f"write_collected_data: likelihood has shape {conf.shape}, expected ({n}, {k})")
    if labelled is not None:
        mask = np.asarray(labelled, dtype=bool)  # (N, K)
        if mask.shape != (n, k):
            raise ValueError(f"write_collected_data: labelled has shape {mask.shape}, expected ({n}, {k})")
        pts = np.where(mask[..., None], pts, np.nan)
    with DLCTableWriter(path, scorer, names, likelihood=conf is not None) as table:
        for i in range(n):
            table.add(keys[i], pts[i], None if conf is None else conf[i])
    return table.path


class DLCTableWriter:
    """Writes a DeepLabCut table row by row, for outputs that grow with a video (``write_collected_data``
    writes a whole table through it).

    The header rows (``scorer`` / ``bodyparts`` / ``coords``: ``x, y[, likelihood]`` per keypoint) are written
    at once; ``add`` appends one row and nothing is kept in memory. NaN coordinates are written as empty cells
    (both of a keypoint's when either is NaN: never half a keypoint). Use it as a context manager or ``close``.
    """

    def __init__(self, path: str | Path, scorer: str, bodyparts: Sequence[str], likelihood: bool = True) -> None:
        names = [str(b) for b in bodyparts]
        if not scorer or not str(scorer).strip():
            raise ValueError("DeepLabCut table: scorer must be a non-empty name")
        if not names or any(not b.strip() for b in names) or len(set(names)) != len(names):
            raise ValueError(f"DeepLabCut table: bodyparts must be unique non-empty names, got {names}")
        self.path = Path(path)
        self.bodyparts = names
        self.likelihood = likelihood
        self.rows = 0
        coords = _XYL if likelihood else _XY
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "w", newline="")  # noqa: SIM115 - closed by close() / __exit__
        self._writer = csv.writer(self._file, lineterminator="\n")
        self._writer.writerow(["scorer"] + [str(scorer)] * (len(names) * len(coords)))
        self._writer.writerow(["bodyparts"] + [b for b in names for _ in coords])
        self._writer.writerow(["coords"] + list(coords) * len(names))

    def add(self, index: str | int, xy: np.ndarray, likelihood: np.ndarray | None = None) -> None:
        """One row: ``index`` (an image path or a frame number), xy (K, 2) x,y kpreg pixels (NaN = none),
        likelihood (K,) (required when the table has a likelihood column, refused otherwise)."""
        if self._file is None:
            raise ValueError(f"{self.path}: the table is closed")
        k = len(self.bodyparts)
        key = str(index)
        if not key.strip():
            raise ValueError(f"{self.path}: row {self.rows}: the index must be non-empty")
        pts = np.asarray(xy, dtype=np.float64)  # (K, 2) x,y kpreg pixels
        if pts.shape != (k, 2):
            raise ValueError(f"{self.path}: row {key!r}: xy has shape {pts.shape}, expected ({k}, 2)")
        if np.isinf(pts).any():
            raise ValueError(f"{self.path}: row {key!r}: xy holds infinite values")
        if self.likelihood != (likelihood is not None):
            raise ValueError(f"{self.path}: row {key!r}: the table {'has' if self.likelihood else 'has no'} a "
                             "likelihood column")
        conf = None if likelihood is None else np.asarray(likelihood, dtype=np.float64).reshape(-1)  # (K,)
        if conf is not None and conf.shape != (k,):
            raise ValueError(f"{self.path}: row {key!r}: likelihood has shape {conf.shape}, expected ({k},)")
        dlc = pts - DLC_TO_KPREG_SHIFT  # (K, 2) x,y DeepLabCut pixels
        dlc[np.isnan(dlc).any(axis=-1)] = np.nan  # one missing coordinate: the keypoint is missing
        cells = [key]
        for j in range(k):
            cells += [_format(dlc[j, 0]), _format(dlc[j, 1])]
            if conf is not None:
                cells.append(_format(conf[j]))
        self._writer.writerow(cells)
        self.rows += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> DLCTableWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
