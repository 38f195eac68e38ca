#!/usr/bin/env python
"""Run a head comparison study, or report one: see ``docs/study.md`` and ``kpreg.compare.study``."""

import sys

from kpreg.cli import study_main

if __name__ == "__main__":
    sys.exit(study_main())
