"""``python suggest.py --predictions P --video V --project DIR --n 20``: the frames of a video worth labelling next.

    python predict.py --ckpt CKPT --input videos/mouse3.mp4 --out out/
    python suggest.py --predictions out/predictions.csv --video videos/mouse3.mp4 --project my_project --n 20

Every frame of the video's predictions table (``predict.py``'s, or DeepLabCut's ``analyze_videos`` table) is scored
by ``kpreg.inference.ranking``: the calibrated P(wrong) of the frame, the distance of its prediction from the
Kalman-smoothed track (a prediction that leaves the track for a frame), the residual of a pose PCA fitted on the
project's labelled poses (a pose unlike any labelled one; left out where the project has fewer than three fully
labelled frames) and, with ``--disagreement FILE`` (the ``disagreement.csv`` that ``predict.py`` writes for an
ensemble, several ``--ckpt``), the members' disagreement — the best of the scores measured. The scores' percentile ranks are averaged; ``n`` frames are picked diverse (k-means on pose
among the best-ranked, ``--min-gap`` frames apart), never a frame the project already has. They are written into
``labeled-data/<video stem>/`` as DeepLabCut extracts frames, with ``CollectedData_<scorer>.csv`` (and ``.h5``)
prefilled with the predictions at least ``--min-confidence`` confident (``kpreg.inference.labelling``): correct them
in DeepLabCut's labelling GUI (napari-deeplabcut) and train again; kpreg reads the new rows with no other step.

What it is worth (docs/video.md): the ranking finds frames the model gets wrong well above chance, but adding 50
suggested frames to a synthetic project helped retraining no more than 50 random ones. Read the suggestions as
"frames to check".

Bad input — a table of another video (its frame count differs), a project of other keypoints, a project folder that
does not exist — is one line and exit code 2; a frame that is in the project already is never overwritten and is
reported.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from rich.console import Console

from kpreg.formats.deeplabcut import DLCFormatError, frame_file_name, read_project
from kpreg.inference import ranking
from kpreg.inference.ensemble import read_disagreement
from kpreg.inference.labelling import SuggestionReport, write_suggestions
from kpreg.inference.smoothing import animal_size, kalman_smooth
from kpreg.inference.sources import open_source
from kpreg.inference.tracks import Track, read_track

DEFAULT_N = 20
DEFAULT_MIN_CONFIDENCE = 0.5  # the prefill: more likely right than wrong for a calibrated model
SMOOTHING_GATE = 0.1  # as predict.py --smooth-gate's default


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="suggest.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--predictions", required=True, help="the video's predictions table (.csv or .h5)")
    parser.add_argument("--video", required=True, help="the video the predictions are of")
    parser.add_argument("--project", required=True, help="the DeepLabCut project folder to add the frames to")
    parser.add_argument("--n", type=int, default=DEFAULT_N, help="frames to suggest")
    parser.add_argument("--disagreement", metavar="FILE",
                        help="an ensemble's disagreement.csv (predict.py with several --ckpt): rank by it as well")
    parser.add_argument("--min-confidence", type=float, default=DEFAULT_MIN_CONFIDENCE,
                        help="prefill the keypoints at least this confident; the others are left to place by hand")
    parser.add_argument("--min-gap", type=int, default=ranking.DEFAULT_MIN_GAP, help="frames between two picks")
    parser.add_argument("--scorer", default=None, help="the table's scorer (default: the project's)")
    parser.add_argument("--seed", type=int, default=0, help="the k-means seed of the diverse pick")
    return parser


def frame_scores(track: Track, project: Path, ensemble_variance: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The (T,) scores of every frame (module docstring); the pose PCA only where the project has labelled poses of
    the track's keypoints; the disagreement with an ensemble's variance (T, K) px² per coordinate."""
    xy, conf = track.keypoints, np.nan_to_num(track.confidence, nan=0.0)  # (T, K, 2), (T, K)
    size = animal_size(xy)
    smoothed = kalman_smooth(xy, conf, SMOOTHING_GATE)
    scores = {"p_wrong": ranking.p_wrong(conf), "jump": ranking.temporal_jump(xy, smoothed.keypoints, size)}
    try:
        labels = read_project(project)
    except DLCFormatError:
        labels = None  # a project without labels yet: no poses to compare with
    if labels is not None and labels.bodyparts == track.bodyparts:
        try:
            pca = ranking.PosePCA(labels.keypoints, labels.labelled)
        except ranking.RankingError:
            pca = None
        if pca is not None:
            scores["pca"] = ranking.pca_residual(xy, pca, size)
    if ensemble_variance is not None:
        scores["disagreement"] = ranking.disagreement(ensemble_variance, size)
    return scores


def _in_project(project: Path, video: Path, frame_count: int) -> np.ndarray:
    """(T,) frames whose image the project has already (``labeled-data/<video stem>/img….png``)."""
    folder = project / "labeled-data" / video.stem
    names = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    return np.array([frame_file_name(f, frame_count) in names for f in range(frame_count)], dtype=bool)


def suggest(args: argparse.Namespace, console: Console) -> SuggestionReport:
    if args.n < 1:
        raise ValueError(f"--n must be at least 1, got {args.n}")
    project, video = Path(args.project), Path(args.video)
    if not project.is_dir():
        raise ValueError(f"{project}: the project folder does not exist")
    source = open_source(video)
    if source.video is None:
        raise ValueError(f"--video {video} is not a video")
    track = read_track(args.predictions, source.video.frame_count)
    frames = track.num_frames
    variance = None
    if args.disagreement:
        variance = read_disagreement(args.disagreement, track.bodyparts, frames)
    scores = frame_scores(track, project, variance)
    combined = ranking.combine(scores)  # (T,)
    seen = np.isfinite(track.keypoints).all(-1).any(-1)  # (T,) frames with a prediction
    exclude = _in_project(project, video, frames) | ~seen
    picks = ranking.pick_diverse(combined, track.keypoints, args.n, animal_size(track.keypoints),
                                 exclude=exclude, seed=args.seed, min_gap=args.min_gap)
    console.print(f"ranked {frames} frame(s) by {', '.join(scores)}; {int(exclude.sum())} excluded (in the project "
                  f"or without a prediction); picked {len(picks)}: {', '.join(str(int(f)) for f in picks)}",
                  highlight=False)
    report = write_suggestions(project, video, picks.tolist(), track.keypoints[picks], track.confidence[picks],
                               track.bodyparts, frames, args.min_confidence, args.scorer)
    console.print(report.summary(), highlight=False)
    return report


# The user's input, not a bug: one line, exit code 2 (TrackError, LabellingError, SourceError … are ValueErrors).
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError)


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    console = Console(soft_wrap=True)
    try:
        suggest(args, console)
    except USER_ERRORS as err:
        if os.environ.get("KPREG_DEBUG"):
            raise
        Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {err}", highlight=False)
        sys.exit(2)
