"""DeepLabCut 3 peer benchmark steps; runs in the peer virtualenv (``setup.sh``), one step per process.

    python run.py train CONFIG OUT [--epochs N]        train shuffle 1; OUT/train.json: wall time
    python run.py evaluate CONFIG OUT                  evaluate_network on the default and the last snapshot;
                                                       OUT/evaluate.json: DeepLabCut's train / test errors; and
                                                       OUT/heldout_<snapshot>.csv: its predictions on the held-out
                                                       frames (CONFIG's folder/heldout_frames.txt), a DeepLabCut
                                                       table (x, y, likelihood) kpreg's reader and score.py read
    python run.py analyze CONFIG VIDEO OUT [--tag T]   analyze_videos; OUT/analyze[_T].json: wall time, frames/s
    python run.py clip VIDEO OUT_VIDEO --frames N      the first N frames of VIDEO (for short timed runs)
    python run.py random-snapshot CONFIG               save the model's random initialisation as its only snapshot
    python run.py model-speed CONFIG OUT [--tag T]     forward passes alone on video-sized batches (model-only fps)

CONFIG is the project's config.yaml (``make_project.py``); the shuffle is 1, the device the CPU. ``run.sh`` runs
the steps in order under ``/work/bin/cpuslot`` and ``/usr/bin/time -v``.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
from pathlib import Path

import cv2
import deeplabcut
import pandas as pd
import torch
from deeplabcut.core.engine import Engine
from deeplabcut.pose_estimation_pytorch.models.model import PoseModel
from deeplabcut.pose_estimation_pytorch.runners.snapshots import TorchSnapshotManager
from deeplabcut.utils import auxiliaryfunctions

SHUFFLE = 1


def fail(message: str) -> None:
    print(f"run.py: {message}", file=sys.stderr)
    sys.exit(2)


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    print(json.dumps(data, indent=2, default=str))


def model_folder(config: Path) -> Path:
    pose_config = deeplabcut.return_train_network_path(str(config), shuffle=SHUFFLE, trainingsetindex=0,
                                                       engine=Engine.PYTORCH)[0]
    return Path(pose_config).parent


def snapshots(config: Path) -> list:
    """The shuffle's snapshots, by epochs, the best one (DeepLabCut's default choice) last."""
    return TorchSnapshotManager(model_folder=model_folder(config), snapshot_prefix="snapshot").snapshots()


def train(config: Path, out: Path, epochs: int | None) -> None:
    start = time.perf_counter()
    # An ``epochs`` given here is written back into pytorch_config.yaml by DeepLabCut.
    deeplabcut.train_network(str(config), shuffle=SHUFFLE, device="cpu", epochs=epochs)
    wall = time.perf_counter() - start
    pose_cfg = auxiliaryfunctions.read_plainconfig(model_folder(config) / "pytorch_config.yaml")
    write_json(out / "train.json", {"wall_s": wall, "epochs": pose_cfg["train_settings"]["epochs"],
                                    "batch_size": pose_cfg["train_settings"]["batch_size"],
                                    "snapshots": [s.path.name for s in snapshots(config)]})


def heldout_table(predictions: pd.DataFrame, frames: list[str]) -> pd.DataFrame:
    """The held-out rows of an evaluation table, as a single-animal DeepLabCut table (scorer, bodyparts, coords)."""
    table = predictions.copy()
    if "individuals" in table.columns.names:
        table = table.droplevel("individuals", axis=1)
    table.index = ["/".join(key) if isinstance(key, tuple) else str(key) for key in table.index]
    missing = [f for f in frames if f not in table.index]
    if missing:
        fail(f"{len(missing)} held-out frame(s) have no prediction, e.g. {missing[0]!r}")
    return table.loc[frames]


def evaluate(config: Path, out: Path) -> None:
    cfg = auxiliaryfunctions.read_config(config)
    frames = (config.parent / "heldout_frames.txt").read_text().split()
    found = snapshots(config)
    if not found:
        fail(f"no snapshots under {model_folder(config)}: train first")
    chosen = [found[-1]] + [s for s in found[:-1] if not s.best][-1:]  # DeepLabCut's default (best), last epoch
    names = [s.path.stem for s in chosen]
    start = time.perf_counter()
    deeplabcut.evaluate_network(str(config), Shuffles=[SHUFFLE], snapshots_to_evaluate=names, device="cpu")
    wall = time.perf_counter() - start
    results = {}
    folder = config.parent / "evaluation-results-pytorch" / f"iteration-{cfg['iteration']}"
    for snap in chosen:
        uid = f"snapshot_{snap.uid()}"
        (h5,) = folder.glob(f"*/DLC_*shuffle{SHUFFLE}_{uid}.h5")
        (scores,) = folder.glob(f"*/DLC_*shuffle{SHUFFLE}_{uid}-results.csv")
        row = pd.read_csv(scores).iloc[0].to_dict()
        csv = out / f"heldout_{snap.path.stem}.csv"
        csv.parent.mkdir(parents=True, exist_ok=True)
        heldout_table(pd.read_hdf(h5), frames).to_csv(csv)
        results[snap.path.stem] = {
            "deeplabcut_default": snap is chosen[0],
            "epochs": snap.epochs,
            "train_error_px": row["train rmse"],  # DeepLabCut names it RMSE; it is the mean Euclidean error
            "test_error_px": row["test rmse"],
            "pcutoff": row["pcutoff"],
            "train_error_pcutoff_px": row["train rmse_pcutoff"],
            "test_error_pcutoff_px": row["test rmse_pcutoff"],
            "predictions_h5": str(h5),
            "heldout_csv": str(csv),
        }
    write_json(out / "evaluate.json", {"wall_s": wall, "snapshots": results})


def analyze(config: Path, video: Path, out: Path, tag: str) -> None:
    dest = out / (f"video_{tag}" if tag else "video")
    dest.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    deeplabcut.analyze_videos(str(config), [str(video)], shuffle=SHUFFLE, device="cpu", destfolder=str(dest),
                              save_as_csv=True, overwrite=True)
    wall = time.perf_counter() - start
    (meta_path,) = dest.glob(f"{video.stem}DLC_*_meta.pickle")
    meta = pickle.loads(meta_path.read_bytes())["data"]
    frames = int(meta["nframes"])
    write_json(out / (f"analyze_{tag}.json" if tag else "analyze.json"), {
        "video": str(video), "frames": frames, "frame_size_wh": meta["frame_dimensions"],
        "batch_size": meta["batch_size"], "scorer": meta["Scorer"],
        "wall_s": wall, "fps_wall": frames / wall,
        "inference_s": meta["run_duration"], "fps_inference": frames / meta["run_duration"],
    })


def clip(video: Path, out_video: Path, frames: int) -> None:
    reader = cv2.VideoCapture(str(video))
    fps = reader.get(cv2.CAP_PROP_FPS)
    w, h = int(reader.get(cv2.CAP_PROP_FRAME_WIDTH)), int(reader.get(cv2.CAP_PROP_FRAME_HEIGHT))
    out_video.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(out_video), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    n = 0
    while n < frames:
        ok, frame = reader.read()
        if not ok:
            break
        writer.write(frame)
        n += 1
    writer.release()
    print(f"{out_video}: {n} frames of {video} ({w}x{h}, {fps:g} fps)")


def random_snapshot(config: Path) -> None:
    """The random initialisation make_project.py saved, as snapshot 0 (what analyze_videos loads)."""
    folder = model_folder(config)
    init = torch.load(folder / "random_init.pt", map_location="cpu", weights_only=False)
    target = folder / "snapshot-000.pt"
    torch.save({"model": init["model"], "metadata": {"epoch": 0, "metrics": {}, "losses": {}}}, target)
    print(f"{target}: random weights")


def model_speed(config: Path, out: Path, tag: str, iterations: int) -> None:
    """Forward passes of the pose model alone (no decoding, no video reading) on the video's batch and frame size."""
    cfg = auxiliaryfunctions.read_config(config)
    pose_cfg = auxiliaryfunctions.read_plainconfig(model_folder(config) / "pytorch_config.yaml")
    model = PoseModel.build(pose_cfg["model"], pretrained_backbone=False).eval()
    snap = snapshots(config)[-1]
    model.load_state_dict(torch.load(snap.path, map_location="cpu", weights_only=False)["model"])
    batch = int(cfg["batch_size"])
    x = torch.rand(batch, 3, 480, 640)  # (B, 3, H, W) a video batch of 640x480 frames
    with torch.inference_mode():
        model(x)  # warm-up
        start = time.perf_counter()
        for _ in range(iterations):
            model(x)
        wall = time.perf_counter() - start
    frames = iterations * batch
    write_json(out / (f"model_speed_{tag}.json" if tag else "model_speed.json"), {
        "snapshot": snap.path.name, "batch_size": batch, "frame_hw": [480, 640], "frames": frames,
        "wall_s": wall, "fps_model": frames / wall, "torch_threads": torch.get_num_threads(),
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("train")
    p.add_argument("config", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--epochs", type=int, default=None, help="override pytorch_config.yaml's epochs")
    p = sub.add_parser("evaluate")
    p.add_argument("config", type=Path)
    p.add_argument("out", type=Path)
    p = sub.add_parser("analyze")
    p.add_argument("config", type=Path)
    p.add_argument("video", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--tag", default="")
    p = sub.add_parser("clip")
    p.add_argument("video", type=Path)
    p.add_argument("out_video", type=Path)
    p.add_argument("--frames", type=int, required=True)
    p = sub.add_parser("random-snapshot")
    p.add_argument("config", type=Path)
    p = sub.add_parser("model-speed")
    p.add_argument("config", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--tag", default="")
    p.add_argument("--iterations", type=int, default=20)
    args = parser.parse_args()

    config = getattr(args, "config", None)
    if config is not None and not config.is_file():
        fail(f"{config}: no such config.yaml (make it with make_project.py)")
    if args.step == "train":
        train(args.config.resolve(), args.out, args.epochs)
    elif args.step == "evaluate":
        evaluate(args.config.resolve(), args.out)
    elif args.step == "analyze":
        if not args.video.is_file():
            fail(f"{args.video}: no such video")
        analyze(args.config.resolve(), args.video.resolve(), args.out, args.tag)
    elif args.step == "clip":
        clip(args.video, args.out_video, args.frames)
    elif args.step == "random-snapshot":
        random_snapshot(args.config.resolve())
    else:
        model_speed(args.config.resolve(), args.out, args.tag, args.iterations)


if __name__ == "__main__":
    main()
