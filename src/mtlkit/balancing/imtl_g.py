"""IMTL-G (Liu et al., ICLR 2021): the update has equal projections on every task's unit gradient.

With ``u_k = g_k/‖g_k‖``, ``D = [g₁ − g_k]ᵀ``, ``U = [u₁ − u_k]ᵀ`` (k = 2..T):
``α_{2..T} = g₁ Uᵀ (D Uᵀ)⁻¹``, ``α₁ = 1 − Σ α_{2..T}``, update ``Σ α_k g_k`` (weights sum to
1). All products are Gram-matrix entries; the linear system is solved by least squares, so
parallel or zero gradients give the minimum-norm solution instead of a crash.
"""

from __future__ import annotations

import numpy as np
import torch

from mtlkit.balancing import register_balancer
from mtlkit.balancing._simplex import as_numpy, to_tensor
from mtlkit.balancing.base import GradientBalancer


def imtl_g_weights(gram: torch.Tensor) -> torch.Tensor:
    k = as_numpy(gram)
    t = k.shape[0]
    if t == 1:
        return to_tensor(np.ones(1), gram)
    norms = np.sqrt(np.clip(np.diag(k), 0, None))
    inv = np.where(norms > 0, 1.0 / np.where(norms > 0, norms, 1.0), 0.0)
    ku = k * inv[None, :]  # ku[a, b] = g_a · u_b
    # (g₁ − g_i)·(u₁ − u_j) and g₁·(u₁ − u_j), for i, j = 2..T
    du = (ku[0, 0] - ku[0, 1:][None, :] - ku[1:, 0][:, None] + ku[1:, 1:])
    gu = ku[0, 0] - ku[0, 1:]
    # α Du = gu  (row vector) ⇔ Duᵀ αᵀ = guᵀ
    alpha = np.linalg.lstsq(du.T, gu, rcond=None)[0]
    return to_tensor(np.concatenate([[1 - alpha.sum()], alpha]), gram)


@register_balancer("imtl_g")
class IMTLG(GradientBalancer):
    def weigh(self, gram: torch.Tensor, losses: torch.Tensor,
              present: list[int]) -> torch.Tensor:
        return imtl_g_weights(gram)
