"""Entire Space Multi-task Model (Ma et al., SIGIR 2018).

A CTR tower and a CVR tower over the shared embedding; ``pCTCVR = pCTR · pCVR``. The model
outputs logits for the three tasks; the ctcvr logit is ``logit(pCTR · pCVR)`` computed in log
space, so BCE-with-logits on it is exactly BCE(pCTCVR) without under/overflow:

    log p     = logσ(a) + logσ(b)
    log(1−p)  = log(σ(−a) + σ(a)σ(−b)) = logaddexp(logσ(−a), logσ(a) + logσ(−b))
    logit p   = log p − log(1 − p)

Which losses apply comes from the data config, as in the paper: ctr (click) and ctcvr (click AND
conversion) over all impressions, and the cvr task ``loss: none`` with ``sample_space: click`` so
it has no direct loss but its metrics use clicked rows only. pCVR is learned only through the
ctcvr path.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from mtlkit.data.schema import TaskSpec
from mtlkit.models import register_model
from mtlkit.models.base import InputFactory, MultiTaskModel
from mtlkit.models.layers import BatchedTowers


def product_logit(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``logit(σ(a)·σ(b))``, stable for any finite a, b."""
    log_p = F.logsigmoid(a) + F.logsigmoid(b)
    log_q = torch.logaddexp(F.logsigmoid(-a), F.logsigmoid(a) + F.logsigmoid(-b))
    return log_p - log_q


def resolve_roles(task_names: list[str], model: str, **roles: str | None) -> dict[str, str]:
    """Check that each role (e.g. ``ctr_task``) names a task; error lists the tasks."""
    out = {}
    for role, name in roles.items():
        if name is None:
            continue
        if name not in task_names:
            raise ValueError(f"{model}: {role}={name!r} is not a task; tasks are {task_names}. "
                             f"Set model.params.{role} to the task's name")
        out[role] = name
    if len(set(out.values())) != len(out):
        raise ValueError(f"{model}: roles must name different tasks, got {out}")
    return out


class ESMM(MultiTaskModel):
    def __init__(
        self, make_input: InputFactory, tasks: list[TaskSpec], ctr_task: str = "ctr",
        cvr_task: str = "cvr", ctcvr_task: str = "ctcvr", tower_units: list[int] = (64, 32),
        activation: str = "relu", dropout: float = 0.0,
    ) -> None:
        super().__init__(tasks)
        roles = resolve_roles(self.task_names, "esmm", ctr_task=ctr_task, cvr_task=cvr_task,
                              ctcvr_task=ctcvr_task)
        others = sorted(set(self.task_names) - set(roles.values()))
        if others:
            raise ValueError(f"esmm: predicts exactly ctr, cvr and ctcvr; task(s) {others} have "
                             f"no tower (tasks: {self.task_names})")
        for name in self.task_names:
            if self.task_specs[self.task_names.index(name)].type != "binary":
                raise ValueError(f"esmm: task {name!r} must be binary")
        self.ctr, self.cvr, self.ctcvr = ctr_task, cvr_task, ctcvr_task
        self.input = make_input()
        self.towers = BatchedTowers([ctr_task, cvr_task], self.input.output_dim,
                                    list(tower_units), [1, 1], activation, dropout)

    def encode(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.input(features)

    def decode(self, rep: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.towers(rep.unsqueeze(0))
        out[self.ctcvr] = product_logit(out[self.ctr], out[self.cvr])
        return out

    def shared_modules(self) -> list[nn.Module]:
        return [self.input]


@register_model("esmm")
def esmm(**kw) -> ESMM:
    return ESMM(**kw)
