"""File formats and skeleton constants shared by ``kpreg.data``, ``kpreg.metrics`` and ``kpreg.inference``: every file
kpreg reads or writes is parsed here, once. COCO and MPII files, DeepLabCut / Lightning Pose label tables and project
configs, detections files, ``predictions.json`` (the one predictions schema of ``evaluate.py`` and ``predict.py``),
the COCO keypoint protocol's OKS math, what a dataset declares about its keypoints and evaluation
(``kpreg.formats.layout``), and the JSON / YAML reader under all of them (``kpreg.formats.files``)."""
