"""Scale-invariant loss (Navon et al. 2022's baseline): minimise ``Σ_k log L_k``.

Its gradient is ``Σ_k ∇L_k / L_k``: weights ``w_k = 1 / max(L_k, eps)``; invariant to a
rescaling of any task's loss.
"""

from __future__ import annotations

import torch

from mtlkit.balancing import register_balancer
from mtlkit.balancing.base import LossWeighting, NonFinitePolicy


def scale_invariant_weights(losses: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return 1.0 / losses.clamp_min(eps)


@register_balancer("scale_invariant")
class ScaleInvariant(LossWeighting):
    def __init__(self, task_names: list[str], eps: float = 1e-8,
                 nonfinite: NonFinitePolicy = "raise") -> None:
        super().__init__(task_names, nonfinite)
        self.eps = float(eps)

    def weights(self, losses: torch.Tensor, present: list[int]) -> torch.Tensor:
        return scale_invariant_weights(losses, self.eps)
