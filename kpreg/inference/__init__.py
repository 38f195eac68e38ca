"""Using a trained model: frames in (images, folders, globs, videos), boxes per frame, crops, an exportable
model (ONNX / TorchScript), drawn frames and result files out.

The parts here do not depend on the checkpoint format; the predictor and the ``predict.py`` / ``export.py``
entry points wire them together:

* ``sources``  — ``open_source(path)``: a streaming iterator of ``Frame(index, name, image)`` with a report
  of skipped files, conversions and video faults; decoding runs in a background thread (``prefetch``).
* ``boxes``    — the boxes of a frame: the whole frame, or a detections file (COCO JSON or per-frame CSV).
* ``crops``    — box → network input crop and back, with the evaluation pipeline's exact geometry.
* ``export``   — ``InferenceModel`` (backbone + head + decode, optional flip test in the graph),
  ``export_onnx``, ``export_torchscript`` and ``parity``.
* ``render``   — predictions drawn on a frame (skeleton, confidence threshold).
* ``writers``  — a streaming MP4 writer and a COCO keypoint-results ``predictions.json`` writer.
"""
