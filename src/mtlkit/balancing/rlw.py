"""Random Loss Weighting (Lin et al., TMLR 2022): ``w = softmax(ε)``, ``ε ~ N(0, I)`` per step.

Weights are drawn for the present tasks only and sum to 1 (as published). The random stream
is a seeded ``torch.Generator`` owned by the balancer and saved in its ``state_dict``.
"""

from __future__ import annotations

from typing import Any

import torch

from mtlkit.balancing import register_balancer
from mtlkit.balancing.base import LossWeighting, NonFinitePolicy


@register_balancer("rlw")
class RLW(LossWeighting):
    def __init__(self, task_names: list[str], seed: int = 0,
                 nonfinite: NonFinitePolicy = "raise") -> None:
        super().__init__(task_names, nonfinite)
        self.generator = torch.Generator().manual_seed(seed)

    def weights(self, losses: torch.Tensor, present: list[int]) -> torch.Tensor:
        w = torch.zeros(self.num_tasks, dtype=losses.dtype)
        eps = torch.randn(len(present), generator=self.generator, dtype=torch.float64)
        w[present] = torch.softmax(eps, dim=0).to(losses.dtype)
        return w

    def get_extra_state(self) -> Any:
        return {"generator": self.generator.get_state()}

    def set_extra_state(self, state: Any) -> None:
        self.generator.set_state(state["generator"])
