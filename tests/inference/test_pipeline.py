"""The parts wired as the predictor will wire them: video → boxes → crops → model → frame → files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from testkit.media import write_video

from kpreg.backbone import Backbone
from kpreg.formats.oks import instance_score
from kpreg.heads import HeadSpec, HeatmapHead
from kpreg.inference.boxes import BoxSelector, load_detections
from kpreg.inference.crops import Cropper, crops_to_batch, to_original
from kpreg.inference.render import draw_predictions
from kpreg.inference.sources import open_source
from kpreg.inference.writers import PredictionsWriter, VideoWriter
from kpreg.network import KeypointNetwork


def test_video_with_detections_to_drawn_video_and_predictions(tmp_path: Path) -> None:
    backbone = Backbone("test_resnet")
    head = HeatmapHead(neck_channels=8)
    head.build(HeadSpec(backbone.channels, backbone.stride, 3, (32, 32)))
    model = KeypointNetwork(backbone, head, flip_pairs=[(0, 1)], flip_test=True).eval()
    source = open_source(write_video(tmp_path / "clip.avi", 4, "MJPG"))
    (tmp_path / "d.csv").write_text("frame,x,y,w,h,score\n0,5,5,20,30,0.9\n0,30,10,20,30,0.8\n2,0,0,64,48,1\n")
    select = BoxSelector(source, load_detections(tmp_path / "d.csv"))
    cropper = Cropper(model.input_size)
    assert source.video is not None and source.video.fps is not None
    with VideoWriter(tmp_path / "drawn.mp4", source.video.fps) as video, \
            PredictionsWriter(tmp_path / "predictions.json") as predictions:
        for frame in source:
            boxes = select(frame)
            keypoints, confidence = np.zeros((0, 3, 2)), np.zeros((0, 3))
            if boxes:
                crops = [cropper(frame.image, box) for box in boxes]
                with torch.no_grad():
                    coords, conf = model(crops_to_batch(crops))  # (N, 3, 2) input pixels, (N, 3)
                keypoints, confidence = to_original(coords, crops), conf.numpy()  # (N, 3, 2) frame pixels
                scores = instance_score(confidence, np.array([b.score for b in boxes]))
                for n in range(len(boxes)):
                    predictions.add(frame.index, keypoints[n], confidence[n], scores[n], "clip.avi", frame.index)
            video.write(draw_predictions(frame.image, keypoints, confidence, [(0, 1), (1, 2)], min_confidence=0.0,
                                         boxes=boxes))
    assert select.finish() is not None and source.report.fault is None
    entries = json.loads((tmp_path / "predictions.json").read_text())
    assert [(e["frame_index"], e["file_name"]) for e in entries] == [(0, "clip.avi"), (0, "clip.avi"), (2, "clip.avi")]
    # The first box (5, 5, 20, 30) grown to the input's aspect 1 and padded 1.25 is 37.5 px square around
    # its centre (14.5, 19.5): its keypoints lie in x ∈ [-4.25, 33.25], y ∈ [0.75, 38.25] of the frame.
    first = np.array(entries[0]["keypoints"]).reshape(3, 3)[:, :2]  # (3, 2) frame pixels
    assert (first >= [-4.25, 0.75]).all() and (first <= [33.25, 38.25]).all()
    drawn = open_source(tmp_path / "drawn.mp4")
    assert drawn.video is not None and drawn.video.frame_count == 4
