#!/usr/bin/env python
"""Predict keypoints on images, folders, globs or videos: python predict.py --ckpt CKPT --input PATH --out DIR"""

from kpreg.cli import predict_main as main

if __name__ == "__main__":
    main()
