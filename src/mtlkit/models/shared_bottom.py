"""Hard parameter sharing: one shared bottom MLP, one tower per task."""

from __future__ import annotations

import torch
from torch import nn

from mtlkit.data.schema import TaskSpec
from mtlkit.models import register_model
from mtlkit.models.base import InputFactory, MultiTaskModel
from mtlkit.models.layers import MLP, BatchedTowers


class SharedBottom(MultiTaskModel):
    def __init__(
        self, make_input: InputFactory, tasks: list[TaskSpec], bottom_units: list[int] = (128,),
        tower_units: list[int] = (8,), activation: str = "relu", dropout: float = 0.0,
    ) -> None:
        super().__init__(tasks)
        self.input = make_input()
        self.bottom = MLP(self.input.output_dim, list(bottom_units), activation, dropout)
        self.towers = BatchedTowers(
            self.task_names, self.bottom.output_dim, list(tower_units),
            [t.output_dim for t in tasks], activation, dropout,
        )

    def encode(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.bottom(self.input(features))

    def decode(self, rep: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.towers(rep.unsqueeze(0))

    def shared_modules(self) -> list[nn.Module]:
        return [self.input, self.bottom]


@register_model("shared_bottom")
def shared_bottom(**kw) -> SharedBottom:
    return SharedBottom(**kw)
