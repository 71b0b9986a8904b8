"""GradNorm (Chen et al., ICML 2018): learn weights so gradient norms train at matching rates.

Weights ``w = K·softmax(a)`` over the K present tasks (positive, sum to K; ``a`` one learned
scalar per task, trained by the run's optimizer). With ``G_k = w_k‖g_k‖`` the norm of the
weighted task gradient at the last shared layer — the shared representation in
representation mode (default), all shared parameters in parameter mode — the inverse training
rate ``r_k = (L_k/L_k(0)) / mean_j(L_j/L_j(0))`` (``L_k(0)``: the task's loss the first time it
was present) and targets ``Ḡ·r_k^α`` (held constant), ``a`` descends
``Σ_k |G_k − Ḡ·r_k^α|``; the model receives ``Σ_k w_k g_k``.
"""

from __future__ import annotations

import torch
from torch import nn

from mtlkit.balancing import register_balancer
from mtlkit.balancing.base import GradientBalancer, GradientMode, NonFinitePolicy


def gradnorm_targets(norms: torch.Tensor, losses: torch.Tensor, initial: torch.Tensor,
                     alpha: float = 1.5) -> torch.Tensor:
    """``mean(norms)·r^α`` with ``r = (L/L0) / mean(L/L0)``."""
    ratio = losses / initial
    r = ratio / ratio.mean()
    return norms.mean() * r ** alpha


@register_balancer("gradnorm")
class GradNorm(GradientBalancer):
    def __init__(self, task_names: list[str], alpha: float = 1.5,
                 mode: GradientMode | None = None, nonfinite: NonFinitePolicy = "raise") -> None:
        super().__init__(task_names, mode, nonfinite)
        self.alpha = float(alpha)
        self.logits = nn.ParameterList(nn.Parameter(torch.zeros(())) for _ in task_names)
        t = len(task_names)
        self.register_buffer("initial_loss", torch.zeros(t, dtype=torch.float64))
        self.register_buffer("has_initial", torch.zeros(t, dtype=torch.bool))

    def task_weights(self, present: list[int]) -> torch.Tensor:
        a = torch.stack([self.logits[k] for k in present])
        return len(present) * torch.softmax(a, dim=0)

    def combine(self, grads: torch.Tensor, losses: torch.Tensor,
                present: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.tensor(present, dtype=torch.long)
        new = ~self.has_initial[idx]
        self.initial_loss[idx[new]] = losses[new].to(torch.float64)
        self.has_initial[idx] = True
        w = self.task_weights(present)
        norms = grads.detach().norm(dim=1).to(w.dtype)
        weighted = w * norms
        targets = gradnorm_targets(weighted.detach(), losses.to(w.dtype),
                                   self.initial_loss[idx].to(w.dtype), self.alpha)
        params = [self.logits[k] for k in present]
        da = torch.autograd.grad((weighted - targets).abs().sum(), params)
        for p, g in zip(params, da, strict=True):
            p.grad = g if p.grad is None else p.grad + g
        w = w.detach().to(grads.dtype)
        return w @ grads, w
