#!/usr/bin/env python
"""Export a checkpoint to ONNX or TorchScript: python export.py --ckpt CKPT --format onnx --out model.onnx"""

from kpreg.cli.export import main

if __name__ == "__main__":
    main()
