"""All heads. Adding a head: one file here, its part ``configs/heads/<name>.yaml``, one entry in ``__all__`` — the
head suite, the config suite, the benchmarks and the round-trip table loop over ``__all__``."""

from kpreg.heads.anchor_pose import AnchorPoseHead
from kpreg.heads.base import Head as Head  # the interface, re-exported
from kpreg.heads.base import HeadSpec as HeadSpec
from kpreg.heads.dsnt import DSNTHead
from kpreg.heads.fc import FCHead
from kpreg.heads.heatmap import HeatmapHead
from kpreg.heads.multibin import MultiBinHead
from kpreg.heads.offset import OffsetHead
from kpreg.heads.rle import RLEHead
from kpreg.heads.simcc import SimCCHead
from kpreg.heads.softargmax import SoftArgmaxHead

__all__ = ["FCHead", "HeatmapHead", "SoftArgmaxHead", "DSNTHead", "OffsetHead", "SimCCHead", "MultiBinHead",
           "RLEHead", "AnchorPoseHead"]
