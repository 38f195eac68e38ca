"""The OKS loss as an option of the coordinate-regressing heads (FC, soft-argmax, DSNT, RLE's mean).

One argument of the head chooses it (``loss: oks``, RLE's ``mean_loss: oks``). The mixin checks that argument's
value when the head is constructed, checks the data's OKS sigmas when it is built (before any training step:
one per keypoint, all positive, or one clear error naming the head and its argument), and computes the term, the
OKS loss of the head's prediction in input pixels (``kpreg.oks_loss``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch

from kpreg.heads.base import HeadSpec
from kpreg.oks_loss import OKS, check_oks_sigmas, oks_loss


class OKSLossOption:
    """Mixed in before the head's base class (``class FCHead(OKSLossOption, Head)``). The head names its argument
    in ``oks_argument`` and calls :meth:`choose_loss` in ``__init__``; ``loss`` returns :meth:`oks_term` where
    ``uses_oks_loss``."""

    oks_argument: ClassVar[str] = "loss"  # the head's argument whose value "oks" selects the OKS loss
    uses_oks_loss: bool
    spec: HeadSpec

    def choose_loss(self, value: str, others: Sequence[str]) -> str:
        """Check the argument's value against ``others`` and ``"oks"``; returns it."""
        choices = (*others, OKS)
        if value not in choices:
            raise ValueError(f"{type(self).__name__}: unknown {self.oks_argument} '{value}' "
                             f"(choose {', '.join(choices)})")
        self.uses_oks_loss = value == OKS
        return value

    def build(self, spec: HeadSpec) -> None:
        if self.uses_oks_loss:
            check_oks_sigmas(spec.sigmas, spec.num_keypoints, f"{type(self).__name__}: {self.oks_argument} 'oks'")
        super().build(spec)  # type: ignore[misc]

    def oks_term(
        self, pred: torch.Tensor, keypoints: torch.Tensor, scale: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        """``{"oks": (B, K)}``: the OKS loss of ``pred`` against ``keypoints``, both (B, K, 2) x,y input pixels, with
        ``scale`` (B,) the samples' scale in input pixels."""
        return {"oks": oks_loss(pred, keypoints, scale, self.spec.sigmas)}
