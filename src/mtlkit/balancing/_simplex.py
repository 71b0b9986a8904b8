"""Small solvers on the probability simplex (float64 NumPy; T is small)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch


def as_numpy(gram: torch.Tensor) -> np.ndarray:
    """A ``[T, T]`` Gram matrix as float64 NumPy, symmetrised."""
    if gram.ndim != 2 or gram.shape[0] != gram.shape[1]:
        raise ValueError(f"expected a square [T, T] Gram matrix, got shape {tuple(gram.shape)}")
    k = gram.detach().to(torch.float64).cpu().numpy()
    return (k + k.T) / 2


def to_tensor(x: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float64)).to(like.dtype)


def project_simplex(v: np.ndarray) -> np.ndarray:
    """Euclidean projection onto ``{w ≥ 0, Σw = 1}`` (sort-based, Duchi et al. 2008)."""
    u = np.sort(v)[::-1]
    css = np.cumsum(u) - 1.0
    ind = np.arange(1, len(v) + 1)
    rho = ind[u - css / ind > 0][-1]
    return np.maximum(v - css[rho - 1] / rho, 0.0)


def minimize_on_simplex(
    f: Callable[[np.ndarray], float], grad: Callable[[np.ndarray], np.ndarray], x0: np.ndarray,
    max_iter: int = 1000, tol: float = 1e-12,
) -> np.ndarray:
    """Projected gradient descent with backtracking (Armijo) for a convex ``f`` on the simplex."""
    x, fx, step = project_simplex(x0), None, 1.0
    fx = f(x)
    for _ in range(max_iter):
        g = grad(x)
        while True:
            y = project_simplex(x - step * g)
            d = y - x
            fy = f(y)
            if fy <= fx + g @ d + (d @ d) / (2 * step) or step < 1e-20:
                break
            step /= 2
        x, fx = y, fy
        if np.sqrt(d @ d) < tol:
            break
        step *= 2
    return x


def min_norm_2(v11: float, v12: float, v22: float) -> float:
    """Weight γ on ``v1`` minimising ``‖γ v1 + (1−γ) v2‖²`` over [0, 1] (MGDA closed form)."""
    denom = v11 + v22 - 2 * v12
    if denom <= 1e-20 * max(v11 + v22, 1e-300):  # v1 == v2 (or both zero): any γ; take 1/2
        return 0.5
    return float(min(max((v22 - v12) / denom, 0.0), 1.0))


def min_norm_weights(k: np.ndarray, max_iter: int = 1000, tol: float = 1e-10) -> np.ndarray:
    """``argmin_{w ∈ Δ} wᵀ K w``: closed form for 2 tasks, Frank–Wolfe (exact line search,
    started from the best pair, Sener & Koltun 2018) for more."""
    t = k.shape[0]
    if t == 1:
        return np.ones(1)
    if t == 2:
        g = min_norm_2(k[0, 0], k[0, 1], k[1, 1])
        return np.array([g, 1 - g])
    best, w = np.inf, None
    for i in range(t):
        for j in range(i + 1, t):
            g = min_norm_2(k[i, i], k[i, j], k[j, j])
            cost = g * g * k[i, i] + 2 * g * (1 - g) * k[i, j] + (1 - g) ** 2 * k[j, j]
            if cost < best:
                best, w = cost, np.zeros(t)
                w[i], w[j] = g, 1 - g
    for _ in range(max_iter):
        kw = k @ w
        j = int(np.argmin(kw))
        v11, v12, v22 = w @ kw, kw[j], k[j, j]
        g = min_norm_2(v11, v12, v22)
        new = g * w
        new[j] += 1 - g
        if np.abs(new - w).sum() < tol:
            w = new
            break
        w = new
    return w
