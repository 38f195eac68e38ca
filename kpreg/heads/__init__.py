"""All heads. Adding a head: one file here, one config, one entry in ``__all__`` (the tests loop over it)."""

from kpreg.heads.base import Head as Head  # the interface, re-exported
from kpreg.heads.base import HeadSpec as HeadSpec
from kpreg.heads.dsnt import DSNTHead
from kpreg.heads.fc import FCHead
from kpreg.heads.heatmap import HeatmapHead
from kpreg.heads.multibin import MultiBinHead
from kpreg.heads.offset import OffsetHead
from kpreg.heads.simcc import SimCCHead
from kpreg.heads.softargmax import SoftArgmaxHead

__all__ = ["FCHead", "HeatmapHead", "SoftArgmaxHead", "DSNTHead", "OffsetHead", "SimCCHead", "MultiBinHead"]
