"""Residual log-likelihood estimation (RLE; Li, Bian, Liu, Zhang, Wang & Lu, "Human Pose Regression with
Residual Log-likelihood Estimation", ICCV 2021).

Like ``FCHead`` (global pool → Linear-BN-ReLU → Linear), but per keypoint and axis the head regresses a mean
``μ`` and a scale ``σ``, and is trained by maximum likelihood under a *learned* residual density. In
normalised coordinates ``u`` (``kpreg.coords``; ``σ = sigmoid(s)`` ∈ (0, 1), at most half the input)::

    x̄ = (u − μ) / σ                                         (B, K, 2) normalised residual
    −log P(u) = −log G_φ(x̄) − log Q(x̄) + log σ_x + log σ_y   (up to RLE's constant log s)

``G_φ`` is a RealNVP flow on 2-D residuals shared by all keypoints (RLE: 3 pairs of affine couplings with
64-unit MLPs, a standard normal base) and ``Q`` a fixed prior: the "residual" variant, ``prior = laplace``
(RLE's default) or ``gaussian``, of scale ``prior_scale`` in units of ``σ``; ``prior = none`` drops it. The
flow then only learns the ratio between the true residual density and ``Q``, which is what makes the
estimator "residual". The loss terms (B, K) are exactly these three negative log densities.

``μ`` is output standardised by the training set's per-keypoint mean and std (set by ``fit``; FC's reason:
one learning rate fits every keypoint, and the head starts at the mean pose). The standardisation is a
reparametrisation only: the likelihood is that of ``u``, so ``σ`` is in normalised units either way.

Decode: ``μ`` (the mode and, for a symmetric density, the mean). Confidence: RLE's and mmpose's
``1 − (σ_x + σ_y) / 2`` ∈ (0, 1). Spread: ``(σ_x W/2)² + (σ_y H/2)²`` input px²; the residual density has one
shape for all predictions, so this is the variance up to one shared factor, and ranks the same way.

``mean_loss: oks`` trains μ on the OKS loss instead (``kpreg.heads.oks_option``, in input pixels, with the
dataset's OKS sigmas and the batch's scale) and the likelihood on a *detached* μ: the likelihood then learns only σ and the flow,
i.e. the density of the residuals that the OKS-trained mean leaves, and the mean is trained by the OKS loss alone
(not by a weighted sum of the two, whose weight would be one more thing to tune and whose gradient on μ would be
half likelihood, half OKS).

Raw output: (B, K, 4): standardised μ (x, y), then the σ logits (x, y).
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
import zuko
from torch import nn

from kpreg.coords import normalized_to_pixels, pixels_to_normalized
from kpreg.heads.base import Head, HeadSpec
from kpreg.heads.oks_option import OKSLossOption
from kpreg.heads.pooled import check_training_batch, keypoint_statistics, pooled_mlp
from kpreg.oks_loss import OKS
from kpreg.ops import at_least_float32

Prior = Literal["laplace", "gaussian", "none"]
MeanLoss = Literal["nll", "oks"]
SIGMA_EPS = 1e-9  # mmpose's: keeps x̄ and log σ finite when the sigmoid underflows
IDEAL_SIGMA_LOGIT = -10.0  # σ = 4.5e-5 normalised (0.006 px on a 256-px input): a confident ideal output


def residual_flow(couplings: int = 6, hidden: int = 64) -> zuko.flows.RealNVP:
    """RLE's RealNVP on 2-D residuals: ``couplings`` affine coupling layers with alternating masks (6 = RLE's 3
    pairs), each conditioned by an MLP with two ``hidden``-unit LeakyReLU layers, standard normal base.

    The last layer of every coupling MLP starts at zero, so the flow starts as the identity (G = N(0, I));
    RLE initialises its layers with Xavier gain 0.01 for the same purpose.
    """
    flow = zuko.flows.RealNVP(2, transforms=couplings, hidden_features=(hidden, hidden), activation=nn.LeakyReLU)
    for coupling in flow.transform.transforms:
        last = coupling.hyper[-1]  # the Linear giving the shift and the (soft-clipped) log-scale
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
    return flow


def prior_nll(xbar: torch.Tensor, prior: Prior, scale: float) -> torch.Tensor:
    """−log Q(x̄) summed over the last dim (the axes): (..., 2) → (...). Normalised densities, so the value is
    a true negative log-likelihood; ``scale`` is the Laplace ``b`` or the Gaussian std, in units of σ."""
    if prior == "laplace":
        return (xbar.abs() / scale + math.log(2.0 * scale)).sum(-1)
    if prior == "gaussian":
        return (xbar.pow(2) / (2.0 * scale**2) + math.log(scale * math.sqrt(2.0 * math.pi))).sum(-1)
    raise ValueError(f"unknown prior '{prior}' (choose laplace, gaussian or none)")


class RLEHead(OKSLossOption, Head):
    """Args:
    hidden: width of the hidden layer (Linear → BatchNorm → ReLU; 0 = a single linear layer).
    prior: ``laplace`` (RLE's residual variant), ``gaussian``, or ``none`` (the flow alone).
    prior_scale: the prior's scale in units of σ (Laplace b, Gaussian std). 1 is the paper's formula; 2
        reproduces mmpose's ``RLELoss`` (Laplace) up to a factor 2 and a constant (docs/regression.md).
    flow_couplings, flow_hidden: the RealNVP's number of coupling layers and MLP width (RLE: 6, 64).
    init_std: the std of the standardisation before ``fit`` (normalised units; FC's default).
    mean_loss: what trains μ: ``nll`` (RLE: the likelihood) or ``oks`` (the OKS loss in input pixels, the
        likelihood then trains σ and the flow on a detached μ; needs the dataset's OKS sigmas and the batch's
        ``scale``).
    """

    name: ClassVar[str] = "rle"
    variants: ClassVar[dict[str, dict]] = {
        "RLE (Laplace prior)": {},
        "RLE (Gaussian prior)": {"prior": "gaussian"},
        "RLE (flow only)": {"prior": "none"},
        "RLE (mmpose's scale)": {"prior_scale": 2.0},
        "RLE (OKS-trained mean)": {"mean_loss": OKS},
    }
    needs_fit = True  # the standardisation of μ comes from the training keypoints
    soft_coords_source: ClassVar[str] = "decode"  # μ, regressed
    oks_argument = "mean_loss"

    def __init__(
        self,
        hidden: int = 256,
        prior: Prior = "laplace",
        prior_scale: float = 1.0,
        flow_couplings: int = 6,
        flow_hidden: int = 64,
        init_std: float = 0.5,
        mean_loss: MeanLoss = "nll",
    ) -> None:
        super().__init__()
        if prior not in ("laplace", "gaussian", "none"):
            raise ValueError(f"unknown prior '{prior}' (choose laplace, gaussian or none)")
        if prior_scale <= 0 or init_std <= 0:
            raise ValueError(f"prior_scale and init_std must be positive, got {prior_scale} and {init_std}")
        if flow_couplings < 2 or flow_hidden < 1:
            raise ValueError("the flow needs at least 2 coupling layers (one per axis) and a hidden width >= 1")
        self.hidden = hidden
        self.prior: Prior = prior
        self.prior_scale = prior_scale
        self.flow_couplings = flow_couplings
        self.flow_hidden = flow_hidden
        self.init_std = init_std
        self.mean_loss = self.choose_loss(mean_loss, ("nll",))

    def _build(self, spec: HeadSpec) -> None:
        k = spec.num_keypoints
        self.mlp = pooled_mlp(spec.in_channels, self.hidden, 4 * k)  # μ at the mean pose, σ = sigmoid(0) = ½
        self.flow = residual_flow(self.flow_couplings, self.flow_hidden)
        self.register_buffer("target_mean", torch.zeros(k, 2))  # (K, 2) normalised
        self.register_buffer("target_std", torch.full((k, 2), float(self.init_std)))  # (K, 2) normalised
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def fit(self, keypoints: torch.Tensor, visibility: torch.Tensor) -> None:
        """Set the standardisation from the training set: (N, K, 2) x,y input pixels, (N, K) visibility."""
        mean, std = keypoint_statistics(keypoints, visibility, self.spec.input_size, self.init_std)
        self.target_mean.copy_(mean)
        self.target_std.copy_(std)
        self.fitted.fill_(True)

    def is_fitted(self) -> bool:
        return bool(self.fitted)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        check_training_batch("RLEHead", features.shape[0], self.hidden, self.training)
        return self.mlp(features).view(features.shape[0], self.spec.num_keypoints, 4)  # (B, K, 4)

    # ---- parts of the raw output ---------------------------------------------------------------------
    def mean_normalised(self, raw: torch.Tensor) -> torch.Tensor:
        """(B, K, 4) raw → (B, K, 2) μ in normalised units."""
        return at_least_float32(raw[..., :2]) * self.target_std + self.target_mean

    def sigma(self, raw: torch.Tensor) -> torch.Tensor:
        """(B, K, 4) raw → (B, K, 2) σ in normalised units, in (0, 1)."""
        return torch.sigmoid(at_least_float32(raw[..., 2:])) + SIGMA_EPS

    # ---- loss ----------------------------------------------------------------------------------------
    def loss(
        self,
        raw: torch.Tensor,
        keypoints: torch.Tensor,
        visibility: torch.Tensor,
        scale: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Per-keypoint negative log-likelihood terms, each (B, K): ``flow`` = −log G(x̄), ``log_sigma`` =
        log σ_x + log σ_y and (residual variant) ``prior`` = −log Q(x̄). The shared reduction masks the
        terms. With ``mean_loss = oks`` also ``oks`` (the OKS loss of μ, which needs ``scale``), and the likelihood
        terms see μ without gradient."""
        mu = self.mean_normalised(raw)  # (B, K, 2) normalised
        sigma = self.sigma(raw)  # (B, K, 2) normalised
        terms: dict[str, torch.Tensor] = {}
        if self.uses_oks_loss:
            terms |= self.oks_term(normalized_to_pixels(mu, self.spec.input_size), keypoints, scale)  # (B, K)
            mu = mu.detach()  # the likelihood trains σ and the flow only
        u = pixels_to_normalized(keypoints.to(mu.dtype), self.spec.input_size)  # (B, K, 2) normalised
        # An invisible keypoint may hold any value; feeding the flow a residual of 0 there keeps its terms
        # finite (so that masking them gives exactly 0) whatever that value is.
        u = torch.where(visibility[..., None] > 0, u, mu.detach())
        xbar = (u - mu) / sigma  # (B, K, 2) residual in units of σ
        b, k = xbar.shape[:2]
        # The flow's log-determinants and the base density are sums of logs and squares: run them in float32
        # (float64 for gradcheck) whatever the autocast, as the other heads do their softmax and logs.
        with torch.autocast(device_type=xbar.device.type, enabled=False):
            log_g = self.flow().log_prob(xbar.reshape(b * k, 2)).view(b, k)  # (B, K)
        terms["flow"] = -log_g
        terms["log_sigma"] = sigma.log().sum(-1)
        if self.prior != "none":
            terms["prior"] = prior_nll(xbar, self.prior, self.prior_scale)
        return terms

    # ---- decoding ------------------------------------------------------------------------------------
    def decode(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        coords = normalized_to_pixels(self.mean_normalised(raw), self.spec.input_size)  # (B, K, 2) input px
        return coords, 1.0 - self.sigma(raw).mean(-1)  # (B, K) RLE's score

    def spread(self, raw: torch.Tensor) -> torch.Tensor:
        h, w = self.spec.input_size
        sigma = self.sigma(raw)  # (B, K, 2) normalised
        # One normalised unit is W/2 (x) or H/2 (y) input pixels.
        return (sigma[..., 0] * w / 2.0) ** 2 + (sigma[..., 1] * h / 2.0) ** 2  # (B, K) input px²

    def ideal_output(self, keypoints: torch.Tensor) -> torch.Tensor:
        u = pixels_to_normalized(at_least_float32(keypoints), self.spec.input_size)  # (B, K, 2) normalised
        mu = (u - self.target_mean) / self.target_std  # (B, K, 2) standardised
        return torch.cat((mu, torch.full_like(mu, IDEAL_SIGMA_LOGIT)), dim=-1)  # (B, K, 4)

    def round_trip_tolerance(self) -> float:
        return 1e-3  # μ is the keypoint itself: float rounding only
