"""File formats and skeleton constants shared by ``kpreg.data`` and ``kpreg.metrics`` (which never import each
other): COCO and MPII files, DeepLabCut / Lightning Pose label tables, the COCO keypoint protocol's OKS math, and
what a dataset declares about its keypoints and evaluation (``kpreg.formats.layout``)."""
