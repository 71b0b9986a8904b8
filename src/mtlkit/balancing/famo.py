"""FAMO: Fast Adaptive Multitask Optimization (Liu et al., NeurIPS 2023).

Task logits ``ξ`` (init 0), ``z = softmax(ξ)``. The step minimises
``Σ_k z_k·log(L_k − m_k + ε) / c`` with ``c = Σ_k z_k / (L_k − m_k + ε)`` (``c`` detached), whose
gradient is ``Σ_k w_k ∇L_k`` with ``w_k = z_k / (c·(L_k − m_k + ε))`` (weights sum to 1).
``ξ`` is then moved by Adam (lr ``w_lr``, L2 ``gamma``) along ``J_softmax(ξ)ᵀ δ``, where
``δ_k = log(L_k^{prev} − m_k + ε) − log(L_k − m_k + ε)`` is the log-loss decrease.

mtlkit's one-pass variant: the reference implementation evaluates the loss again on the same
batch after the model step; here ``δ`` uses the loss of the NEXT step (the current batch,
before its update), which needs no extra forward. The ``ξ`` update is restricted to tasks
present in both steps (softmax over those), with a per-task Adam (its moments and step
counters are buffers), so absent tasks' logits do not move.
"""

from __future__ import annotations

import torch

from mtlkit.balancing import register_balancer
from mtlkit.balancing.base import LossWeighting, NonFinitePolicy


def famo_weights(logits: torch.Tensor, losses: torch.Tensor, min_losses: torch.Tensor,
                 eps: float = 1e-8) -> torch.Tensor:
    """Per-task weights of the FAMO step (gradient of the log-loss objective)."""
    z = torch.softmax(logits, dim=0)
    d = losses - min_losses + eps
    c = (z / d).sum()
    return z / (c * d)


def famo_logit_gradient(logits: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """``J_softmax(ξ)ᵀ δ = z ⊙ (δ − zᵀδ)``."""
    z = torch.softmax(logits, dim=0)
    return z * (delta - (z * delta).sum())


@register_balancer("famo")
class FAMO(LossWeighting):
    def __init__(self, task_names: list[str], w_lr: float = 0.025, gamma: float = 1e-3,
                 eps: float = 1e-8, betas: tuple[float, float] = (0.9, 0.999),
                 min_losses: list[float] | None = None,
                 nonfinite: NonFinitePolicy = "raise") -> None:
        super().__init__(task_names, nonfinite)
        t = len(task_names)
        self.w_lr, self.gamma, self.eps = float(w_lr), float(gamma), float(eps)
        self.betas = (float(betas[0]), float(betas[1]))
        mins = torch.zeros(t) if min_losses is None else torch.tensor(min_losses, dtype=torch.float)
        if mins.shape != (t,):
            raise ValueError(f"famo: min_losses needs one value per task {task_names}")
        f64 = torch.float64
        self.register_buffer("min_losses", mins.to(f64))
        self.register_buffer("logits", torch.zeros(t, dtype=f64))
        self.register_buffer("exp_avg", torch.zeros(t, dtype=f64))
        self.register_buffer("exp_avg_sq", torch.zeros(t, dtype=f64))
        self.register_buffer("adam_steps", torch.zeros(t, dtype=torch.long))
        self.register_buffer("prev_loss", torch.zeros(t, dtype=f64))
        self.register_buffer("has_prev", torch.zeros(t, dtype=torch.bool))

    def _logit_step(self, idx: torch.Tensor, grad: torch.Tensor) -> None:
        """One Adam step (L2 ``gamma``) on ``logits[idx]`` with per-task step counts."""
        b1, b2 = self.betas
        grad = grad + self.gamma * self.logits[idx]
        self.adam_steps[idx] += 1
        steps = self.adam_steps[idx].to(torch.float64)
        self.exp_avg[idx] = b1 * self.exp_avg[idx] + (1 - b1) * grad
        self.exp_avg_sq[idx] = b2 * self.exp_avg_sq[idx] + (1 - b2) * grad * grad
        m_hat = self.exp_avg[idx] / (1 - b1 ** steps)
        v_hat = self.exp_avg_sq[idx] / (1 - b2 ** steps)
        self.logits[idx] -= self.w_lr * m_hat / (v_hat.sqrt() + 1e-8)

    def weights(self, losses: torch.Tensor, present: list[int]) -> torch.Tensor:
        cur = losses.to(torch.float64)
        both = [k for k in present if bool(self.has_prev[k])]
        if both:
            idx = torch.tensor(both, dtype=torch.long)
            m = self.min_losses[idx]
            delta = (self.prev_loss[idx] - m + self.eps).log() - (cur[idx] - m + self.eps).log()
            self._logit_step(idx, famo_logit_gradient(self.logits[idx], delta))
        w = torch.zeros_like(cur)
        if present:
            idx = torch.tensor(present, dtype=torch.long)
            w[idx] = famo_weights(self.logits[idx], cur[idx], self.min_losses[idx], self.eps)
            self.prev_loss[idx] = cur[idx]
            self.has_prev[idx] = True
        return w.to(losses.dtype)
