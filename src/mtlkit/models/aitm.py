"""Adaptive Information Transfer Multi-task model (Xi et al., KDD 2021).

Tasks form a sequence (e.g. click → conversion, both over all impressions). Every task has a
tower over the shared embedding giving ``q_t`` (all towers: one batched matmul). For t > 1 the
information-transfer (AIT) module takes ``p_{t−1} = info(z_{t−1})`` (the previous task's
transferred representation) and ``q_t``, and for each candidate ``u ∈ {p_{t−1}, q_t}`` scores
its query against its key, ``ŵ_u = ⟨h1(u), h2(u)⟩ / √k``; ``z_t = Σ_u softmax(ŵ)_u h3(u)``.
``z_1 = q_1``. The task's logit is a linear head on ``z_t``.

The behavioural-expectation calibrator ``α · mean_rows(max(p_t − p_{t−1}, 0))`` (summed over
consecutive pairs; α = 0.6 as in the paper) is returned by ``extra_losses``. It is a mean over
rows, so its ratio to the (mean) BCE does not change with the batch size.

Optionally ``cvr_task`` names a reported-only task predicted as ``p_2 / p_1`` (e.g. CVR =
pCTCVR / pCTR, clipped to < 1), so AITM can be scored on the same tasks as ESMM.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from mtlkit.data.schema import TaskSpec
from mtlkit.models import register_model
from mtlkit.models.base import InputFactory, MultiTaskModel
from mtlkit.models.esmm import resolve_roles
from mtlkit.models.layers import ACTIVATIONS, StackedLinear, StackedMLP


class AIT(nn.Module):
    """Attention over the transferred and the own representation (the paper's AIT unit)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.query = nn.Linear(dim, dim, bias=False)
        self.key = nn.Linear(dim, dim, bias=False)
        self.value = nn.Linear(dim, dim, bias=False)
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, transferred: torch.Tensor, own: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        u = torch.stack([transferred, own], dim=1)  # [B, 2, H]
        scores = (self.query(u) * self.key(u)).sum(-1) * self.scale  # [B, 2]
        weights = torch.softmax(scores, dim=1)
        return (weights.unsqueeze(-1) * self.value(u)).sum(1), weights


class AITM(MultiTaskModel):
    def __init__(
        self, make_input: InputFactory, tasks: list[TaskSpec], sequence: list[str] | None = None,
        cvr_task: str | None = None, tower_units: list[int] = (64, 32), activation: str = "relu",
        alpha: float = 0.6,
    ) -> None:
        super().__init__(tasks)
        if alpha < 0:
            raise ValueError(f"aitm: alpha must be ≥ 0, got {alpha}")
        if cvr_task is not None:
            resolve_roles(self.task_names, "aitm", cvr_task=cvr_task)
        sequence = list(sequence) if sequence is not None else [
            n for n in self.task_names if n != cvr_task]
        resolve_roles(self.task_names, "aitm", **{f"sequence[{i}]": n
                                                   for i, n in enumerate(sequence)})
        left = sorted(set(self.task_names) - set(sequence) - {cvr_task})
        if left or len(sequence) < 2:
            raise ValueError(f"aitm: sequence {sequence} must list ≥ 2 tasks and cover every "
                             f"task but cvr_task; not covered: {left}")
        if cvr_task is not None and cvr_task in sequence:
            raise ValueError(f"aitm: cvr_task {cvr_task!r} is derived; remove it from sequence")
        for spec in self.task_specs:
            if spec.type != "binary":
                raise ValueError(f"aitm: task {spec.name!r} must be binary")
        self.sequence, self.cvr_task, self.alpha = sequence, cvr_task, float(alpha)
        S, units = len(sequence), list(tower_units)
        self.input = make_input()
        self.towers = StackedMLP(S, self.input.output_dim, units, activation)
        H = self.towers.output_dim
        self.info = StackedLinear(S - 1, H, H)  # transfer t−1 → t
        self.ait = nn.ModuleList(AIT(H) for _ in range(S - 1))
        self.heads = StackedLinear(S, H, 1)
        self.act = ACTIVATIONS[activation]()
        self._calibrator: torch.Tensor | None = None

    def encode(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.input(features)

    def decode(self, rep: torch.Tensor) -> dict[str, torch.Tensor]:
        q = self.towers(rep.unsqueeze(0))  # [S, B, H]
        zs = [q[0]]
        for t in range(1, len(self.sequence)):
            w, b = self.info.weight[t - 1], self.info.bias[t - 1]
            transferred = self.act(torch.addmm(b, zs[-1], w))
            z, weights = self.ait[t - 1](transferred, q[t])
            self._record(f"gate/ait/{self.sequence[t]}", weights)
            zs.append(z)
        logits = self.heads(torch.stack(zs)).squeeze(-1)  # [S, B]
        probs = torch.sigmoid(logits)
        self._calibrator = self.alpha * F.relu(probs[1:] - probs[:-1]).mean(1).sum()
        out = {name: logits[t] for t, name in enumerate(self.sequence)}
        if self.cvr_task is not None:  # p_2 / p_1, clipped below 1, as a logit
            log_r = (F.logsigmoid(logits[1]) - F.logsigmoid(logits[0])).clamp(max=-1e-6)
            out[self.cvr_task] = log_r - torch.log(-torch.expm1(log_r))
        return out

    def shared_modules(self) -> list[nn.Module]:
        return [self.input]

    def extra_losses(self) -> dict[str, torch.Tensor]:
        if self._calibrator is None or self.alpha == 0:
            return {}
        return {"aitm_calibrator": self._calibrator}


@register_model("aitm")
def aitm(**kw) -> AITM:
    return AITM(**kw)
