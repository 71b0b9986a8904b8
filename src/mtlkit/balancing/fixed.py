"""Fixed (manual) task weights; ``equal`` is the all-ones special case."""

from __future__ import annotations

import torch

from mtlkit.balancing import register_balancer
from mtlkit.balancing.base import LossWeighting, NonFinitePolicy


class FixedWeights(LossWeighting):
    """``w_k`` given per task (default 1). Weights come from the task specs or ``weights``."""

    def __init__(self, task_names: list[str], weights: dict[str, float] | None = None,
                 nonfinite: NonFinitePolicy = "raise") -> None:
        super().__init__(task_names, nonfinite)
        weights = weights or {}
        unknown = sorted(set(weights) - set(task_names))
        if unknown:
            raise ValueError(f"fixed weights for unknown task(s) {unknown}; tasks: {task_names}")
        self.register_buffer(
            "fixed", torch.tensor([float(weights.get(n, 1.0)) for n in task_names])
        )

    def weights(self, losses: torch.Tensor, present: list[int]) -> torch.Tensor:
        return self.fixed


@register_balancer("fixed")
def fixed(task_names: list[str], weights: dict[str, float] | None = None,
          nonfinite: NonFinitePolicy = "raise") -> FixedWeights:
    return FixedWeights(task_names, weights, nonfinite)


@register_balancer("equal")
def equal(task_names: list[str], nonfinite: NonFinitePolicy = "raise") -> FixedWeights:
    return FixedWeights(task_names, None, nonfinite)
