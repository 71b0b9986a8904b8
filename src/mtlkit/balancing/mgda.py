"""MGDA (Désidéri 2012; Sener & Koltun, NeurIPS 2018): the min-norm point of the convex hull.

``α = argmin_{α ∈ Δ} ‖Σ_k α_k ĝ_k‖²`` with ``ĝ_k = g_k / n_k`` normalised by
``normalization``: ``none`` (n=1), ``l2`` (‖g_k‖), ``loss`` (L_k) or ``loss+`` (L_k·‖g_k‖).
As in the authors' code the weights α (sum 1) then scale the UNnormalised task losses.
Two tasks: closed form ``γ = (v₂·v₂ − v₁·v₂) / (v₁·v₁ + v₂·v₂ − 2 v₁·v₂)`` clipped to [0, 1];
more: Frank–Wolfe with exact line search.

``mgda`` takes gradients on the shared parameters (exact); ``mgda_ub`` at the shared
representation (MGDA-UB, the paper's upper-bound variant: one trunk backward).
"""

from __future__ import annotations

import numpy as np
import torch

from mtlkit.balancing import register_balancer
from mtlkit.balancing._simplex import as_numpy, min_norm_weights, to_tensor
from mtlkit.balancing.base import GradientBalancer, GradientMode, NonFinitePolicy

NORMALIZATIONS = ("none", "l2", "loss", "loss+")


def mgda_normalizers(gram: torch.Tensor, losses: torch.Tensor, normalization: str
                     ) -> torch.Tensor:
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"mgda: normalization must be one of {list(NORMALIZATIONS)}, "
                         f"got {normalization!r}")
    norms = gram.diagonal().clamp_min(0).sqrt()
    return {"none": torch.ones_like(norms), "l2": norms, "loss": losses.to(norms.dtype),
            "loss+": losses.to(norms.dtype) * norms}[normalization]


def mgda_weights(gram: torch.Tensor, losses: torch.Tensor | None = None,
                 normalization: str = "none") -> torch.Tensor:
    """Min-norm weights for the gradients whose Gram matrix is ``gram`` (sum to 1)."""
    if normalization != "none" and losses is None and normalization != "l2":
        raise ValueError(f"mgda: normalization {normalization!r} needs the losses")
    n = mgda_normalizers(gram, losses if losses is not None else gram.diagonal(), normalization)
    n = torch.where(n > 0, n, torch.ones_like(n))
    k = as_numpy(gram) / np.outer(n.double().numpy(), n.double().numpy())
    return to_tensor(min_norm_weights(k), gram)


@register_balancer("mgda")
class MGDA(GradientBalancer):
    default_mode: GradientMode = "parameters"

    def __init__(self, task_names: list[str], normalization: str = "none",
                 mode: GradientMode | None = None, nonfinite: NonFinitePolicy = "raise") -> None:
        super().__init__(task_names, mode, nonfinite)
        mgda_normalizers(torch.ones(1, 1), torch.ones(1), normalization)  # validate
        self.normalization = normalization

    def weigh(self, gram: torch.Tensor, losses: torch.Tensor,
              present: list[int]) -> torch.Tensor:
        return mgda_weights(gram, losses, self.normalization)


@register_balancer("mgda_ub")
class MGDAUB(MGDA):
    default_mode: GradientMode = "representation"
