"""Drawing keypoints for people: ground truth vs prediction with the skeleton, optional heatmap overlay.

Used by the wandb image panels (``kpreg.training.run_logging``) and the study report (``kpreg.compare.report``). Matplotlib's
object API with the Agg canvas only: no pyplot global state, no display needed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib import patheffects
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

GT_COLOR = "#2ecc40"  # green, dashed: ground truth
PRED_COLOR = "#ff4136"  # red, solid: prediction


def new_figure(width_in: float, height_in: float, dpi: int = 100) -> Figure:
    """A figure attached to an Agg canvas (renders off-screen, thread- and backend-independent)."""
    fig = Figure(figsize=(width_in, height_in), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def figure_to_array(fig: Figure) -> np.ndarray:
    """Render ``fig`` → (H, W, 3) uint8 RGB."""
    canvas = fig.canvas
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()  # type: ignore[attr-defined]


def draw_pose(
    ax: Axes,
    image: np.ndarray,
    skeleton: Sequence[Sequence[int]],
    gt: np.ndarray | None = None,
    pred: np.ndarray | None = None,
    heatmap: np.ndarray | None = None,
    title: str | None = None,
) -> None:
    """Draw on ``ax``: ``image`` (H, W, 3) uint8, ``gt`` / ``pred`` (K, 2) x,y pixels of ``image`` (NaN rows
    are skipped), ``heatmap`` (h, w) any scale, stretched over the image (cell centres on pixel centres)."""
    h, w = image.shape[:2]
    if heatmap is not None:  # a grey image under the heatmap, so that the colours are the heatmap's alone
        grey = image.astype(np.float32).mean(axis=2).astype(np.uint8)
        image = np.repeat(grey[..., None], 3, axis=2)
    ax.imshow(image, interpolation="nearest", extent=(-0.5, w - 0.5, h - 0.5, -0.5))
    if heatmap is not None:
        hm = np.asarray(heatmap, dtype=np.float64)
        span = hm.max() - hm.min()
        hm = (hm - hm.min()) / span if span > 0 else np.zeros_like(hm)
        ax.imshow(hm, cmap="magma", alpha=0.6, interpolation="bilinear", extent=(-0.5, w - 0.5, h - 0.5, -0.5))
    lw = max(1.0, min(w, h) / 64.0)  # thin on tiny thumbnails, visible on large ones
    # A dark outline keeps the lines readable on any background (the synthetic images are very colourful).
    outline = [patheffects.Stroke(linewidth=lw + 1.5, foreground="black"), patheffects.Normal()]
    for points, color, style, marker in ((gt, GT_COLOR, "--", "o"), (pred, PRED_COLOR, "-", "x")):
        if points is None:
            continue
        pts = np.asarray(points, dtype=np.float64)  # (K, 2) x,y image pixels
        for a, b in skeleton:
            seg = pts[[a, b]]
            if np.isfinite(seg).all():
                ax.plot(seg[:, 0], seg[:, 1], style, color=color, linewidth=lw, path_effects=outline)
        ok = np.isfinite(pts).all(axis=1)
        ax.plot(pts[ok, 0], pts[ok, 1], marker, color=color, markersize=3 * lw, markeredgewidth=lw,
                linestyle="none", path_effects=outline)
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)


def add_pose_legend(fig: Figure, heatmap: bool = False) -> None:
    """A one-line legend at the bottom of ``fig`` explaining the colours of ``draw_pose``."""
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], color=GT_COLOR, linestyle="--", marker="o", label="ground truth"),
        Line2D([], [], color=PRED_COLOR, linestyle="-", marker="x", label="prediction"),
    ]
    if heatmap:
        handles.append(Line2D([], [], color="#fcb316", linewidth=6, label="summed predicted heatmap"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False, fontsize=9)
