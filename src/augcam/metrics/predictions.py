"""How much an augmentation changes a model's class probabilities, image by image."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from augcam.metrics.registry import register_metric

__all__ = ["class_kld"]


@register_metric("class_kld", kind="class_probabilities", display_name="Class-KLD", higher_is_better=False)
def class_kld(p_base: Tensor, p_aug: Tensor, eps: float = 1e-10) -> Tensor:
    """Per-image divergence of the augmented model's class probabilities from the baseline's.

    With P = ``p_base[n]`` and Q = ``p_aug[n]`` (each (N, K), rows of class probabilities) the
    value is Σ_i Q_i · log(eps + Q_i / P_i), the thesis definition: eps sits inside the log, so
    identical inputs give Σ Q_i log(1 + eps) = log(1 + eps) ≈ eps rather than exactly 0.

    * Q_i = 0 contributes 0 (the limit of q log q), whatever P_i is — never NaN.
    * P_i = 0 with Q_i > 0 gives +inf: the augmented model puts mass where the baseline has none,
      which no eps inside the log can make finite.

    Returns float64 Tensor[N] on the inputs' device; inputs are not checked to be normalised.
    """
    if p_base.shape != p_aug.shape:
        raise ValueError(
            f"class probabilities must have the same shape, got {tuple(p_base.shape)} and {tuple(p_aug.shape)}"
        )
    if p_base.dim() != 2:
        raise ValueError(f"class probabilities must be (N, K), got shape {tuple(p_base.shape)}")
    if p_base.device != p_aug.device:
        raise ValueError(f"class probabilities are on different devices: {p_base.device} and {p_aug.device}")
    if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be a finite number ≥ 0, got {eps!r}")
    p = p_base.double()
    q = p_aug.double()
    terms = q * torch.log(eps + q / p)
    # Where Q_i = 0 the product above is 0·log(eps) = 0, but 0·(−inf) (eps = 0) or 0/0 (P_i = 0
    # too) would be NaN; the term's limit is 0, so it is set explicitly.
    terms = torch.where(q == 0, torch.zeros((), dtype=terms.dtype, device=terms.device), terms)
    return terms.sum(dim=1)
