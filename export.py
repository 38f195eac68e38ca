#!/usr/bin/env python
"""Export a checkpoint to ONNX or TorchScript: python export.py --ckpt CKPT --format onnx --out model.onnx"""

from kpreg.cli import export_main as main

if __name__ == "__main__":
    main()
