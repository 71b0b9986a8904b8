"""Aligned-MTL (Senushkin et al., CVPR 2023): align the gradient system's principal components.

With the Gram matrix ``K = G Gᵀ = V Λ Vᵀ`` (rank r, eigenvalues above ``max λ·T·eps``),
``B = √λ_min · V Λ^{-1/2} Vᵀ`` makes the rows of ``BG`` orthogonal with equal norm ``√λ_min``;
the update is ``Σ_k (BG)_k``, i.e. task weights ``w = B·1`` (as LibMTL's implementation).
"""

from __future__ import annotations

import numpy as np
import torch

from mtlkit.balancing import register_balancer
from mtlkit.balancing._simplex import as_numpy, to_tensor
from mtlkit.balancing.base import GradientBalancer


def aligned_mtl_weights(gram: torch.Tensor) -> torch.Tensor:
    k = as_numpy(gram)
    t = k.shape[0]
    lam, v = np.linalg.eigh(k)
    tol = max(float(lam.max()), 0.0) * t * np.finfo(np.float32).eps
    keep = lam > tol
    if not keep.any():
        return to_tensor(np.zeros(t), gram)
    lam, v = lam[keep], v[:, keep]
    b = np.sqrt(lam.min()) * (v / np.sqrt(lam)) @ v.T
    return to_tensor(b.sum(axis=0), gram)


@register_balancer("aligned_mtl")
class AlignedMTL(GradientBalancer):
    def weigh(self, gram: torch.Tensor, losses: torch.Tensor,
              present: list[int]) -> torch.Tensor:
        return aligned_mtl_weights(gram)
