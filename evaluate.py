#!/usr/bin/env python
"""Evaluate a checkpoint, or score a saved predictions file (python evaluate.py score ...)."""

from kpreg.cli import evaluate_main

if __name__ == "__main__":
    evaluate_main()
