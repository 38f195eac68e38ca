#!/usr/bin/env python
"""Train a keypoint model: python train.py --config configs/data/synthetic.yaml --config configs/heads/heatmap.yaml"""

from kpreg.cli import train_main

if __name__ == "__main__":
    train_main()
