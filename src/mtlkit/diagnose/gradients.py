"""Per-task gradients, their pairwise cosine similarity, and how often pairs conflict.

Two places to compare task gradients:

* ``representation``: gradients of each task's loss w.r.t. the shared representation
  (``model.encode`` output). The trunk runs without autograd and only the heads are
  differentiated, so this is cheap. For a tuple representation the parts are concatenated.
* ``parameters``: gradients w.r.t. ``model.shared_parameters()`` (one trunk backward per task).

A task whose gradient is zero (no labelled rows in the batch, or no loss) has an undefined
cosine with every other task: NaN, and the pair is left out of that step's conflict count.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from mtlkit.balancing.base import BackwardContext, GradientMode
from mtlkit.balancing.gradients import task_gradients as engine_gradients
from mtlkit.data.store import Batch
from mtlkit.losses import LossResult, TaskLosses
from mtlkit.models.base import MultiTaskModel


def cosine_matrix(grads: torch.Tensor) -> torch.Tensor:
    """Pairwise cosine similarity of the rows of ``grads`` ``[T, D]`` → ``[T, T]``.

    Rows with zero norm give NaN in their row and column.
    """
    if grads.dim() != 2:
        raise ValueError(f"cosine_matrix expects a [tasks, dim] matrix, got {tuple(grads.shape)}")
    g = grads.double()
    gram = g @ g.T  # one [T, D] x [D, T] matmul; no [T, D] temporaries
    norms = gram.diagonal().clamp_min(0).sqrt()
    cos = (gram / (norms[:, None] * norms[None, :])).clamp(-1.0, 1.0)
    zero = norms == 0
    cos[zero, :] = math.nan
    cos[:, zero] = math.nan
    return cos


def conflict_rate(cosines: np.ndarray | torch.Tensor) -> np.ndarray:
    """Fraction of records (axis 0) whose cosine is negative, among records where it is defined.

    ``cosines`` is ``[N, ...]`` (e.g. ``[N, T, T]`` matrices or ``[N, P]`` pair columns); entries
    never defined come out NaN.
    """
    c = np.asarray(cosines, dtype=np.float64)
    defined = ~np.isnan(c)
    count = defined.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(defined, c < 0, False).sum(axis=0) / count
    return np.where(count > 0, rate, np.nan)


def has_shared_parameters(model: MultiTaskModel) -> bool:
    return any(p.requires_grad for p in model.shared_parameters())


def task_gradients(
    model: MultiTaskModel, losses: TaskLosses, batch: Batch, space: GradientMode = "representation"
) -> tuple[LossResult, torch.Tensor]:
    """Per-task losses and gradients ``[T, D]`` (zero rows for absent or loss-free tasks).

    The gradients come from the balancers' engine (``mtlkit.balancing.gradients``), so they are
    exactly what a gradient balancer in the same ``space`` sees. In ``representation`` space
    the trunk runs without autograd. Never touches a parameter's ``.grad``.
    """
    if space == "representation":
        with torch.no_grad():
            rep = model.encode(batch.features)
        parts = tuple(r.detach().requires_grad_() for r in
                      (rep if isinstance(rep, tuple) else (rep,)))
        rep = parts if isinstance(rep, tuple) else parts[0]
        with torch.enable_grad():
            result = losses(model.decode(rep), batch.labels, batch.masks)
        ctx = BackwardContext(model, rep)
    elif space == "parameters":
        if not has_shared_parameters(model):
            raise ValueError("gradients on shared parameters: the model shares no parameters")
        with torch.enable_grad():
            result = losses(model(batch.features), batch.labels, batch.masks)
        ctx = BackwardContext(model)
    else:
        raise ValueError(f"gradient space must be 'representation' or 'parameters', got {space!r}")
    present = [k for k in range(len(result.names))
               if bool(result.present[k]) and result.values[k].requires_grad]
    tg = engine_gradients(result.values, present, ctx, space)
    grads = tg.matrix.new_zeros(len(result.names), tg.matrix.shape[1])
    grads[present] = tg.matrix.detach()
    return result, grads
