"""Uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018), with a bounded log-variance.

Total loss ``Σ_k exp(−s_k)·L_k/2 + s_k/2`` (the form of the paper's regression likelihood,
used for every task type as in LibMTL); reported weight ``exp(−s_k)/2``. Its optimum is
``s_k = log L_k``, so a task fitted exactly (``L_k → 0``) would drive ``s_k → −∞`` and its
weight to infinity. mtlkit bounds it: ``s_k = b·tanh(ρ_k / b)`` with the learned ``ρ_k``
(init 0) and ``b = bound`` (default 5: weights stay in ``[e^{−5}/2, e^{5}/2] ≈ [0.003, 74]``).
Near the bound the gradient on ``ρ_k`` vanishes smoothly; ``s_k`` never leaves ``[−b, b]``.
One scalar parameter per task, trained by the run's optimizer (no weight decay).
"""

from __future__ import annotations

import torch
from torch import nn

from mtlkit.balancing import register_balancer
from mtlkit.balancing.base import LossWeighting, NonFinitePolicy


def bounded_log_variance(raw: torch.Tensor, bound: float) -> torch.Tensor:
    """``s = bound·tanh(raw / bound)`` ∈ (−bound, bound); ≈ ``raw`` near 0."""
    return bound * torch.tanh(raw / bound)


@register_balancer("uncertainty")
class UncertaintyWeighting(LossWeighting):
    def __init__(self, task_names: list[str], bound: float = 5.0,
                 nonfinite: NonFinitePolicy = "raise") -> None:
        super().__init__(task_names, nonfinite)
        if not bound > 0:
            raise ValueError(f"uncertainty: bound must be > 0, got {bound}")
        self.bound = float(bound)
        self.raw = nn.ParameterList(nn.Parameter(torch.zeros(())) for _ in task_names)

    def log_vars(self) -> torch.Tensor:
        """The bounded log-variances ``s_k`` (differentiable)."""
        return bounded_log_variance(torch.stack(list(self.raw)), self.bound)

    def weights(self, losses: torch.Tensor, present: list[int]) -> torch.Tensor:
        return torch.exp(-self.log_vars()) / 2

    def total(self, losses: torch.Tensor, weights: torch.Tensor,
              present: list[int]) -> torch.Tensor:
        # only present tasks' ρ_k enter the graph, so absent ones keep grad None
        s = torch.stack([self.raw[k] for k in present])
        s = bounded_log_variance(s, self.bound)
        idx = torch.tensor(present, dtype=torch.long)
        return (torch.exp(-s) * losses[idx] / 2 + s / 2).sum()
