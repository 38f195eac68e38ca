"""``kpreg.ops.dark_refine`` takes Newton steps of at most one cell (fold into tests/test_ops.py)."""

from __future__ import annotations

import torch

from kpreg.ops import dark_refine, render_gaussian


def test_dark_keeps_the_argmax_when_the_step_is_longer_than_a_cell() -> None:
    # A broad Gaussian stays Gaussian after DARK's blur, so the Newton step lands on its centre exactly:
    # from a cell 0.4 away it is taken, from a cell 8 away (a far, flat flank) the arg-max cell is kept.
    maps = render_gaussian(torch.tensor([[20.4, 30.0]]), (64, 64), sigma=6.0)  # (1, 64, 64)
    near = dark_refine(maps, torch.tensor([[20.0, 30.0]]), sigma=2.0)
    far = dark_refine(maps, torch.tensor([[12.0, 30.0]]), sigma=2.0)
    torch.testing.assert_close(near, torch.tensor([[20.4, 30.0]]), atol=1e-3, rtol=0)
    assert far.tolist() == [[12.0, 30.0]]
