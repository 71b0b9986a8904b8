"""Nash-MTL (Navon et al., ICML 2022): the Nash bargaining solution ``(GᵀG) α = 1/α``, α > 0.

``α`` is the unique minimiser of the strictly convex ``f(α) = ½ αᵀKα − Σ log α_k``
(``K = GᵀG`` the Gram matrix; ``∇f = Kα − 1/α``), found by damped Newton steps that keep
``α > 0`` — no QP/cvxpy dependency. A tiny ridge ``1e-12·max diag(K)`` keeps it defined when
gradients are linearly dependent.

As in the reference implementation the balancer solves on ``K / ‖K‖_F`` (so the applied
weights are ``α·√‖K‖_F``), reuses the weights for ``update_every`` steps, and clips the combined
shared gradient to ``max_norm`` (1.0; 0 = off) — in representation mode that is the gradient at
the representation.
"""

from __future__ import annotations

import numpy as np
import torch

from mtlkit.balancing import register_balancer
from mtlkit.balancing._simplex import as_numpy, to_tensor
from mtlkit.balancing.base import GradientBalancer, GradientMode, NonFinitePolicy
from mtlkit.balancing.gradients import combined_norm_clip


def _solve(k: np.ndarray, init: np.ndarray | None, max_iter: int, tol: float) -> np.ndarray:
    t = k.shape[0]
    k = k + np.eye(t) * 1e-12 * max(float(np.max(np.diag(k))), 1e-300)
    diag = np.clip(np.diag(k), 1e-300, None)
    a = init.copy() if init is not None and np.all(init > 0) else 1.0 / np.sqrt(diag)

    def f(x):
        return 0.5 * x @ k @ x - np.log(x).sum()

    fa = f(a)
    for _ in range(max_iter):
        ka = k @ a
        g = ka - 1.0 / a
        if np.max(np.abs(a * ka - 1.0)) < tol:
            break
        h = k + np.diag(1.0 / (a * a))
        step = -np.linalg.solve(h, g)
        s = 1.0
        neg = step < 0
        if neg.any():  # stay strictly inside α > 0
            s = min(1.0, 0.99 * float(np.min(-a[neg] / step[neg])))
        while True:
            b = a + s * step
            fb = f(b)
            if fb <= fa + 1e-4 * s * (g @ step) or s < 1e-12:
                break
            s /= 2
        a, fa = b, fb
    return a


def nash_weights(gram: torch.Tensor, init: torch.Tensor | None = None, max_iter: int = 100,
                 tol: float = 1e-10) -> torch.Tensor:
    """α > 0 with ``(K α)_k = 1/α_k`` (K = ``gram``)."""
    k = as_numpy(gram)
    x0 = None if init is None else init.detach().double().cpu().numpy()
    return to_tensor(_solve(k, x0, max_iter, tol), gram)


@register_balancer("nash_mtl")
class NashMTL(GradientBalancer):
    def __init__(self, task_names: list[str], update_every: int = 1, max_norm: float = 1.0,
                 mode: GradientMode | None = None, nonfinite: NonFinitePolicy = "raise") -> None:
        super().__init__(task_names, mode, nonfinite)
        if update_every < 1 or max_norm < 0:
            raise ValueError(f"nash_mtl: need update_every >= 1 and max_norm >= 0; got "
                             f"{update_every}, {max_norm}")
        self.update_every, self.max_norm = int(update_every), float(max_norm)
        t = len(task_names)
        self.register_buffer("alpha", torch.zeros(t, dtype=torch.float64))  # last weights
        self.register_buffer("solved_for", torch.zeros(t, dtype=torch.bool))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def weigh(self, gram: torch.Tensor, losses: torch.Tensor,
              present: list[int]) -> torch.Tensor:
        mask = torch.zeros(self.num_tasks, dtype=torch.bool)
        mask[present] = True
        reuse = int(self.steps) % self.update_every != 0 and bool((mask == self.solved_for).all())
        self.steps += 1
        if reuse:
            return self.alpha[present].to(gram.dtype)
        scale = float(gram.double().norm())
        k = gram.double() / scale if scale > 0 else gram.double()
        warm = self.alpha[present] if bool(self.solved_for[present].all()) else None
        w = nash_weights(k, warm)
        self.alpha.zero_()
        self.alpha[present] = w
        self.solved_for.copy_(mask)
        return w.to(gram.dtype)

    def combine(self, grads: torch.Tensor, losses: torch.Tensor,
                present: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        combined, w = super().combine(grads, losses, present)
        clipped = combined_norm_clip(combined, self.max_norm)
        if clipped is not combined:  # report the weights actually applied
            w = w * (clipped.norm() / combined.norm().clamp_min(1e-30))
        return clipped, w
