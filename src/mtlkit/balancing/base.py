"""The Balancer interface: per-task losses in, parameter gradients out.

Two families share it:

* loss weighting (``LossWeighting``): compute a weight per task from the losses (and the
  balancer's own state), then ONE backward of the weighted sum;
* gradient methods (``GradientBalancer``): take per-task gradients (at the shared
  representation or on the shared parameters, see ``mtlkit.balancing.gradients``), turn their
  Gram matrix into task weights with a pure function, and write the combined gradient.

A balancer owns its state (``state_dict``; random generators and lazily sized buffers travel as
``extra_state``) and may own parameters (e.g. uncertainty weighting's log-variances); the
trainer gives those to the optimizer in their own group. Learned per-task parameters are one
scalar ``Parameter`` per task, so an absent task's parameter keeps ``grad=None`` and the
optimizer leaves it (and its moments) untouched.

Absent tasks (``LossResult.present`` False: no labelled rows in the batch) get weight 0, are
left out of every solver and sum, and do not change the balancer's state.

Non-finite guard: a NaN/inf loss of a present task, or a NaN/inf task gradient, raises
``NonFiniteError`` naming the task; with ``nonfinite="skip"`` the step is skipped instead —
``backward`` clears the gradients it wrote, leaves the balancer's state as it was and returns
``None`` (the trainer then does not call ``optimizer.step``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from mtlkit.losses import LossResult
from mtlkit.models.base import MultiTaskModel, Representation

NonFinitePolicy = Literal["raise", "skip"]
GradientMode = Literal["representation", "parameters"]


class NonFiniteError(FloatingPointError):
    """A task's loss or gradient is NaN/inf."""


@dataclass
class BackwardContext:
    """What a balancer may use for one step."""

    model: MultiTaskModel
    #: the shared representation of this batch, when the balancer asked for it
    rep: Representation | None = None
    #: additional loss terms (model regularisers) added unweighted to the total
    extra: dict[str, torch.Tensor] = field(default_factory=dict)
    epoch: int = 0
    step: int = 0


class Balancer(nn.Module):
    """Base class. ``backward`` leaves gradients in ``.grad`` and returns task weights ``[T]``.

    Subclasses implement ``_backward``; the base checks the losses first (non-finite guard).
    ``backward`` returns ``None`` when the step was skipped under ``nonfinite="skip"``.
    """

    #: set True when ``backward`` needs ``BackwardContext.rep``
    needs_representation: bool = False

    def __init__(self, task_names: list[str], nonfinite: NonFinitePolicy = "raise") -> None:
        super().__init__()
        if nonfinite not in ("raise", "skip"):
            raise ValueError(f"balancer param nonfinite must be 'raise' or 'skip', "
                             f"got {nonfinite!r}")
        self.task_names = list(task_names)
        self.nonfinite = nonfinite

    @property
    def num_tasks(self) -> int:
        return len(self.task_names)

    def backward(self, losses: LossResult, ctx: BackwardContext) -> torch.Tensor | None:
        if len(losses.names) != self.num_tasks:
            raise ValueError(f"balancer was built for tasks {self.task_names}, "
                             f"got losses for {losses.names}")
        present = losses.present.tolist()
        values = losses.values.detach()
        finite = torch.isfinite(values).tolist()
        bad = [n for n, p, f in zip(self.task_names, present, finite, strict=True) if p and not f]
        if bad:
            return self._nonfinite(f"non-finite loss for task(s) {bad}: "
                                   f"{[float(values[self.task_names.index(b)]) for b in bad]}",
                                   ctx)
        return self._backward(losses, ctx)

    def _backward(self, losses: LossResult, ctx: BackwardContext) -> torch.Tensor | None:
        raise NotImplementedError

    def _nonfinite(self, message: str, ctx: BackwardContext) -> None:
        """Raise, or (policy skip) clear every gradient this step may have written."""
        if self.nonfinite == "raise":
            raise NonFiniteError(message + " (set balancer param nonfinite: skip to skip "
                                 "such steps)")
        for p in [*ctx.model.parameters(), *self.parameters()]:
            p.grad = None
        return None

    def on_epoch_end(self, epoch: int, mean_losses: torch.Tensor) -> None:
        """Hook for methods that use epoch-level loss history (e.g. DWA)."""

    def extra_repr(self) -> str:
        return f"tasks={self.task_names}"


def present_indices(losses: LossResult) -> list[int]:
    return [i for i, p in enumerate(losses.present.tolist()) if p]


def _check_grads_finite(params: list[nn.Parameter]) -> bool:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return True
    # a sum is non-finite iff some element is (barring float overflow of finite values)
    return bool(torch.isfinite(torch.stack([g.sum() for g in grads])).all())


class LossWeighting(Balancer):
    """One backward of ``Σ_k w_k L_k`` (+ extra terms) over present tasks.

    Subclasses implement ``weights(losses, present)`` (present: list of task indices; absent
    entries are ignored) and may override ``total`` to add terms (UW's regulariser) or
    ``update`` to change state once the step is known to be finite.
    """

    def weights(self, losses: torch.Tensor, present: list[int]) -> torch.Tensor:
        raise NotImplementedError

    def total(self, losses: torch.Tensor, weights: torch.Tensor,
              present: list[int]) -> torch.Tensor:
        """The scalar to differentiate (present tasks only)."""
        idx = torch.tensor(present, dtype=torch.long)
        return (weights[idx] * losses[idx]).sum()

    def update(self, losses: torch.Tensor, present: list[int]) -> None:
        """State update after a finite step (e.g. loss histories)."""

    def _backward(self, losses: LossResult, ctx: BackwardContext) -> torch.Tensor | None:
        present = present_indices(losses)
        values = losses.values.detach()
        snapshot = None
        if self.nonfinite == "skip":  # weights() may advance generators / state
            snapshot = {k: v.clone() if torch.is_tensor(v) else v
                        for k, v in self.state_dict().items()}
        w = self.weights(values, present)
        mask = torch.zeros(self.num_tasks, dtype=torch.bool)
        mask[present] = True
        w_out = torch.where(mask, w.detach(), torch.zeros_like(w.detach()))
        terms = [self.total(losses.values, w, present)] if present else []
        terms += list(ctx.extra.values())
        if terms:
            torch.stack([t.reshape(()) for t in terms]).sum().backward()
        params = [*ctx.model.parameters(), *self.parameters()]
        if not _check_grads_finite(params):
            names = [self.task_names[i] for i in present]
            message = (f"non-finite gradient of the weighted loss of task(s) {names} "
                       f"(losses are finite)")
            if snapshot is not None:
                self.load_state_dict(snapshot)
            return self._nonfinite(message, ctx)
        self.update(values, present)
        return w_out


class GradientBalancer(Balancer):
    """Per-task gradients → Gram matrix → weights (pure function) → one combined gradient.

    ``mode="representation"`` takes per-task gradients w.r.t. the shared representation
    (through the heads only) and back-propagates the combination through the trunk ONCE;
    ``mode="parameters"`` takes them on the shared parameters (exact, T trunk backwards).
    Task-specific parameters always receive their plain task gradient ``Σ_k ∇L_k``.

    Subclasses implement ``weigh(gram, losses, present)`` → weights over the present rows, or
    override ``combine`` when the update is not a combination of the current gradients.
    """

    default_mode: GradientMode = "representation"
    #: modes the method supports (e.g. DB-MTL keeps a gradient EMA: parameters only)
    modes: tuple[GradientMode, ...] = ("representation", "parameters")

    def __init__(self, task_names: list[str], mode: GradientMode | None = None,
                 nonfinite: NonFinitePolicy = "raise") -> None:
        super().__init__(task_names, nonfinite)
        mode = mode or self.default_mode
        if mode not in self.modes:
            raise ValueError(f"{type(self).__name__}: mode must be one of {list(self.modes)}, "
                             f"got {mode!r}")
        self.mode = mode
        self.needs_representation = mode == "representation"

    def weigh(self, gram: torch.Tensor, losses: torch.Tensor,
              present: list[int]) -> torch.Tensor:
        raise NotImplementedError

    def combine(self, grads: torch.Tensor, losses: torch.Tensor,
                present: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """``grads [P, n]`` of the present tasks → (combined ``[n]``, weights ``[P]``)."""
        gram = grads @ grads.T
        w = self.weigh(gram, losses, present).to(grads.dtype)
        return w @ grads, w

    def _backward(self, losses: LossResult, ctx: BackwardContext) -> torch.Tensor | None:
        from mtlkit.balancing.gradients import apply_combined, task_gradients

        present = present_indices(losses)
        tg = task_gradients(losses.values, present, ctx, self.mode)
        bad = [self.task_names[i] for i, ok in zip(present, tg.finite, strict=True) if not ok]
        if bad:
            return self._nonfinite(f"non-finite gradient for task(s) {bad} "
                                   f"({self.mode} mode)", ctx)
        weights = torch.zeros(self.num_tasks)
        if present:
            combined, w = self.combine(tg.matrix, losses.values.detach()[present], present)
            weights[present] = w.detach().float().cpu()
        else:
            combined = None
        apply_combined(tg, combined, ctx)
        return weights

    def extra_repr(self) -> str:
        return f"tasks={self.task_names}, mode={self.mode!r}"
