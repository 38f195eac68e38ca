"""Using a trained model: frames in (images, folders, globs, videos), boxes per frame, crops, an exportable
model (ONNX / TorchScript), drawn frames and result files out.

The parts, in the order of the data flow:

* ``sources``  — ``open_source(path)``: a streaming iterator of ``Frame(index, name, image)`` with a report
  of skipped files, conversions and video faults; decoding runs in a background thread (``prefetch``).
* ``images``   — what the Python API accepts (NumPy / tensors, gray, 16-bit, float) → (H, W, 3) uint8 RGB.
* ``boxes``    — the boxes of a frame: the whole frame, or a detections file (``kpreg.formats.detections``).
* ``crops``    — box → network input crop and back, with the evaluation pipeline's exact geometry.
* ``export``   — ``export_onnx`` and ``export_torchscript`` of the ``KeypointNetwork`` (``kpreg.network``: backbone
  + head + decode, the flip test and the calibration in the graph), and ``parity``.
* ``model_info`` — ``ModelInfo``: keypoints, skeleton, input size, normalisation, calibration; read from a
  checkpoint's record or an exported file's metadata, written into exported files.
* ``rebuild``  — a checkpoint's ``KeypointNetwork`` rebuilt from the checkpoint alone (no config, no Lightning).
* ``runtimes`` — the backends running the network: PyTorch, ONNX Runtime, TorchScript.
* ``confidence`` — what the reported confidence means (the calibration runs in the graph: ``export``).
* ``predictor`` — ``Predictor`` / ``load``: the steps above for images (``predict``) and streams (``stream``).
* ``render``   — predictions drawn on a frame (skeleton, confidence threshold).
* ``writers``  — a streaming MP4 writer and the ``predictions.json`` writer (``kpreg.formats.predictions``) with
  DeepLabCut's ``pcutoff``.

``predict.py`` and ``export.py`` (``kpreg.cli.predict``, ``kpreg.cli.export``) wire them together.
"""
