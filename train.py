#!/usr/bin/env python
"""Train a keypoint model: python train.py --config configs/synthetic/heatmap.yaml"""

from kpreg.cli import train_main

if __name__ == "__main__":
    train_main()
