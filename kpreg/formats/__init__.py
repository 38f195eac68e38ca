"""File formats: readers, validators and writers of keypoint label files (COCO, MPII, DeepLabCut)."""
