"""Task chaining: a task's prediction is an extra input to another task's tower.

A shared bottom MLP feeds one tower per task. ``chain`` maps a target task to the task(s) whose
prediction it reads (``{cvr: ctr}`` or ``{ctcvr: [ctr, cvr]}``); ``chain_input`` picks the
probability (``prob``, binary sources) or the raw ``logit``. By default the fed prediction is
detached (``stop_gradient: true``), so the target's loss never trains the source's tower; set
it false to let gradients flow. Towers are evaluated level by level in dependency order, all
towers of a level in one batched matmul (tasks of a level with fewer sources get zero-padded
inputs). Cycles are rejected.
"""

from __future__ import annotations

import torch
from torch import nn

from mtlkit.data.schema import TaskSpec
from mtlkit.models import register_model
from mtlkit.models.base import InputFactory, MultiTaskModel
from mtlkit.models.layers import MLP, BatchedTowers


def dependency_levels(names: list[str], chain: dict[str, list[str]]) -> list[list[str]]:
    """Tasks grouped by depth in the chain graph (sources before targets); cycles raise."""
    depth: dict[str, int] = {}

    def visit(name: str, path: tuple[str, ...]) -> int:
        if name in path:
            cycle = " → ".join([*path[path.index(name):], name])
            raise ValueError(f"task_chain: chain has a cycle: {cycle}")
        if name not in depth:
            depth[name] = 1 + max((visit(s, (*path, name)) for s in chain.get(name, [])),
                                  default=-1)
        return depth[name]

    for name in names:
        visit(name, ())
    return [[n for n in names if depth[n] == d] for d in range(max(depth.values()) + 1)]


class TaskChain(MultiTaskModel):
    def __init__(
        self, make_input: InputFactory, tasks: list[TaskSpec],
        chain: dict[str, str | list[str]] | None = None, chain_input: str = "prob",
        stop_gradient: bool = True, bottom_units: list[int] = (64,),
        tower_units: list[int] = (16,), activation: str = "relu", dropout: float = 0.0,
    ) -> None:
        super().__init__(tasks)
        if chain_input not in ("prob", "logit"):
            raise ValueError(f"task_chain: chain_input must be 'prob' or 'logit', got "
                             f"{chain_input!r}")
        spec = dict(zip(self.task_names, self.task_specs, strict=True))
        links = {t: [s] if isinstance(s, str) else list(s) for t, s in (chain or {}).items()}
        for target, sources in links.items():
            for name in [target, *sources]:
                if name not in spec:
                    raise ValueError(f"task_chain: chain names unknown task {name!r}; tasks are "
                                     f"{self.task_names}")
            for s in sources:
                if spec[s].output_dim != 1:
                    raise ValueError(f"task_chain: source {s!r} of {target!r} is multiclass; "
                                     f"only binary/regression predictions can be chained")
        self.links, self.chain_input, self.stop_gradient = links, chain_input, stop_gradient
        self.levels = dependency_levels(self.task_names, links)
        self.input = make_input()
        self.bottom = MLP(self.input.output_dim, list(bottom_units), activation, dropout)
        self.towers = nn.ModuleList()
        #: number of fed predictions per level (tower input = bottom output + these)
        self.extras = [max(len(links.get(n, [])) for n in names) for names in self.levels]
        for names, extra in zip(self.levels, self.extras, strict=True):
            self.towers.append(BatchedTowers(
                names, self.bottom.output_dim + extra, list(tower_units),
                [spec[n].output_dim for n in names], activation, dropout))

    def _fed(self, name: str, out: torch.Tensor) -> torch.Tensor:
        """The prediction of source ``name`` as fed to a target tower."""
        x = out.detach() if self.stop_gradient else out
        binary = self.task_specs[self.task_names.index(name)].type == "binary"
        return torch.sigmoid(x) if binary and self.chain_input == "prob" else x

    def encode(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.bottom(self.input(features))

    def decode(self, rep: torch.Tensor) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for names, towers, extra in zip(self.levels, self.towers, self.extras, strict=True):
            if extra == 0:
                x = rep.unsqueeze(0)
            else:
                fed = rep.new_zeros(len(names), rep.shape[0], extra)
                for k, name in enumerate(names):
                    for j, source in enumerate(self.links.get(name, [])):
                        fed[k, :, j] = self._fed(source, out[source])
                x = torch.cat([rep.unsqueeze(0).expand(len(names), -1, -1), fed], dim=2)
            out.update(towers(x))
        return {name: out[name] for name in self.task_names}

    def shared_modules(self) -> list[nn.Module]:
        return [self.input, self.bottom]


@register_model("task_chain")
def task_chain(**kw) -> TaskChain:
    return TaskChain(**kw)
