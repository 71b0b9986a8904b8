"""CAGrad (Liu et al., NeurIPS 2021): conflict-averse gradient descent.

With ``g₀ = mean_k g_k`` and ``φ = c²‖g₀‖²``, solve
``w* = argmin_{w ∈ Δ} g_wᵀ g₀ + √φ ‖g_w‖`` (``g_w = Σ w_k g_k``) and update along
``d = g₀ + (√φ / ‖g_w*‖) g_w*``, divided by ``1 + c²`` (``rescale=1``, the authors' default),
``1 + c`` (2) or not (0). Everything depends on the Gram matrix only. The simplex problem is
solved exactly: for two tasks by a closed form (stationary point of ``αt + c√(q(t))``), for more
by projected gradient descent.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from mtlkit.balancing import register_balancer
from mtlkit.balancing._simplex import as_numpy, minimize_on_simplex, to_tensor
from mtlkit.balancing.base import GradientBalancer, GradientMode, NonFinitePolicy


def _solve_two(a: np.ndarray, k: np.ndarray, cn: float) -> np.ndarray:
    """argmin over w=(t, 1−t) of ``wᵀa + cn·√(wᵀKw)``."""
    alpha = a[0] - a[1]
    qa = k[0, 0] - 2 * k[0, 1] + k[1, 1]
    qb = 2 * (k[0, 1] - k[1, 1])
    qc = k[1, 1]

    def f(t: float) -> float:
        return t * alpha + cn * math.sqrt(max(qa * t * t + qb * t + qc, 0.0))

    cands = [0.0, 1.0]
    if qa > 1e-18 * max(k[0, 0] + k[1, 1], 1e-300):
        t0 = -qb / (2 * qa)
        m = max(qc - qb * qb / (4 * qa), 0.0)
        if alpha == 0:
            cands.append(t0)
        elif cn * cn * qa > alpha * alpha:
            u = math.sqrt(alpha * alpha * m / (qa * (cn * cn * qa - alpha * alpha)))
            cands.append(t0 - math.copysign(u, alpha))
    cands = [min(max(t, 0.0), 1.0) for t in cands]
    t = min(cands, key=f)
    return np.array([t, 1 - t])


def cagrad_weights(gram: torch.Tensor, c: float = 0.4, rescale: int = 1) -> torch.Tensor:
    """Coefficients ``λ`` with ``d = Σ_k λ_k g_k``."""
    k = as_numpy(gram)
    t = k.shape[0]
    mean = np.full(t, 1.0 / t)
    a = k @ mean  # g_kᵀ g₀
    g0_norm = math.sqrt(max(mean @ a, 0.0))
    cn = c * g0_norm
    if t == 1:
        w = np.ones(1)
    elif t == 2:
        w = _solve_two(a, k, cn)
    else:
        def f(x):
            return x @ a + cn * math.sqrt(max(x @ k @ x, 0.0))

        def grad(x):
            kx = k @ x
            return a + cn * kx / math.sqrt(max(x @ kx, 1e-30))

        w = minimize_on_simplex(f, grad, mean)
    gw_norm = math.sqrt(max(w @ k @ w, 0.0))
    lam = cn / gw_norm if gw_norm > 0 else 0.0
    coef = mean + lam * w
    if rescale == 1:
        coef = coef / (1 + c * c)
    elif rescale == 2:
        coef = coef / (1 + c)
    elif rescale != 0:
        raise ValueError(f"cagrad: rescale must be 0, 1 or 2, got {rescale}")
    return to_tensor(coef, gram)


@register_balancer("cagrad")
class CAGrad(GradientBalancer):
    def __init__(self, task_names: list[str], c: float = 0.4, rescale: int = 1,
                 mode: GradientMode | None = None, nonfinite: NonFinitePolicy = "raise") -> None:
        super().__init__(task_names, mode, nonfinite)
        if c < 0 or rescale not in (0, 1, 2):
            raise ValueError(f"cagrad: need c >= 0 and rescale in (0, 1, 2); got c={c}, "
                             f"rescale={rescale}")
        self.c, self.rescale = float(c), int(rescale)

    def weigh(self, gram: torch.Tensor, losses: torch.Tensor,
              present: list[int]) -> torch.Tensor:
        return cagrad_weights(gram, self.c, self.rescale)
