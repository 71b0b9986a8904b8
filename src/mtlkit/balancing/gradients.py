"""The autograd engine of gradient balancers: per-task gradients in, one combined update out.

Two places to take per-task gradients (``mode``):

* ``"representation"`` (MGDA-UB style): ``∂L_k/∂z`` for the shared representation ``z``
  (``model.encode`` output, handed over as ``BackwardContext.rep``), through the heads only.
  The combination ``c`` is then back-propagated ONCE through the trunk: ``backward(z, c)``.
* ``"parameters"``: ``∂L_k/∂θ_shared`` for every shared parameter (exact; T trunk backwards).

In both modes each per-task ``autograd.grad`` call also returns that task's gradient on the
task-specific parameters; their sum (the plain task gradients) is written to ``.grad``. The
graph is retained only between the per-task calls and freed by the last backward. Shared
parameters no task reaches keep ``grad=None``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mtlkit.balancing.base import BackwardContext, GradientMode


@dataclass
class TaskGradients:
    """Per-task gradients of the present tasks, flattened into rows."""

    matrix: torch.Tensor  # [P, n]
    present: list[int]
    mode: GradientMode
    #: what the columns are gradients of: representation tensors or shared parameters
    targets: list[torch.Tensor]
    #: per target: whether any task reached it (parameter mode; unreached keep grad None)
    reached: list[bool]
    task_params: list[nn.Parameter]
    #: summed plain task gradient per task-specific parameter (None: no task reached it)
    task_grads: list[torch.Tensor | None]
    finite: list[bool]
    #: the graph is still alive (representation mode, or extra terms to back-propagate)
    graph_alive: bool


def _flat_targets(rep) -> list[torch.Tensor]:
    parts = list(rep) if isinstance(rep, (tuple, list)) else [rep]
    return [p for p in parts if torch.is_tensor(p) and p.requires_grad]


def task_gradients(losses: torch.Tensor, present: list[int], ctx: BackwardContext,
                   mode: GradientMode) -> TaskGradients:
    """``[P, n]`` gradients of the present tasks' losses w.r.t. the shared targets."""
    model = ctx.model
    if mode == "representation":
        if ctx.rep is None:
            raise ValueError("representation mode needs BackwardContext.rep (the trainer passes "
                             "it when balancer.needs_representation is True)")
        targets = _flat_targets(ctx.rep)
    else:
        targets = [p for p in model.shared_parameters() if p.requires_grad]
    task_params = [p for p in model.task_parameters() if p.requires_grad]
    inputs = [*targets, *task_params]
    n_t = len(targets)
    keep_last = mode == "representation" or bool(ctx.extra)
    rows: list[torch.Tensor] = []
    reached = [False] * n_t
    task_grads: list[torch.Tensor | None] = [None] * len(task_params)
    for j, k in enumerate(present):
        retain = keep_last or j < len(present) - 1
        grads = torch.autograd.grad(losses[k], inputs, retain_graph=retain, allow_unused=True)
        row = []
        for i, (t, g) in enumerate(zip(targets, grads[:n_t], strict=True)):
            if g is None:
                row.append(t.new_zeros(t.numel()))
            else:
                reached[i] = True
                row.append(g.reshape(-1))
        rows.append(torch.cat(row) if row else losses.new_zeros(0))
        for i, g in enumerate(grads[n_t:]):
            if g is not None:
                task_grads[i] = g if task_grads[i] is None else task_grads[i] + g
    if rows:
        matrix = torch.stack(rows)
        finite = [bool(f) for f in torch.isfinite(matrix.sum(dim=1)).tolist()]
    else:
        n = sum(t.numel() for t in targets)
        matrix = losses.new_zeros(0, n)
        finite = []
    if all(finite):
        sums = [g.sum() for g in task_grads if g is not None]
        if sums and not bool(torch.isfinite(torch.stack(sums)).all()):
            finite = [False] * len(present)  # a head gradient: cannot tell which task here
    return TaskGradients(matrix, present, mode, targets, reached, task_params, task_grads,
                         finite, keep_last and bool(present))


def _accumulate(p: torch.Tensor, g: torch.Tensor) -> None:
    if p.grad is None:
        p.grad = g.detach().reshape(p.shape).clone()
    else:
        p.grad.add_(g.reshape(p.shape))


def apply_combined(tg: TaskGradients, combined: torch.Tensor | None,
                   ctx: BackwardContext) -> None:
    """Write the combined shared gradient, the plain task gradients and the extra terms."""
    for p, g in zip(tg.task_params, tg.task_grads, strict=True):
        if g is not None:
            _accumulate(p, g)
    extra = [t.reshape(()) for t in ctx.extra.values()]
    roots: list[torch.Tensor] = []
    root_grads: list[torch.Tensor] = []
    if combined is not None and tg.targets:
        offset = 0
        pieces = []
        for t in tg.targets:
            pieces.append(combined[offset: offset + t.numel()].view_as(t))
            offset += t.numel()
        if tg.mode == "representation":
            roots += tg.targets
            root_grads += pieces
        else:
            for p, g, hit in zip(tg.targets, pieces, tg.reached, strict=True):
                if hit:
                    _accumulate(p, g)
    if extra:
        roots.append(torch.stack(extra).sum())
        root_grads.append(torch.ones((), dtype=roots[-1].dtype))
    if roots:
        torch.autograd.backward(roots, root_grads)


def combined_norm_clip(combined: torch.Tensor, max_norm: float) -> torch.Tensor:
    """Rescale ``combined`` to norm ``max_norm`` when larger (0 = off)."""
    if max_norm <= 0:
        return combined
    norm = combined.norm()
    return combined * (max_norm / norm).clamp(max=1.0) if norm > 0 else combined
