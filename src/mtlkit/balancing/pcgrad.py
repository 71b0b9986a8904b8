"""PCGrad (Yu et al., NeurIPS 2020): project each task gradient off the others it conflicts with.

For each task i, in a fresh random order of the other tasks j: if ``g_i'·g_j < 0`` then
``g_i' ← g_i' − (g_i'·g_j / ‖g_j‖²) g_j`` (zero-norm ``g_j`` are skipped). The update is the
SUM ``Σ_i g_i'`` (convention: g1=(1,0), g2=(−1,1) → (0.5, 1.5)). Every ``g_i'`` is a
combination of the original rows, so the method is computed on the Gram matrix alone and the
reported weights are the coefficients of that combination. The random order comes from a
seeded ``torch.Generator`` owned by the balancer (saved in its ``state_dict``).
"""

from __future__ import annotations

from typing import Any

import torch

from mtlkit.balancing import register_balancer
from mtlkit.balancing._simplex import as_numpy, to_tensor
from mtlkit.balancing.base import GradientBalancer, GradientMode, NonFinitePolicy


def pcgrad_weights(gram: torch.Tensor, orders: list[list[int]] | None = None) -> torch.Tensor:
    """Coefficients ``w`` with ``Σ_i g_i' = Σ_j w_j g_j``; ``orders[i]``: projection order for
    task i (default: ascending, skipping i)."""
    k = as_numpy(gram)
    t = k.shape[0]
    coef = [[1.0 if a == b else 0.0 for b in range(t)] for a in range(t)]
    for i in range(t):
        order = orders[i] if orders is not None else [j for j in range(t) if j != i]
        c = coef[i]
        for j in order:
            if j == i or k[j, j] <= 0:
                continue
            dot = sum(c[m] * k[m, j] for m in range(t))
            if dot < 0:
                c[j] -= dot / k[j, j]
    w = [sum(coef[i][j] for i in range(t)) for j in range(t)]
    return to_tensor(w, gram)


@register_balancer("pcgrad")
class PCGrad(GradientBalancer):
    def __init__(self, task_names: list[str], seed: int = 0, mode: GradientMode | None = None,
                 nonfinite: NonFinitePolicy = "raise") -> None:
        super().__init__(task_names, mode, nonfinite)
        self.generator = torch.Generator().manual_seed(seed)

    def weigh(self, gram: torch.Tensor, losses: torch.Tensor,
              present: list[int]) -> torch.Tensor:
        p = gram.shape[0]
        orders = []
        for i in range(p):
            others = torch.tensor([j for j in range(p) if j != i], dtype=torch.long)
            orders.append(others[torch.randperm(p - 1, generator=self.generator)].tolist())
        return pcgrad_weights(gram, orders)

    def get_extra_state(self) -> Any:
        return {"generator": self.generator.get_state()}

    def set_extra_state(self, state: Any) -> None:
        self.generator.set_state(state["generator"])
