"""DB-MTL: dual-balancing (Lin et al., 2023) — loss scale by log, gradient magnitude by max-norm.

Per present task: ``g_k = ∇ log(L_k + ε) = ∇L_k / (L_k + ε)``; an EMA buffer
``ĝ_k ← g_k + (β / t_k^{σ})(ĝ_k − g_k)`` (``β = beta`` 0.9, ``σ = beta_sigma`` 0.5, t_k the task's
step count, ĝ starting at 0, as LibMTL); update ``Σ_k (max_j ‖ĝ_j‖ / ‖ĝ_k‖) ĝ_k``. The
reported weights are the magnitude scales ``max_j ‖ĝ_j‖ / ‖ĝ_k‖``.

The EMA averages gradients across batches, which is only meaningful for parameters (the
representation changes with every batch), so DB-MTL runs in parameter mode only.
"""

from __future__ import annotations

from typing import Any

import torch

from mtlkit.balancing import register_balancer
from mtlkit.balancing.base import GradientBalancer, GradientMode, NonFinitePolicy


def db_mtl_update(buffer: torch.Tensor, grads: torch.Tensor, losses: torch.Tensor,
                  steps: torch.Tensor, beta: float = 0.9, beta_sigma: float = 0.5,
                  eps: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(new buffer, combined update, scales) for rows ``grads`` with step counts ``steps``
    (already incremented)."""
    g = grads / (losses.to(grads.dtype)[:, None] + eps)
    decay = (beta / steps.to(grads.dtype) ** beta_sigma)[:, None]
    buf = g + decay * (buffer - g)
    norms = buf.norm(dim=1)
    scales = norms.max() / (norms + 1e-8)
    return buf, scales @ buf, scales


@register_balancer("db_mtl")
class DBMTL(GradientBalancer):
    default_mode: GradientMode = "parameters"
    modes: tuple[GradientMode, ...] = ("parameters",)

    def __init__(self, task_names: list[str], beta: float = 0.9, beta_sigma: float = 0.5,
                 eps: float = 1e-8, mode: GradientMode | None = None,
                 nonfinite: NonFinitePolicy = "raise") -> None:
        super().__init__(task_names, mode, nonfinite)
        self.beta, self.beta_sigma, self.eps = float(beta), float(beta_sigma), float(eps)
        self.buffer: torch.Tensor | None = None  # [T, n], sized at the first step
        self.register_buffer("steps", torch.zeros(len(task_names), dtype=torch.long))

    def combine(self, grads: torch.Tensor, losses: torch.Tensor,
                present: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.buffer is None:
            self.buffer = grads.new_zeros(self.num_tasks, grads.shape[1])
        idx = torch.tensor(present, dtype=torch.long)
        self.steps[idx] += 1
        buf, combined, scales = db_mtl_update(self.buffer[idx], grads, losses, self.steps[idx],
                                              self.beta, self.beta_sigma, self.eps)
        self.buffer[idx] = buf
        return combined, scales

    def get_extra_state(self) -> Any:
        return {"buffer": self.buffer}

    def set_extra_state(self, state: Any) -> None:
        self.buffer = state["buffer"]
