"""Gradient Vaccine (Wang et al., ICLR 2021): raise pairwise cosine similarity to an EMA target.

For each task i and, in random order, each other task j: with ``ρ = cos(g_i', g_j)``, if
``ρ < φ̂_ij`` then ``g_i' ← g_i' + g_j·‖g_i'‖(φ̂_ij√(1−ρ²) − ρ√(1−φ̂_ij²)) / (‖g_j‖√(1−φ̂_ij²))``;
always ``φ̂_ij ← (1−β)φ̂_ij + βρ`` (targets start at 0). Update ``Σ_i g_i'`` (sum, as PCGrad),
on the whole gradient vector (LibMTL's ``whole_model`` level). Computed on the Gram matrix;
the targets ``φ̂`` and the random generator are balancer state.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from mtlkit.balancing import register_balancer
from mtlkit.balancing._simplex import as_numpy, to_tensor
from mtlkit.balancing.base import GradientBalancer, GradientMode, NonFinitePolicy


def gradvac_weights(gram: torch.Tensor, targets: torch.Tensor, beta: float = 0.01,
                    orders: list[list[int]] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(coefficients ``w`` with ``Σ_i g_i' = Σ_j w_j g_j``, updated targets ``φ̂``)."""
    k = as_numpy(gram)
    phi = targets.detach().to(torch.float64).cpu().numpy().copy()
    t = k.shape[0]
    norm = [math.sqrt(max(k[j, j], 0.0)) for j in range(t)]
    coef = [[1.0 if a == b else 0.0 for b in range(t)] for a in range(t)]
    for i in range(t):
        order = orders[i] if orders is not None else [j for j in range(t) if j != i]
        c = coef[i]
        for j in order:
            if j == i:
                continue
            dot = sum(c[m] * k[m, j] for m in range(t))
            ni = math.sqrt(max(sum(c[a] * c[b] * k[a, b] for a in range(t) for b in range(t)),
                               0.0))
            rho = dot / (ni * norm[j] + 1e-8)
            target = phi[i, j]
            if rho < target:
                s = math.sqrt(max(1 - target * target, 0.0))
                c[j] += ni * (target * math.sqrt(max(1 - rho * rho, 0.0)) - rho * s) / (
                    norm[j] * s + 1e-8)
            phi[i, j] = (1 - beta) * target + beta * rho
    w = [sum(coef[i][j] for i in range(t)) for j in range(t)]
    return to_tensor(w, gram), torch.as_tensor(phi)


@register_balancer("gradvac")
class GradVac(GradientBalancer):
    def __init__(self, task_names: list[str], beta: float = 0.01, seed: int = 0,
                 mode: GradientMode | None = None, nonfinite: NonFinitePolicy = "raise") -> None:
        super().__init__(task_names, mode, nonfinite)
        if not 0 < beta <= 1:
            raise ValueError(f"gradvac: beta must be in (0, 1], got {beta}")
        self.beta = float(beta)
        self.generator = torch.Generator().manual_seed(seed)
        t = len(task_names)
        self.register_buffer("targets", torch.zeros(t, t, dtype=torch.float64))

    def weigh(self, gram: torch.Tensor, losses: torch.Tensor,
              present: list[int]) -> torch.Tensor:
        p = len(present)
        orders = []
        for i in range(p):
            others = torch.tensor([j for j in range(p) if j != i], dtype=torch.long)
            orders.append(others[torch.randperm(p - 1, generator=self.generator)].tolist())
        idx = torch.tensor(present, dtype=torch.long)
        sub = self.targets[idx][:, idx]
        w, new = gradvac_weights(gram, sub, self.beta, orders)
        self.targets[idx.unsqueeze(1), idx.unsqueeze(0)] = new
        return w

    def get_extra_state(self) -> Any:
        return {"generator": self.generator.get_state()}

    def set_extra_state(self, state: Any) -> None:
        self.generator.set_state(state["generator"])
