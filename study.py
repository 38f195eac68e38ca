#!/usr/bin/env python
"""Run a head comparison study, or report one: see ``docs/study.md`` and ``kpreg.study``."""

import sys

from kpreg.study import main

if __name__ == "__main__":
    sys.exit(main())
