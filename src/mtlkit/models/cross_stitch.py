"""Cross-Stitch networks (Misra et al., CVPR 2016) for MLP towers.

One MLP column per task over the shared input embedding; after every hidden layer a learned
``[T, T]`` cross-stitch matrix mixes the columns: ``h'_s = Σ_t α_st h_t``. α starts near
identity (``self_weight`` on the diagonal, the rest spread evenly over the other tasks; the
paper's 0.9 / 0.1). All columns of a layer are one batched matmul.
"""

from __future__ import annotations

from itertools import pairwise

import torch
from torch import nn

from mtlkit.data.schema import TaskSpec
from mtlkit.models import register_model
from mtlkit.models.base import InputFactory, MultiTaskModel
from mtlkit.models.layers import ACTIVATIONS, BatchedTowers, StackedLinear


class CrossStitch(MultiTaskModel):
    def __init__(
        self, make_input: InputFactory, tasks: list[TaskSpec], units: list[int] = (64, 32),
        tower_units: list[int] = (), activation: str = "relu", dropout: float = 0.0,
        self_weight: float = 0.9,
    ) -> None:
        super().__init__(tasks)
        units = list(units)
        if not units:
            raise ValueError("cross_stitch: units needs at least one hidden layer")
        T = len(tasks)
        self.input = make_input()
        dims = [self.input.output_dim, *units]
        self.layers = nn.ModuleList(StackedLinear(T, a, b) for a, b in pairwise(dims))
        off = (1.0 - self_weight) / (T - 1) if T > 1 else 0.0
        init = torch.full((T, T), off) + (self_weight - off) * torch.eye(T)
        self.stitches = nn.ParameterList(nn.Parameter(init.clone()) for _ in units)
        self.act = ACTIVATIONS[activation]()
        self.towers = BatchedTowers(self.task_names, units[-1], list(tower_units),
                                    [t.output_dim for t in tasks], activation, dropout)

    def encode(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.input(features)

    def decode(self, rep: torch.Tensor) -> dict[str, torch.Tensor]:
        h = rep.unsqueeze(0)  # [1, B, D], shared by every column
        for layer, alpha in zip(self.layers, self.stitches, strict=True):
            h = torch.einsum("st,tbh->sbh", alpha, self.act(layer(h)))
        return self.towers(h)

    def shared_modules(self) -> list[nn.Module]:
        return [self.input]


@register_model("cross_stitch")
def cross_stitch(**kw) -> CrossStitch:
    return CrossStitch(**kw)
