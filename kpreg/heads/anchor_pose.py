"""Anchor poses: classify the nearest of A k-means poses, regress the residual from it (LCR-Net's
classification-regression of anchor poses, Rogez, Weinzaepfel & Schmid, CVPR 2017; the multi-bin loss of
Mousavian et al., CVPR 2017, with poses for bins; YOLOv2's k-means anchors, Redmon & Farhadi, CVPR 2017).

Anchors are poses in *normalised input coordinates* (``kpreg.coords``: the top-down crop is the person's
box, expanded to the input's aspect ratio and padded, so a pose normalised to its box is its normalised
input pose), fitted once by ``fit`` with masked k-means (``kpreg.kmeans``: invisible keypoints neither pull
an anchor nor count in a distance) and stored as buffers, with the per-keypoint std of the residuals from
each pose's own anchor (pooled over clusters) that standardises the regression targets.

Per sample, with ``u`` (K, 2) its normalised keypoints and ``v`` (K,) their visibility::

    class target      a* = argmin_a Σ_k v_k ‖u_k − anchor_a,k‖²          (k-means' own distance)
    residual target   r_a,k = (u_k − anchor_a,k) / std_k                 (every anchor, standardised)
    anchor a covers   a = a*  or  sqrt(Σ_k v_k ‖r_a,k‖² / (2 Σ_k v_k)) ≤ cover   (RMS in std units)
    residual loss     mean over covering anchors of L(r̂_a,k − r_a,k), L = l1 | l2 | smooth_l1
    classification    cross-entropy (or softmax focal loss) of the A logits with target a*

Like multi-bin's overlapping bins, supervising every *covering* anchor means that a neighbouring anchor
chosen by mistake still carries a trained residual; ``cover = 0`` trains the nearest anchor only. The
classification is a per-sample term; it is repeated on each keypoint of the sample, so that after the
shared masked mean it weighs as much as one keypoint's residual.

Decoding: ``argmax`` — the most probable anchor plus its residual; ``expectation`` — ``Σ_a p_a (anchor_a +
std · r̂_a)``. Confidence: the probability of the most probable anchor (one value per sample). Spread: the
variance of the mixture ``Σ_a p_a δ(μ_a)`` in input px² (as multi-bin's).

With ``A = 1`` the anchor is the mean pose, the std is the pose std, the classification is exactly 0 and
the head is ``FCHead`` (the tests check it).

Before ``fit`` every anchor is the centre pose (all keypoints at the input's centre) with FC's initial std,
so the head trains as an FC regression; with ``A > 1`` it warns once in training, because the module forgot
the hook. Raw output: (B, A, 1 + 2K): per anchor its logit, then its standardised residuals (K × (x, y)).
"""

from __future__ import annotations

import warnings
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F

from kpreg.coords import normalized_to_pixels, pixels_to_normalized
from kpreg.heads.base import Head, HeadSpec
from kpreg.heads.pooled import check_training_batch, pooled_mlp
from kpreg.kmeans import KMeansInputError, masked_kmeans
from kpreg.losses import coord_loss_per_joint, softmax_focal_loss
from kpreg.ops import at_least_float32

ClassLoss = Literal["ce", "focal"]
ResidualLoss = Literal["l1", "l2", "smooth_l1"]
Decoder = Literal["argmax", "expectation"]
IDEAL_LOGIT = 10.0  # ± logits of the ideal output (multi-bin's)


class AnchorPoseHead(Head):
    """Args:
    num_anchors: A, the number of k-means anchor poses.
    hidden: width of the hidden layer (Linear → BatchNorm → ReLU; 0 = a single linear layer).
    cover: RMS standardised residual (std units) within which an anchor's residual is also trained;
        0 = the nearest anchor only.
    cls_loss: ``ce`` or ``focal`` (softmax focal loss with ``gamma``).
    residual_loss: ``l1`` (FC's default), ``l2`` or ``smooth_l1`` on the standardised residuals.
    residual_weight: weight of the residual term relative to the classification.
    decoder: ``argmax`` or ``expectation``.
    init_std: the std used before ``fit`` (normalised units; FC's default).
    seed: seed of the k-means++ initialisation (the anchors are deterministic given the data and it).
    """

    name: ClassVar[str] = "anchor_pose"
    variants: ClassVar[dict[str, dict]] = {
        "anchor poses (A = 8, argmax)": {},
        "anchor poses (A = 8, expectation)": {"decoder": "expectation"},
        "anchor poses (A = 8, nearest anchor only)": {"cover": 0.0},
        "anchor poses (A = 8, focal)": {"cls_loss": "focal"},
        "anchor poses (A = 1)": {"num_anchors": 1},
    }
    needs_fit = True  # the anchors are k-means centres of the training poses
    soft_coords_source: ClassVar[str] = "the expectation over its anchor poses (decode with decoder: expectation)"

    def __init__(
        self,
        num_anchors: int = 8,
        hidden: int = 256,
        cover: float = 2.0,
        cls_loss: ClassLoss = "ce",
        gamma: float = 2.0,
        residual_loss: ResidualLoss = "l1",
        residual_weight: float = 1.0,
        decoder: Decoder = "argmax",
        init_std: float = 0.5,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if num_anchors < 1:
            raise ValueError(f"num_anchors must be at least 1, got {num_anchors}")
        if cls_loss not in ("ce", "focal"):
            raise ValueError(f"unknown cls_loss '{cls_loss}' (choose ce or focal)")
        if residual_loss not in ("l1", "l2", "smooth_l1"):
            raise ValueError(f"unknown residual_loss '{residual_loss}' (choose l1, l2 or smooth_l1)")
        if decoder not in ("argmax", "expectation"):
            raise ValueError(f"unknown decoder '{decoder}' (choose argmax or expectation)")
        if cover < 0 or init_std <= 0:
            raise ValueError(f"cover must be >= 0 and init_std > 0, got {cover} and {init_std}")
        self.num_anchors = num_anchors
        self.hidden = hidden
        self.cover = cover
        self.cls_loss = cls_loss
        self.gamma = gamma
        self.residual_loss: ResidualLoss = residual_loss
        self.residual_weight = residual_weight
        self.decoder = decoder
        self.init_std = init_std
        self.seed = seed
        self._warned_unfitted = False

    def _build(self, spec: HeadSpec) -> None:
        a, k = self.num_anchors, spec.num_keypoints
        self.mlp = pooled_mlp(spec.in_channels, self.hidden, a * (1 + 2 * k))  # equal logits, zero residuals
        self.register_buffer("anchors", torch.zeros(a, k, 2))  # (A, K, 2) normalised: the centre pose
        self.register_buffer("residual_std", torch.full((k, 2), float(self.init_std)))  # (K, 2) normalised
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    # ---- the training-set hook -----------------------------------------------------------------------
    @torch.no_grad()
    def fit(self, keypoints: torch.Tensor, visibility: torch.Tensor) -> None:
        """k-means anchors from the training poses: (N, K, 2) x,y input pixels, (N, K) visibility."""
        n, k = keypoints.shape[:2]
        u = pixels_to_normalized(keypoints.detach().double().cpu(), self.spec.input_size)  # (N, K, 2)
        vis = visibility.detach().cpu().bool()  # (N, K)
        mask = vis[..., None].expand(n, k, 2).reshape(n, 2 * k)  # (N, 2K) x and y observed together
        # A tiny training set (fewer observed poses than anchors) clusters into as many anchors as it has poses;
        # the remaining anchors repeat them (their classes then split ties), with a warning.
        clusters = max(1, min(self.num_anchors, int(mask.any(1).sum())))
        if clusters < self.num_anchors:
            warnings.warn(f"AnchorPoseHead.fit: {clusters} training pose(s) for {self.num_anchors} anchors: only "
                          f"{clusters} distinct anchor pose(s) (lower model.head.init_args.num_anchors)", stacklevel=2)
        try:
            centres, assign = masked_kmeans(u.reshape(n, 2 * k), mask, clusters, seed=self.seed)
        except KMeansInputError as err:
            raise ValueError(f"AnchorPoseHead.fit: {err}") from err
        repeat = torch.arange(self.num_anchors) % clusters  # (A,) anchor → its cluster
        anchors = centres.view(clusters, k, 2)[repeat]  # (A, K, 2) normalised
        # Pooled within-cluster std per keypoint and axis: the spread the regression is left with.
        member = assign >= 0
        w = (vis & member[:, None]).double()[..., None]  # (N, K, 1)
        res = u - anchors[assign.clamp(min=0)]  # (N, K, 2) residual from each pose's own anchor
        count = w.sum(0)  # (K, 1)
        std = ((res**2 * w).sum(0) / count.clamp(min=1.0)).sqrt().clamp(min=1e-3)  # (K, 2)
        std = torch.where(count >= 2, std, torch.full_like(std, self.init_std))
        self.anchors.copy_(anchors.float())
        self.residual_std.copy_(std.float())
        self.fitted.fill_(True)

    def is_fitted(self) -> bool:
        return bool(self.fitted)

    # ---- forward and the parts of the raw output ------------------------------------------------------
    def forward(self, features: torch.Tensor) -> torch.Tensor:
        check_training_batch("AnchorPoseHead", features.shape[0], self.hidden, self.training)
        b, k = features.shape[0], self.spec.num_keypoints
        return self.mlp(features).view(b, self.num_anchors, 1 + 2 * k)  # (B, A, 1 + 2K)

    def split(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, A, 1 + 2K) → logits (B, A), standardised residuals (B, A, K, 2)."""
        raw = at_least_float32(raw)
        return raw[..., 0], raw[..., 1:].unflatten(-1, (self.spec.num_keypoints, 2))

    def anchor_estimates(self, residuals: torch.Tensor) -> torch.Tensor:
        """(B, A, K, 2) standardised residuals → (B, A, K, 2) per-anchor pose estimates, normalised."""
        return self.anchors + residuals * self.residual_std

    def targets(
        self, keypoints: torch.Tensor, visibility: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, K, 2) x,y input pixels, (B, K) → class target (B,), residual targets (B, A, K, 2), cover (B, A)."""
        u = pixels_to_normalized(at_least_float32(keypoints), self.spec.input_size)  # (B, K, 2) normalised
        v = visibility.to(u.dtype)  # (B, K)
        anchors = self.anchors.to(u.dtype)  # (A, K, 2)
        d2 = ((u[:, None] - anchors) ** 2).sum(-1)  # (B, A, K)
        nearest = (d2 * v[:, None]).sum(-1).argmin(-1)  # (B,) k-means' partial distance; ties → lowest index
        r = (u[:, None] - anchors) / self.residual_std.to(u.dtype)  # (B, A, K, 2) standardised
        rms = ((r**2).sum(-1) * v[:, None]).sum(-1) / (2.0 * v.sum(-1, keepdim=True)).clamp(min=1.0)  # (B, A)
        cover = rms.sqrt() <= self.cover
        cover = cover | F.one_hot(nearest, self.num_anchors).bool()  # (B, A) the nearest always counts
        return nearest, r, cover

    # ---- loss ----------------------------------------------------------------------------------------
    def loss(
        self,
        raw: torch.Tensor,
        keypoints: torch.Tensor,
        visibility: torch.Tensor,
        scale: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Per-keypoint terms (B, K): ``classification`` (the sample's, repeated on its keypoints) and
        ``residual`` (times ``residual_weight``). ``scale`` is not used."""
        if self.training and self.num_anchors > 1 and not bool(self.fitted) and not self._warned_unfitted:
            warnings.warn("AnchorPoseHead: fit() was not called before training, so all anchors are the centre "
                          "pose and the head is a plain FC regression", stacklevel=2)
            self._warned_unfitted = True
        logits, residuals = self.split(raw)  # (B, A), (B, A, K, 2)
        nearest, r_target, cover = self.targets(keypoints, visibility)
        if self.cls_loss == "ce":
            cls = F.cross_entropy(logits, nearest, reduction="none")  # (B,)
        else:
            cls = softmax_focal_loss(logits, nearest, self.gamma)  # (B,)
        b, a, k, _ = residuals.shape
        per_anchor = coord_loss_per_joint(
            residuals.reshape(b * a, k, 2), r_target.reshape(b * a, k, 2), self.residual_loss
        ).view(b, a, k)  # (B, A, K)
        c = cover.to(per_anchor.dtype)[..., None]  # (B, A, 1)
        residual = (per_anchor * c).sum(1) / c.sum(1)  # (B, K) mean over covering anchors (≥ 1)
        return {"classification": cls[:, None].expand(b, k), "residual": self.residual_weight * residual}

    # ---- decoding ------------------------------------------------------------------------------------
    def _mixture(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Anchor probabilities (B, A) and per-anchor estimates (B, A, K, 2) normalised."""
        logits, residuals = self.split(raw)
        return torch.softmax(logits, dim=-1), self.anchor_estimates(residuals)

    def decode(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        probs, estimates = self._mixture(raw)  # (B, A), (B, A, K, 2)
        best_p, best = probs.max(-1)  # (B,), (B,)
        if self.decoder == "argmax":
            u = estimates[torch.arange(estimates.shape[0], device=raw.device), best]  # (B, K, 2) normalised
        else:
            u = (probs[..., None, None] * estimates).sum(1)  # (B, K, 2) normalised
        coords = normalized_to_pixels(u, self.spec.input_size)  # (B, K, 2) input pixels
        return coords, best_p[:, None].expand(coords.shape[:2])

    def soft_coords(self, raw: torch.Tensor) -> torch.Tensor:
        # Σ_a p_a (anchor_a + residual_a) whatever the decoder: the arg-max anchor has no gradient.
        probs, estimates = self._mixture(raw)  # (B, A), (B, A, K, 2) normalised
        u = (probs[..., None, None] * estimates).sum(1)  # (B, K, 2) normalised
        return normalized_to_pixels(u, self.spec.input_size)  # (B, K, 2) input pixels

    def spread(self, raw: torch.Tensor) -> torch.Tensor:
        probs, estimates = self._mixture(raw)  # (B, A), (B, A, K, 2)
        h, w = self.spec.input_size
        px = estimates * estimates.new_tensor([w / 2.0, h / 2.0])  # (B, A, K, 2) normalised → pixel lengths
        mean = (probs[..., None, None] * px).sum(1, keepdim=True)  # (B, 1, K, 2)
        return (probs[..., None] * ((px - mean) ** 2).sum(-1)).sum(1)  # (B, K) input px²

    def ideal_output(self, keypoints: torch.Tensor) -> torch.Tensor:
        kp = at_least_float32(keypoints)
        nearest, r, _ = self.targets(kp, torch.ones(kp.shape[:2], dtype=kp.dtype, device=kp.device))
        logits = IDEAL_LOGIT * (2.0 * F.one_hot(nearest, self.num_anchors).to(kp.dtype) - 1.0)  # (B, A)
        return torch.cat((logits[..., None], r.flatten(-2)), dim=-1)  # (B, A, 1 + 2K), exact residuals

    def round_trip_tolerance(self) -> float:
        return 1e-3  # exact residuals on every anchor: float rounding only
