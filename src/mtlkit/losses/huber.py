"""Huber loss for regression: quadratic within ``delta`` of the target, linear beyond."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from mtlkit.errors import ConfigError
from mtlkit.losses import LossFn, register_loss


@register_loss("huber")
def huber(delta: float = 1.0) -> LossFn:
    """``½e²`` for ``|e| ≤ δ``, ``δ(|e| − ½δ)`` otherwise (``e`` = prediction − target)."""
    if not delta > 0:
        raise ConfigError(f"huber loss: delta must be > 0, got {delta}")

    def fn(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.huber_loss(pred, target, reduction="none", delta=delta)

    return fn
