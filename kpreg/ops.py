"""Pure tensor math shared by the heads: target rendering and coordinate read-out.

Every function is stateless and works on any device and batch shape. Coordinates follow
``kpreg.coords``: heatmap functions take and return *cell* coordinates ``(x, y)`` of the grid they are
given; the heads convert cells ↔ input pixels with ``kpreg.coords``.
"""

from __future__ import annotations

import torch


def render_gaussian(centers: torch.Tensor, size: tuple[int, int], sigma: float) -> torch.Tensor:
    """Unnormalised Gaussians (peak 1 at the sub-cell centre) on an ``(h, w)`` grid.

    centers: (..., 2) x,y cell coordinates (need not be integers: the target is exact, not rounded).
    returns: (..., h, w) float32, ``exp(-((x - cx)² + (y - cy)²) / (2 σ²))``.
    """
    h, w = size
    centers = centers.float()
    xs = torch.arange(w, dtype=torch.float32, device=centers.device)  # (w,)
    ys = torch.arange(h, dtype=torch.float32, device=centers.device)  # (h,)
    dx2 = (xs - centers[..., 0:1]) ** 2  # (..., w)
    dy2 = (ys - centers[..., 1:2]) ** 2  # (..., h)
    # Separable: exp(-(dx²+dy²)/2σ²) = exp(-dy²/2σ²) ⊗ exp(-dx²/2σ²), cheaper than a full (h, w) grid op.
    gx = torch.exp(-dx2 / (2.0 * sigma**2))  # (..., w)
    gy = torch.exp(-dy2 / (2.0 * sigma**2))  # (..., h)
    return gy[..., :, None] * gx[..., None, :]  # (..., h, w)


def argmax_2d(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer arg-max of each map.

    heatmaps: (..., h, w).  returns: coords (..., 2) x,y cell coordinates (float), maxvals (...).
    Ties go to the first maximum in row-major order (torch.max's rule).
    """
    h, w = heatmaps.shape[-2:]
    maxvals, flat_idx = heatmaps.flatten(-2).max(dim=-1)  # (...), (...)
    x = (flat_idx % w).to(heatmaps.dtype)
    y = torch.div(flat_idx, w, rounding_mode="floor").to(heatmaps.dtype)
    return torch.stack((x, y), dim=-1), maxvals


def gather_2d(maps: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """Values of (..., C, h, w) ``maps`` at integer (..., 2) x,y ``cells`` → (..., C)."""
    h, w = maps.shape[-2:]
    x = cells[..., 0].long().clamp(0, w - 1)
    y = cells[..., 1].long().clamp(0, h - 1)
    flat = maps.flatten(-2)  # (..., C, h*w)
    idx = (y * w + x)[..., None, None].expand(*flat.shape[:-1], 1)  # (..., C, 1)
    return flat.gather(-1, idx).squeeze(-1)


def quarter_offset(heatmaps: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """The classic quarter-cell shift of an arg-max towards the higher neighbour (Newell et al., HRNet).

    heatmaps: (..., h, w); cells: (..., 2) integer x,y arg-max cells.  returns (..., 2) refined cells.
    At the border (no neighbour on one side) the coordinate is left unchanged.
    """
    h, w = heatmaps.shape[-2:]
    x, y = cells[..., 0].long(), cells[..., 1].long()
    flat = heatmaps.flatten(-2)

    def at(xx: torch.Tensor, yy: torch.Tensor) -> torch.Tensor:
        idx = (yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)).unsqueeze(-1)
        return flat.gather(-1, idx).squeeze(-1)

    inside_x = (x > 0) & (x < w - 1)
    inside_y = (y > 0) & (y < h - 1)
    dx = torch.sign(at(x + 1, y) - at(x - 1, y)) * inside_x
    dy = torch.sign(at(x, y + 1) - at(x, y - 1)) * inside_y
    return cells + 0.25 * torch.stack((dx, dy), dim=-1).to(cells.dtype)
