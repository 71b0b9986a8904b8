"""Multi-gate Mixture-of-Experts (Ma et al., KDD 2018).

Experts and gates share one fused matmul (see ``GatedExperts``); every task has its own
softmax gate over all experts and its own tower. The shared representation handed to
gradient balancers is ``(expert outputs [B, E, H], gate logits [B, G, E])``: each gate's
logits only reach its own task, so in representation mode a gate receives its task's gradient
scaled by the balancer's weight for that task.
"""

from __future__ import annotations

import torch
from torch import nn

from mtlkit.data.schema import TaskSpec
from mtlkit.models import register_model
from mtlkit.models.base import InputFactory, MultiTaskModel
from mtlkit.models.layers import BatchedTowers, GatedExperts, mix


class MMoE(MultiTaskModel):
    """``num_gates = T`` (MMoE) or 1 (OMoE: one gate shared by all tasks)."""

    def __init__(
        self, make_input: InputFactory, tasks: list[TaskSpec], num_experts: int = 8,
        expert_units: list[int] = (16,), tower_units: list[int] = (8,), activation: str = "relu",
        dropout: float = 0.0, one_gate: bool = False,
    ) -> None:
        super().__init__(tasks)
        self.input = make_input()
        self.num_gates = 1 if one_gate else len(tasks)
        self.experts = GatedExperts(
            self.input.output_dim, num_experts, list(expert_units), self.num_gates, activation
        )
        self.towers = BatchedTowers(
            self.task_names, self.experts.output_dim, list(tower_units),
            [t.output_dim for t in tasks], activation, dropout,
        )

    def encode(self, features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.experts(self.input(features))

    def decode(self, rep: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        experts, gate_logits = rep
        mixed, gates = mix(gate_logits, experts)
        if self.record_gates:
            names = self.task_names if self.num_gates > 1 else ["shared"]
            for g, name in enumerate(names):
                self._record(f"gate/{name}", gates[:, g])
        return self.towers(mixed)

    def shared_modules(self) -> list[nn.Module]:
        return [self.input, self.experts]


@register_model("mmoe")
def mmoe(**kw) -> MMoE:
    return MMoE(**kw)
