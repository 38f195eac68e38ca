"""All heads. Adding a head: one file here, one config, one entry in ``__all__``."""

from kpreg.heads.base import Head as Head  # the interface, re-exported
from kpreg.heads.base import HeadSpec as HeadSpec
from kpreg.heads.heatmap import HeatmapHead

__all__ = ["HeatmapHead"]
