"""Geometric Loss Strategy (Chennupati et al., CVPRW 2019): minimise ``(Π_k L_k)^{1/K}``.

Its gradient is ``Σ_k w_k ∇L_k`` with ``w_k = (Π_i L_i)^{1/K} / (K·L_k)`` (K present tasks),
computed in log space. Losses are clamped at ``eps`` (1e-8) so a zero loss cannot give inf.
"""

from __future__ import annotations

import torch

from mtlkit.balancing import register_balancer
from mtlkit.balancing.base import LossWeighting, NonFinitePolicy


def gls_weights(losses: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    logl = losses.clamp_min(eps).log()
    return torch.exp(logl.mean() - logl) / len(losses)


@register_balancer("gls")
class GLS(LossWeighting):
    def __init__(self, task_names: list[str], eps: float = 1e-8,
                 nonfinite: NonFinitePolicy = "raise") -> None:
        super().__init__(task_names, nonfinite)
        self.eps = float(eps)

    def weights(self, losses: torch.Tensor, present: list[int]) -> torch.Tensor:
        w = torch.zeros_like(losses)
        if present:
            w[present] = gls_weights(losses[present], self.eps)
        return w
