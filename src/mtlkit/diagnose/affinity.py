"""Lookahead task affinity (TAG; Fifty et al., NeurIPS 2021).

``Z[i, j] = 1 − L_j(θ_s − η ∇_{θ_s} L_i, θ_j) / L_j(θ_s, θ_j)`` on one batch: the relative
drop of task ``j``'s loss after a plain SGD step of size ``η`` on task ``i``'s loss alone,
applied to the shared parameters ``θ_s`` only. Rows are the task stepped on, columns the task
measured; positive means a step for ``i`` helps ``j``. The model is left unchanged.
"""

from __future__ import annotations

import math

import torch

from mtlkit.data.store import Batch
from mtlkit.losses import TaskLosses
from mtlkit.models.base import MultiTaskModel


def tag_affinity(
    model: MultiTaskModel, losses: TaskLosses, batch: Batch, lr: float
) -> torch.Tensor:
    """``[T, T]`` lookahead affinity; NaN rows/columns for tasks absent from the batch."""
    params = [p for p in model.shared_parameters() if p.requires_grad]
    if not params:
        raise ValueError("task affinity needs shared parameters; the model shares none")
    with torch.enable_grad():
        result = losses(model(batch.features), batch.labels, batch.masks)
    base = result.values.detach().double()
    n = len(result.names)
    active = [k for k in range(n) if bool(result.present[k]) and result.values[k].requires_grad]
    affinity = torch.full((n, n), math.nan, dtype=torch.float64)
    if not active:
        return affinity
    saved = [p.detach().clone() for p in params]
    grads = {
        i: torch.autograd.grad(result.values[i], params, retain_graph=i != active[-1],
                               allow_unused=True)
        for i in active
    }
    try:
        with torch.no_grad():
            for i in active:
                for p, g in zip(params, grads[i], strict=True):
                    if g is not None:
                        p.sub_(lr * g)
                after = losses(model(batch.features), batch.labels, batch.masks).values.double()
                for j in active:
                    affinity[i, j] = 1.0 - after[j] / base[j]
                for p, s in zip(params, saved, strict=True):
                    p.copy_(s)
    finally:
        with torch.no_grad():
            for p, s in zip(params, saved, strict=True):
                p.copy_(s)
    return affinity
