"""One independent network per task: the baseline for Δm%."""

from __future__ import annotations

import torch
from torch import nn

from mtlkit.data.schema import TaskSpec
from mtlkit.models import register_model
from mtlkit.models.base import InputFactory, MultiTaskModel
from mtlkit.models.layers import MLP


class SingleTask(MultiTaskModel):
    """Every task gets its own input layer, bottom and output; nothing is shared."""

    def __init__(
        self, make_input: InputFactory, tasks: list[TaskSpec], bottom_units: list[int] = (128,),
        tower_units: list[int] = (8,), activation: str = "relu", dropout: float = 0.0,
    ) -> None:
        super().__init__(tasks)
        self.inputs = nn.ModuleDict()
        self.nets = nn.ModuleDict()
        for task in tasks:
            inp = make_input()
            body = MLP(inp.output_dim, [*bottom_units, *tower_units], activation, dropout)
            self.inputs[task.name] = inp
            self.nets[task.name] = nn.Sequential(body, nn.Linear(body.output_dim, task.output_dim))

    def encode(self, features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        return tuple(self.inputs[name](features) for name in self.task_names)

    def decode(self, rep: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        out = {}
        for name, x, spec in zip(self.task_names, rep, self.task_specs, strict=True):
            y = self.nets[name](x)
            out[name] = y.squeeze(-1) if spec.output_dim == 1 else y
        return out

    def shared_modules(self) -> list[nn.Module]:
        return []


@register_model("single_task")
def single_task(**kw) -> SingleTask:
    return SingleTask(**kw)
