"""The Balancer interface: per-task losses in, parameter gradients out.

Two families share it:

* loss weighting (``LossWeighting``): compute a weight per task from the losses (and the
  balancer's own state), then ONE backward of the weighted sum;
* gradient methods: take per-task gradients (at the shared representation or parameters)
  and combine them.

A balancer owns its state (``state_dict``) and may own parameters (e.g. uncertainty
weighting's log-variances); the trainer gives those to the optimizer in their own group.
Absent tasks (no labelled rows in the batch) get weight 0 and must not change its state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from mtlkit.losses import LossResult
from mtlkit.models.base import MultiTaskModel, Representation


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
    """Base class. ``backward`` must leave gradients in ``.grad`` and return task weights."""

    #: set True when ``backward`` needs ``BackwardContext.rep``
    needs_representation: bool = False

    def __init__(self, task_names: list[str]) -> None:
        super().__init__()
        self.task_names = list(task_names)

    @property
    def num_tasks(self) -> int:
        return len(self.task_names)

    def backward(self, losses: LossResult, ctx: BackwardContext) -> torch.Tensor:
        raise NotImplementedError

    def on_epoch_end(self, epoch: int, mean_losses: torch.Tensor) -> None:  # noqa: B027
        """Hook for methods that use epoch-level loss history (e.g. DWA)."""


class LossWeighting(Balancer):
    """One backward of ``Σ_k w_k L_k`` (+ extra terms); subclasses implement ``weights``."""

    def weights(self, losses: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def total(self, losses: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """The scalar to differentiate; override to add terms (e.g. UW's regulariser)."""
        return (weights * losses).sum()

    def backward(self, losses: LossResult, ctx: BackwardContext) -> torch.Tensor:
        w = self.weights(losses.values.detach(), losses.present)
        w = torch.where(losses.present, w, torch.zeros_like(w))
        total = self.total(losses.values, w)
        for term in ctx.extra.values():
            total = total + term
        total.backward()
        return w.detach()
