#!/usr/bin/env python
"""The frames of a video worth labelling next, into a DeepLabCut project:
python suggest.py --predictions out/predictions.csv --video VIDEO --project DIR --n 20"""

from kpreg.cli import suggest_main as main

if __name__ == "__main__":
    main()
