"""Focal loss for binary tasks (Lin et al., ICCV 2017).

``FL = −α_t (1 − p_t)^γ log p_t`` with ``p_t = p`` for positives and ``1 − p`` for negatives,
``α_t = α`` for positives and ``1 − α`` for negatives. ``γ = 0, α = None`` is exactly BCE.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from mtlkit.errors import ConfigError
from mtlkit.losses import LossFn, register_loss


@register_loss("focal")
def focal(gamma: float = 2.0, alpha: float | None = None) -> LossFn:
    """Down-weights easy rows by ``(1 − p_t)^γ``; ``alpha`` balances the two classes."""
    if not gamma >= 0:
        raise ConfigError(f"focal loss: gamma must be ≥ 0, got {gamma}")
    if alpha is not None and not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"focal loss: alpha must be in [0, 1] or null, got {alpha}")

    def fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none")  # −log p_t
        if gamma != 0:
            p = torch.sigmoid(logits)
            one_minus_pt = p + target - 2 * p * target  # 1 − p_t, also for soft targets
            loss = loss * one_minus_pt.pow(gamma)
        if alpha is not None:
            loss = loss * ((1 - alpha) + (2 * alpha - 1) * target)  # α_t
        return loss

    return fn
