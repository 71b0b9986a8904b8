"""The contract every model follows.

A model maps a feature dict to ``{task: output}`` (binary/regression: ``[B]`` logits or values,
multiclass: ``[B, C]`` logits). It is split into ``encode`` (the shared trunk, returning the
shared representation: a tensor or a tuple of tensors) and ``decode`` (task-specific heads), so
gradient balancers can take per-task gradients at the representation without knowing the
architecture. ``shared_modules`` declares which sub-modules are shared between tasks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from mtlkit.data.schema import TaskSpec

Representation = torch.Tensor | tuple[torch.Tensor, ...]
InputFactory = Callable[[], nn.Module]


class MultiTaskModel(nn.Module):
    """Base class: subclasses implement ``encode``, ``decode`` and ``shared_modules``."""

    def __init__(self, tasks: list[TaskSpec]) -> None:
        super().__init__()
        if not tasks:
            raise ValueError("a model needs at least one task")
        self.task_specs = list(tasks)
        self.task_names = [t.name for t in tasks]
        #: when True, gated models keep their last gate weights in ``self.gate_weights``
        self.record_gates = False
        self.gate_weights: dict[str, torch.Tensor] = {}

    def encode(self, features: dict[str, torch.Tensor]) -> Representation:
        raise NotImplementedError

    def decode(self, rep: Representation) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def shared_modules(self) -> list[nn.Module]:
        """Modules whose parameters every task's loss reaches (the shared trunk)."""
        raise NotImplementedError

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.decode(self.encode(features))

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        seen: set[int] = set()
        for module in self.shared_modules():
            for p in module.parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    yield p

    def task_parameters(self) -> Iterator[nn.Parameter]:
        """Every parameter not in the shared trunk."""
        shared = {id(p) for p in self.shared_parameters()}
        return (p for p in self.parameters() if id(p) not in shared)

    def _record(self, name: str, gates: torch.Tensor) -> None:
        if self.record_gates:
            self.gate_weights[name] = gates.detach()

    def set_progress(self, progress: float) -> None:
        """Training progress in [0, 1], set by the trainer before every step (for schedules
        such as a gradient-reversal λ); ignored by default."""

    def extra_losses(self) -> dict[str, torch.Tensor]:
        """Regularisers produced by the last forward (e.g. an L0 penalty); none by default."""
        return {}

    def describe(self) -> dict[str, Any]:
        n_shared = sum(p.numel() for p in self.shared_parameters())
        n_total = sum(p.numel() for p in self.parameters())
        return {"parameters": n_total, "shared_parameters": n_shared}
