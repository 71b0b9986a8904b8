"""Dynamic Weight Average (Liu, Johns & Davison, CVPR 2019).

``w_k = K·exp(r_k / T) / Σ_i exp(r_i / T)`` with ``r_k = L̄_k(e−1) / L̄_k(e−2)``, the ratio of
the task's last two epoch-mean RAW losses, ``T = temperature`` (2) and K the number of
present tasks; ``w_k = 1`` until every present task has two epochs of history. Epoch means are
accumulated by the balancer over the steps where the task was present (so absent steps do not
dilute them) and rolled by ``on_epoch_end``; a task absent for a whole epoch keeps its history.
"""

from __future__ import annotations

import torch

from mtlkit.balancing import register_balancer
from mtlkit.balancing.base import LossWeighting, NonFinitePolicy


def dwa_weights(last: torch.Tensor, before: torch.Tensor, temperature: float = 2.0
                ) -> torch.Tensor:
    """Weights from the two last epoch means (``last`` = e−1, ``before`` = e−2); sum to K."""
    r = last / before
    return len(r) * torch.softmax(r / temperature, dim=0)


@register_balancer("dwa")
class DWA(LossWeighting):
    def __init__(self, task_names: list[str], temperature: float = 2.0,
                 nonfinite: NonFinitePolicy = "raise") -> None:
        super().__init__(task_names, nonfinite)
        if not temperature > 0:
            raise ValueError(f"dwa: temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        t = len(task_names)
        self.register_buffer("history", torch.zeros(2, t, dtype=torch.float64))  # e−2, e−1
        self.register_buffer("epochs_seen", torch.zeros(t, dtype=torch.long))
        self.register_buffer("loss_sum", torch.zeros(t, dtype=torch.float64))
        self.register_buffer("loss_count", torch.zeros(t, dtype=torch.long))

    def weights(self, losses: torch.Tensor, present: list[int]) -> torch.Tensor:
        w = torch.ones(self.num_tasks, dtype=losses.dtype)
        if present and bool((self.epochs_seen[present] >= 2).all()):
            w[present] = dwa_weights(self.history[1, present], self.history[0, present],
                                     self.temperature).to(losses.dtype)
        return w

    def update(self, losses: torch.Tensor, present: list[int]) -> None:
        self.loss_sum[present] += losses[present].to(torch.float64)
        self.loss_count[present] += 1

    def on_epoch_end(self, epoch: int, mean_losses: torch.Tensor) -> None:
        seen = self.loss_count > 0
        mean = self.loss_sum / self.loss_count.clamp_min(1)
        self.history[0] = torch.where(seen, self.history[1], self.history[0])
        self.history[1] = torch.where(seen, mean, self.history[1])
        self.epochs_seen += seen.long()
        self.loss_sum.zero_()
        self.loss_count.zero_()
