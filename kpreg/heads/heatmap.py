"""Gaussian heatmap + arg-max (SimpleBaseline, Xiao et al. 2018 / HRNet, Sun et al. 2019), with the DARK
decoder (Zhang et al., "Distribution-Aware Coordinate Representation for Human Pose Estimation", 2020).

Targets: an unnormalised Gaussian (peak 1) of ``sigma`` *heatmap cells* centred on the exact sub-cell
position of each keypoint (DARK's unbiased encoding). Loss: visibility-weighted MSE. Decoding: arg-max
cell, optionally refined, converted to input pixels.
"""

from __future__ import annotations

from typing import Literal

import torch

from kpreg.coords import cells_to_pixels, pixels_to_cells
from kpreg.heads.neck import NeckKind, SpatialHead, map_spread
from kpreg.losses import heatmap_mse
from kpreg.ops import argmax_2d, at_least_float32, dark_refine, quarter_offset, render_gaussian
from kpreg.validation import check_number

Decoder = Literal["argmax", "quarter", "dark"]
# The stand-in for the arg-max in the unsupervised losses: a local soft-argmax, the centroid of the map's positive part
# within WINDOW_SIGMAS σ of its arg-max cell. A global softmax(map / T) cannot serve: a T small enough to silence the
# thousands of background cells (T ≈ 0.05 for a 64 × 64 map) sharpens the Gaussian to σ·√T ≈ 0.45 cells, whose mean
# sampled on whole cells is pulled 0.18 px (stride 4) towards the nearest cell centre, and a wider one is swamped by the
# background. The centroid of the target sampled on cells is its centre to < 0.01 cell (the window's cut tails).
WINDOW_SIGMAS = 3.0


class HeatmapHead(SpatialHead):
    """Args:
    output_stride, neck, neck_channels: see ``SpatialHead``.
    sigma: Gaussian standard deviation in heatmap cells (2 at stride 4 = SimpleBaseline).
    decoder: ``argmax`` (integer cell), ``quarter`` (¼-cell shift towards the higher neighbour) or ``dark``
        (Gaussian modulation with ``sigma`` then a Newton step on the log heatmap).
    """

    name = "heatmap"
    soft_coords_source = f"local soft-argmax of the heatmap (its centroid within {WINDOW_SIGMAS:g} σ of the arg-max)"
    variants = {
        "heatmap (quarter)": {},
        "heatmap (argmax)": {"decoder": "argmax"},
        "heatmap (DARK)": {"decoder": "dark"},
        "heatmap (DARK, σ = 1)": {"decoder": "dark", "sigma": 1.0},
    }

    def __init__(
        self,
        output_stride: int = 4,
        sigma: float = 2.0,
        neck: NeckKind = "deconv",
        neck_channels: int | None = None,
        decoder: Decoder = "quarter",
    ) -> None:
        super().__init__(output_stride, neck, neck_channels)
        if decoder not in ("argmax", "quarter", "dark"):
            raise ValueError(f"unknown decoder '{decoder}' (choose argmax, quarter or dark)")
        # a Gaussian of no width (or a negative one, which renders the same) is no target to learn
        self.sigma = float(check_number(sigma, "model.head.init_args.sigma", minimum=0.0, above=True))
        self.decoder = decoder

    def targets(self, keypoints: torch.Tensor) -> torch.Tensor:
        """(B, K, 2) x,y input pixels → (B, K, h, w) Gaussian targets."""
        return render_gaussian(pixels_to_cells(keypoints, self.output_stride), self.grid_size, self.sigma)

    def loss(
        self,
        raw: torch.Tensor,
        keypoints: torch.Tensor,
        visibility: torch.Tensor,
        scale: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        return {"heatmap_mse": heatmap_mse(raw.float(), self.targets(keypoints))}  # (B, K)

    def decode(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        heatmaps = raw.float()  # (B, K, h, w)
        cells, maxvals = argmax_2d(heatmaps)  # (B, K, 2) integer cells, (B, K)
        if self.decoder == "quarter":
            cells = quarter_offset(heatmaps, cells)
        elif self.decoder == "dark":
            cells = dark_refine(heatmaps, cells, self.sigma)
        return cells_to_pixels(cells, self.output_stride), maxvals  # (B, K, 2) input pixels

    def round_trip_tolerance(self) -> float:
        # arg-max: an integer cell, at most half a cell per axis; the ¼-cell shift halves that; DARK is exact
        # while the map is large compared with σ, and falls back to the arg-max within 2 cells of the border, which
        # covers most of a 16 × 16 or 8 × 8 map (strides 16, 32 at 256 × 256).
        s = float(self.output_stride)
        if self.decoder == "dark" and self.output_stride <= 8:
            return 1e-3
        return s / 4 + 1e-4 if self.decoder == "quarter" else s / 2 + 1e-4

    def soft_coords(self, raw: torch.Tensor) -> torch.Tensor:
        maps = at_least_float32(raw)  # (B, K, h, w)
        h, w = maps.shape[-2:]
        with torch.no_grad():
            peak, _ = argmax_2d(maps)  # (B, K, 2) integer x,y cells
        radius = WINDOW_SIGMAS * self.sigma
        xs = torch.arange(w, dtype=maps.dtype, device=maps.device)  # (w,) cells
        ys = torch.arange(h, dtype=maps.dtype, device=maps.device)  # (h,)
        inside = (((xs - peak[..., 0:1]).abs() <= radius)[..., None, :]
                  & ((ys - peak[..., 1:2]).abs() <= radius)[..., :, None])  # (B, K, h, w)
        weight = torch.where(inside, maps.clamp(min=0.0), torch.zeros_like(maps))  # (B, K, h, w)
        total = weight.sum((-2, -1))  # (B, K)
        # A map with nothing positive near its peak has no centroid: its arg-max cell (no gradient) stands in.
        ok = total > 1e-6
        safe = torch.where(ok, total, torch.ones_like(total))
        x = torch.where(ok, (weight.sum(-2) * xs).sum(-1) / safe, peak[..., 0])  # (B, K) cells
        y = torch.where(ok, (weight.sum(-1) * ys).sum(-1) / safe, peak[..., 1])
        return cells_to_pixels(torch.stack((x, y), dim=-1), self.output_stride)  # (B, K, 2) input pixels

    def soft_round_trip_tolerance(self) -> float:
        # Where the window fits between the map's borders (keypoints in the central half of the input), the centroid
        # is the centre up to the window's cut tails (< 0.01 cell at 3 σ); on a smaller map the border cuts the
        # Gaussian itself and pulls the centroid inwards by up to the window's radius.
        radius = WINDOW_SIGMAS * self.sigma
        if min(self.grid_size) >= 4 * (radius + 1):
            return 0.01 * self.output_stride
        return radius * self.output_stride

    def ideal_output(self, keypoints: torch.Tensor) -> torch.Tensor:
        return self.targets(keypoints)  # (B, K, h, w): the network is trained to output its targets

    def spread(self, raw: torch.Tensor) -> torch.Tensor:
        # The heatmap is not a distribution; its positive part, normalised, is read as one. A perfect output
        # (the Gaussian target) gives ≈ 2 σ² cells², so the spread ranks joints, not absolute errors.
        maps = raw.float().clamp(min=0.0)  # (B, K, h, w)
        probs = maps / maps.flatten(-2).sum(-1)[..., None, None].clamp(min=1e-12)
        return map_spread(probs, self.output_stride)  # (B, K) input pixels²

    def heatmaps(self, raw: torch.Tensor) -> torch.Tensor:
        return raw.float()
