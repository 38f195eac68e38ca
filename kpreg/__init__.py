"""kpreg: keypoint estimation with interchangeable coordinate heads."""

__version__ = "0.1.0"
