"""Progressive Layered Extraction and Customized Gate Control (Tang et al., RecSys 2020).

Every level holds task-specific expert groups (``specific_experts[k]`` experts for task k)
plus ``shared_experts`` shared experts, all evaluated as ONE batched matmul per layer over
stacked weights (experts ordered ``[task 0 | task 1 | … | shared]``).

* Task k's gate weighs exactly its own experts plus the shared ones.
* At every non-final level a shared gate weighs ALL experts of the level; its mixture feeds the
  next level's shared experts and shared gate.
* At upper levels task k's experts and gate take task k's fused output of the level below as
  input (the "selector"); shared experts and the shared gate take the shared fused output.
* The last level has no shared gate. CGC is PLE with one level.

The representation handed to balancers is the last level's ``(expert outputs [E, B, H],
task gate logits [T, B, N])``, as in MMoE.
"""

from __future__ import annotations

import torch
from torch import nn

from mtlkit.data.schema import TaskSpec
from mtlkit.models import register_model
from mtlkit.models.base import InputFactory, MultiTaskModel
from mtlkit.models.layers import BatchedTowers, StackedLinear, StackedMLP, gather_mix


class ExtractionLevel(nn.Module):
    """One CGC block: task-specific + shared experts, task gates and (optionally) a shared gate.

    Input ``[1, B, D]`` (first level: one input for everyone) or ``[T + 1, B, D]`` (task
    selectors then the shared one). Output of ``forward``: expert outputs ``[E, B, H]`` and
    task gate logits ``[T, B, N]``; ``fuse`` turns them into the next level's input.
    """

    def __init__(self, in_dim: int, specific: list[int], shared: int, units: list[int],
                 activation: str, shared_gate: bool) -> None:
        super().__init__()
        T = len(specific)
        self.num_tasks, self.num_experts = T, sum(specific) + shared
        # group of every expert: task k → k, shared → T (index into the level's inputs)
        group = [k for k, n in enumerate(specific) for _ in range(n)] + [T] * shared
        self.register_buffer("group", torch.tensor(group, dtype=torch.long), persistent=False)
        self.experts = StackedMLP(self.num_experts, in_dim, units, activation)
        starts = [sum(specific[:k]) for k in range(T)]
        shared_ids = list(range(sum(specific), self.num_experts))
        #: the experts each task gate weighs (its own, then the shared ones)
        self.gate_members = [list(range(s, s + n)) + shared_ids
                             for s, n in zip(starts, specific, strict=True)]
        self.gate_sizes = [len(m) for m in self.gate_members]
        width = max(self.gate_sizes)
        index = torch.zeros(T, width, dtype=torch.long)
        valid = torch.zeros(T, width, dtype=torch.bool)
        for k, members in enumerate(self.gate_members):
            index[k, : len(members)] = torch.tensor(members)
            valid[k, : len(members)] = True
        self.register_buffer("index", index, persistent=False)
        self.register_buffer("valid", valid, persistent=False)
        self.padded = not bool(valid.all())
        self.task_gates = StackedLinear(T, in_dim, width)
        self.shared_gate = nn.Linear(in_dim, self.num_experts) if shared_gate else None
        self.output_dim = self.experts.output_dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        expert_in = x if x.shape[0] == 1 else x.index_select(0, self.group)
        experts = self.experts(expert_in)  # [E, B, H]
        logits = self.task_gates(x if x.shape[0] == 1 else x[: self.num_tasks])
        return experts, logits

    def mix_tasks(self, experts: torch.Tensor, logits: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        return gather_mix(logits, experts, self.index, self.valid if self.padded else None)

    def mix_shared(self, x: torch.Tensor, experts: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        gates = torch.softmax(self.shared_gate(x[-1]), dim=-1)  # [B, E]
        return torch.einsum("be,ebh->bh", gates, experts), gates


class PLE(MultiTaskModel):
    """Multi-level PLE; ``num_levels=1`` is CGC."""

    def __init__(
        self, make_input: InputFactory, tasks: list[TaskSpec], num_levels: int = 2,
        specific_experts: int | dict[str, int] = 1, shared_experts: int = 1,
        expert_units: list[int] = (16,), tower_units: list[int] = (8,),
        activation: str = "relu", dropout: float = 0.0,
    ) -> None:
        super().__init__(tasks)
        if num_levels < 1:
            raise ValueError(f"ple: num_levels must be ≥ 1, got {num_levels}")
        if isinstance(specific_experts, dict):
            unknown = sorted(set(specific_experts) - set(self.task_names))
            missing = [n for n in self.task_names if n not in specific_experts]
            if unknown or missing:
                raise ValueError(f"ple: specific_experts names unknown task(s) {unknown} / "
                                 f"misses task(s) {missing}; tasks are {self.task_names}")
            specific = [int(specific_experts[n]) for n in self.task_names]
        else:
            specific = [int(specific_experts)] * len(tasks)
        if min(specific) < 0 or shared_experts < 0 or min(specific) + shared_experts < 1:
            raise ValueError(f"ple: every task gate needs ≥ 1 expert; got specific {specific}, "
                             f"shared {shared_experts}")
        self.specific, self.shared = specific, shared_experts
        self.input = make_input()
        dims = [self.input.output_dim] + [list(expert_units)[-1]] * (num_levels - 1)
        self.levels = nn.ModuleList(
            ExtractionLevel(d, specific, shared_experts, list(expert_units), activation,
                            shared_gate=level < num_levels - 1)
            for level, d in enumerate(dims)
        )
        self.towers = BatchedTowers(
            self.task_names, self.levels[-1].output_dim, list(tower_units),
            [t.output_dim for t in tasks], activation, dropout,
        )

    def _record_task_gates(self, level: int, gates: torch.Tensor, lvl: ExtractionLevel) -> None:
        if self.record_gates:
            for k, name in enumerate(self.task_names):
                self._record(f"gate/level{level + 1}/{name}", gates[k, :, : lvl.gate_sizes[k]])

    def encode(self, features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.input(features).unsqueeze(0)  # [1, B, D]
        for level, lvl in enumerate(self.levels[:-1]):
            experts, logits = lvl(x)
            fused, gates = lvl.mix_tasks(experts, logits)
            shared, shared_gates = lvl.mix_shared(x, experts)
            self._record_task_gates(level, gates, lvl)
            self._record(f"gate/level{level + 1}/shared", shared_gates)
            x = torch.cat([fused, shared.unsqueeze(0)], dim=0)  # [T + 1, B, H]
        return self.levels[-1](x)

    def decode(self, rep: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        experts, logits = rep
        last = self.levels[-1]
        fused, gates = last.mix_tasks(experts, logits)
        self._record_task_gates(len(self.levels) - 1, gates, last)
        return self.towers(fused)

    def shared_modules(self) -> list[nn.Module]:
        return [self.input, self.levels]


@register_model("ple")
def ple(**kw) -> PLE:
    return PLE(**kw)


@register_model("cgc")
def cgc(**kw) -> PLE:
    if kw.get("num_levels", 1) != 1:
        raise ValueError("cgc is PLE with one level; use model 'ple' for num_levels > 1")
    kw["num_levels"] = 1
    return PLE(**kw)
