#!/usr/bin/env python
"""Predict keypoints on images, folders, globs or videos: python predict.py --ckpt CKPT --input PATH --out DIR"""

from kpreg.cli.predict import main

if __name__ == "__main__":
    main()
