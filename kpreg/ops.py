"""Pure tensor math shared by the heads: target rendering and coordinate read-out.

Every function is stateless and works on any device and batch shape. Coordinates follow
``kpreg.coords``: heatmap functions take and return *cell* coordinates ``(x, y)`` of the grid they are
given; the heads convert cells ↔ input pixels with ``kpreg.coords``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def at_least_float32(t: torch.Tensor) -> torch.Tensor:
    """Half / bfloat16 (autocast) → float32, float64 kept: the math runs in float32 under mixed precision,
    and in float64 for ``gradcheck``."""
    return t if t.dtype == torch.float64 else t.float()


def render_gaussian(centers: torch.Tensor, size: tuple[int, int], sigma: float) -> torch.Tensor:
    """Unnormalised Gaussians (peak 1 at the sub-cell centre) on an ``(h, w)`` grid.

    centers: (..., 2) x,y cell coordinates (need not be integers: the target is exact, not rounded).
    returns: (..., h, w) float32 (float64 for float64 input), ``exp(-((x - cx)² + (y - cy)²) / (2 σ²))``.
    """
    h, w = size
    centers = at_least_float32(centers)
    xs = torch.arange(w, dtype=centers.dtype, device=centers.device)  # (w,)
    ys = torch.arange(h, dtype=centers.dtype, device=centers.device)  # (h,)
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


# ----------------------------------------------------------------------------------------------------
# DARK: distribution-aware refinement of an arg-max (Zhang et al., CVPR 2020)
# ----------------------------------------------------------------------------------------------------
def gaussian_kernel_1d(sigma: float, radius: int | None = None, device: torch.device | None = None) -> torch.Tensor:
    """(2r + 1,) normalised sampled Gaussian of ``sigma`` cells; ``r = ceil(3 σ)`` unless given."""
    r = int(math.ceil(3.0 * sigma)) if radius is None else radius
    xs = torch.arange(-r, r + 1, dtype=torch.float32, device=device)  # (2r+1,)
    k = torch.exp(-(xs**2) / (2.0 * sigma**2))
    return k / k.sum()


def dark_modulate(heatmaps: torch.Tensor, sigma: float) -> torch.Tensor:
    """DARK's distribution modulation: smooth each map with a Gaussian of ``sigma`` cells (zero padding,
    as the paper's ``cv2.GaussianBlur`` on a zero-padded map) and rescale it to keep its original maximum.

    heatmaps: (..., h, w) → (..., h, w). Smoothing turns a multi-peaked, noisy network output back into
    something close to a Gaussian, whose log the Taylor step assumes is quadratic.
    """
    shape = heatmaps.shape
    h, w = shape[-2:]
    maps = at_least_float32(heatmaps.reshape(-1, 1, h, w))  # (N, 1, h, w)
    k = gaussian_kernel_1d(sigma, device=maps.device).to(maps.dtype)  # (2r+1,)
    r = (k.numel() - 1) // 2
    # Separable blur: a row pass then a column pass (same result as the 2-D kernel, cheaper).
    blurred = F.conv2d(maps, k.view(1, 1, 1, -1), padding=(0, r))  # (N, 1, h, w)
    blurred = F.conv2d(blurred, k.view(1, 1, -1, 1), padding=(r, 0))  # (N, 1, h, w)
    old_max = maps.flatten(1).amax(dim=1).view(-1, 1, 1, 1)  # (N, 1, 1, 1)
    new_max = blurred.flatten(1).amax(dim=1).view(-1, 1, 1, 1)
    # Guard all-zero / all-negative maps: the scale is only meaningful for a positive peak.
    scale = torch.where(new_max > 0, old_max / new_max.clamp(min=1e-12), torch.ones_like(new_max))
    return (blurred * scale).reshape(shape)


def dark_refine(heatmaps: torch.Tensor, cells: torch.Tensor, sigma: float) -> torch.Tensor:
    """DARK sub-pixel refinement: Newton step on the log of the modulated heatmap at the arg-max.

    heatmaps: (..., h, w) raw maps; cells: (..., 2) integer x,y arg-max cells (of the *raw* maps, as in
    the reference implementation). returns (..., 2) refined x,y cells.

    With ``P = log(max(modulated, 1e-10))``, the offset is ``-H⁻¹ ∇P`` where the gradient uses central
    differences (step 1) and the Hessian the paper's step-2 differences. It is exact when ``P`` is
    quadratic, i.e. when the modulated map is a Gaussian. Cells within 2 of the border (the stencil does
    not fit), points where the Hessian is not negative definite (not a maximum: a Newton step would
    run away) and steps longer than one cell in x or y keep the integer arg-max.
    """
    h, w = heatmaps.shape[-2:]
    logp = dark_modulate(heatmaps, sigma).clamp(min=1e-10).log()  # (..., h, w)
    flat = logp.flatten(-2)  # (..., h*w)
    x, y = cells[..., 0].long(), cells[..., 1].long()  # (...)

    def at(dx: int, dy: int) -> torch.Tensor:
        idx = ((y + dy).clamp(0, h - 1) * w + (x + dx).clamp(0, w - 1)).unsqueeze(-1)
        return flat.gather(-1, idx).squeeze(-1)  # (...)

    c = at(0, 0)
    gx = 0.5 * (at(1, 0) - at(-1, 0))
    gy = 0.5 * (at(0, 1) - at(0, -1))
    hxx = 0.25 * (at(2, 0) - 2.0 * c + at(-2, 0))
    hyy = 0.25 * (at(0, 2) - 2.0 * c + at(0, -2))
    hxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
    det = hxx * hyy - hxy**2
    inside = (x >= 2) & (x <= w - 3) & (y >= 2) & (y <= h - 3)
    valid = inside & (det > 1e-12) & (hxx < 0)
    safe_det = torch.where(valid, det, torch.ones_like(det))
    # -H⁻¹ g with the closed-form 2×2 inverse.
    off_x = -(hyy * gx - hxy * gy) / safe_det
    off_y = -(-hxy * gx + hxx * gy) / safe_det
    # A longer step leaves the stencil's neighbourhood: the quadratic model does not describe the map there.
    # On flat or noisy maps (an untrained network's) the unbounded step went up to 25 cells, outside the
    # input, and amplified float rounding enough that ONNX Runtime and PyTorch differed by 0.46 px.
    valid = valid & (off_x.abs() <= 1.0) & (off_y.abs() <= 1.0)
    offset = torch.stack((off_x, off_y), dim=-1) * valid.unsqueeze(-1)  # (..., 2)
    return cells + offset.to(cells.dtype)


# ----------------------------------------------------------------------------------------------------
# Soft-argmax / DSNT: a probability map per joint and its expectation
# ----------------------------------------------------------------------------------------------------
def softmax_2d(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Flat softmax over the last two dims: (..., h, w) logits → (..., h, w) float32 probabilities.

    Computed in float32 whatever the input dtype: under bf16 autocast a bf16 softmax over 4096 cells loses
    the small probabilities that the expectation (and the JS regulariser's log) depend on.
    """
    shape = logits.shape
    probs = torch.softmax(at_least_float32(logits).flatten(-2) / temperature, dim=-1)  # (..., h*w)
    return probs.view(shape)


def normalized_linspace(
    length: int, device: torch.device | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """(length,) normalised coordinates of the cell centres: ``(2j + 1) / length - 1`` (kpreg.coords)."""
    return (2.0 * torch.arange(length, dtype=dtype, device=device) + 1.0) / length - 1.0


def expectation_2d(probs: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """E[(x, y)] under (..., h, w) ``probs`` with column coordinates ``xs`` (w,) and row coordinates
    ``ys`` (h,). returns (..., 2). Marginalise first: two small dot products instead of an (h, w) grid."""
    px = probs.sum(dim=-2)  # (..., w) marginal over rows
    py = probs.sum(dim=-1)  # (..., h) marginal over columns
    return torch.stack(((px * xs).sum(-1), (py * ys).sum(-1)), dim=-1)  # (..., 2)


def soft_argmax(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Integral regression (Sun et al. 2018): (..., h, w) logits → (..., 2) expected x,y *cell* coordinates."""
    h, w = logits.shape[-2:]
    probs = softmax_2d(logits, temperature)  # (..., h, w)
    xs = torch.arange(w, dtype=probs.dtype, device=logits.device)  # (w,) cell indices
    ys = torch.arange(h, dtype=probs.dtype, device=logits.device)  # (h,)
    return expectation_2d(probs, xs, ys)


def dsnt(probs: torch.Tensor) -> torch.Tensor:
    """DSNT (Nibali et al. 2018): (..., h, w) probabilities → (..., 2) expected x,y *normalised* coordinates,
    cell ``j`` of ``w`` sitting at ``(2j + 1) / w - 1`` (dsntnn's and ``kpreg.coords``' convention)."""
    h, w = probs.shape[-2:]
    probs = at_least_float32(probs)
    xs = normalized_linspace(w, probs.device, probs.dtype)  # (w,)
    ys = normalized_linspace(h, probs.device, probs.dtype)  # (h,)
    return expectation_2d(probs, xs, ys)


def variance_2d(probs: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """(Var[x], Var[y]) under (..., h, w) ``probs`` with coordinates ``xs`` (w,), ``ys`` (h,) → (..., 2).

    Uses E[(x - E[x])²] (not E[x²] - E[x]², which cancels catastrophically for a peaked map)."""
    mu = expectation_2d(probs, xs, ys)  # (..., 2)
    px = probs.sum(dim=-2)  # (..., w)
    py = probs.sum(dim=-1)  # (..., h)
    var_x = (px * (xs - mu[..., 0:1]) ** 2).sum(-1)
    var_y = (py * (ys - mu[..., 1:2]) ** 2).sum(-1)
    return torch.stack((var_x, var_y), dim=-1)


def bilinear_splat(centers: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The distribution on the 2×2 cells around each sub-cell centre with bilinear weights.

    centers: (..., 2) x,y cell coordinates inside ``[0, w - 1] × [0, h - 1]``. returns (..., h, w)
    probabilities whose expectation over the cell grid is *exactly* the centre: the ideal output of an
    expectation-based head (used by round-trip tests and benchmarks).
    """
    h, w = size
    c = at_least_float32(centers)
    xs = torch.arange(w, dtype=c.dtype, device=c.device)  # (w,)
    ys = torch.arange(h, dtype=c.dtype, device=c.device)  # (h,)
    # The hat function max(0, 1 - |x - cx|) is the 1-D bilinear weight; it sums to 1 over the grid.
    wx = (1.0 - (xs - c[..., 0:1]).abs()).clamp(min=0.0)  # (..., w)
    wy = (1.0 - (ys - c[..., 1:2]).abs()).clamp(min=0.0)  # (..., h)
    return wy[..., :, None] * wx[..., None, :]  # (..., h, w)


# ----------------------------------------------------------------------------------------------------
# Heatmap + offset (DeepLabCut location refinement / UDP combined target)
# ----------------------------------------------------------------------------------------------------
def disk_and_offsets(
    centers: torch.Tensor, size: tuple[int, int], radius: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Binary disk of ``radius`` cells around each sub-cell centre, and the offset from every cell to it.

    centers: (..., 2) x,y cell coordinates. returns mask (..., h, w) in {0, 1} and
    offsets (..., 2, h, w) = centre - cell, in cells (x then y).
    """
    h, w = size
    c = at_least_float32(centers)
    xs = torch.arange(w, dtype=c.dtype, device=c.device)  # (w,)
    ys = torch.arange(h, dtype=c.dtype, device=c.device)  # (h,)
    dx = c[..., 0:1] - xs  # (..., w)
    dy = c[..., 1:2] - ys  # (..., h)
    ox = dx[..., None, :].expand(*dx.shape[:-1], h, w)  # (..., h, w)
    oy = dy[..., :, None].expand(*dy.shape[:-1], h, w)  # (..., h, w)
    mask = ((ox**2 + oy**2) <= radius**2).to(c.dtype)  # (..., h, w)
    return mask, torch.stack((ox, oy), dim=-3)  # (..., h, w), (..., 2, h, w)


# ----------------------------------------------------------------------------------------------------
# 1-D distributions over bins (SimCC, multi-bin, distribution focal loss)
# ----------------------------------------------------------------------------------------------------
def hat_1d(centers: torch.Tensor, length: int) -> torch.Tensor:
    """The 1-D bilinear ("hat") distribution: mass split between the two bins around each sub-bin centre in
    proportion to closeness.

    centers: (...) bin coordinates inside ``[0, length - 1]``. returns (..., length) probabilities whose
    expectation over the bin indices is *exactly* the centre. It is GFL's distribution-focal-loss target
    and the ideal output of an expectation decoder.
    """
    c = at_least_float32(centers)
    bins = torch.arange(length, dtype=c.dtype, device=c.device)  # (length,)
    return (1.0 - (bins - c[..., None]).abs()).clamp(min=0.0)  # (..., length)


def normalized_gaussian_1d(centers: torch.Tensor, length: int, sigma: float) -> torch.Tensor:
    """(...) sub-bin centres → (..., length) sampled Gaussians of ``sigma`` bins, summing to 1 (SimCC's
    smoothed 1-D label, normalised so that it is a distribution for the KL loss)."""
    c = at_least_float32(centers)
    bins = torch.arange(length, dtype=c.dtype, device=c.device)  # (length,)
    g = torch.exp(-((bins - c[..., None]) ** 2) / (2.0 * sigma**2))  # (..., length)
    return g / g.sum(-1, keepdim=True).clamp(min=1e-24)


def expectation_1d(probs: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """E[position] under (..., n) ``probs`` with (n,) or (..., n) ``positions`` → (...)."""
    return (probs * positions).sum(-1)


def variance_1d(probs: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Var[position] under (..., n) ``probs`` → (...), as E[(p - E[p])²] (no cancellation when peaked)."""
    mu = expectation_1d(probs, positions)  # (...)
    return (probs * (positions - mu[..., None]) ** 2).sum(-1)
