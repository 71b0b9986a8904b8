"""Adversarial auxiliary tasks through a gradient-reversal layer (Ganin & Lempitsky, ICML 2015).

Any model can carry them: ``create_model`` builds the architecture for the other tasks and
wraps it in ``AdversarialModel``, which puts one small head per adversarial task on the pooled
shared representation behind a GRL. The GRL is the identity forward and multiplies the
gradient by ``−λ`` backward, so the head learns to predict the task while the shared trunk is
pushed to make it unpredictable (e.g. a domain-invariant representation).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mtlkit.data.schema import AdversarialSpec, TaskSpec
from mtlkit.models.base import MultiTaskModel, Representation
from mtlkit.models.layers import BatchedTowers


class _GradientReversal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, lam: float) -> torch.Tensor:
        ctx.lam = lam
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * -ctx.lam, None


def grad_reverse(x: torch.Tensor, lam: float) -> torch.Tensor:
    """Identity forward; gradient × ``−lam`` backward."""
    return _GradientReversal.apply(x, lam)


def grl_lambda(spec: AdversarialSpec, progress: float) -> float:
    """λ at training progress ``p`` ∈ [0, 1]: constant, or λ·(2/(1+exp(−γp)) − 1) (DANN)."""
    if spec.schedule == "constant":
        return spec.lambda_
    p = min(max(progress, 0.0), 1.0)
    return spec.lambda_ * (2.0 / (1.0 + math.exp(-spec.gamma * p)) - 1.0)


def pool_representation(rep: Representation) -> torch.Tensor:
    """The shared representation as ``[B, D]``: the first tensor of a tuple (by convention the
    shared features, e.g. MMoE's expert outputs — gate logits are task-specific), flattened."""
    x = rep[0] if isinstance(rep, tuple) else rep
    return x.flatten(1)


class AdversarialModel(MultiTaskModel):
    """``base`` (for the non-adversarial tasks) plus GRL heads for the adversarial tasks."""

    def __init__(self, base: MultiTaskModel, tasks: list[TaskSpec], rep_dim: int,
                 activation: str = "relu") -> None:
        super().__init__(tasks)
        self.base = base
        self.adversarial = [t for t in tasks if t.adversarial is not None]
        if not self.adversarial:
            raise ValueError("AdversarialModel needs at least one task with `adversarial`")
        units = self.adversarial[0].adversarial.units
        if any(t.adversarial.units != units for t in self.adversarial):
            raise ValueError("adversarial tasks must share the same head units")
        self.heads = BatchedTowers([t.name for t in self.adversarial], rep_dim, list(units),
                                   [t.output_dim for t in self.adversarial], activation)
        self.progress = 0.0

    # gate recording is the base model's business
    @property
    def record_gates(self) -> bool:  # type: ignore[override]
        base = self._modules.get("base")
        return bool(base is not None and base.record_gates)

    @record_gates.setter
    def record_gates(self, value: bool) -> None:
        base = self._modules.get("base")
        if base is not None:
            base.record_gates = value

    @property
    def gate_weights(self) -> dict[str, torch.Tensor]:  # type: ignore[override]
        base = self._modules.get("base")
        return base.gate_weights if base is not None else {}

    @gate_weights.setter
    def gate_weights(self, value: dict[str, torch.Tensor]) -> None:
        base = self._modules.get("base")
        if base is not None:
            base.gate_weights = value

    def lambdas(self) -> dict[str, float]:
        return {t.name: grl_lambda(t.adversarial, self.progress) for t in self.adversarial}

    def set_progress(self, progress: float) -> None:
        self.progress = float(progress)
        self.base.set_progress(progress)

    def encode(self, features: dict[str, torch.Tensor]) -> Representation:
        return self.base.encode(features)

    def decode(self, rep: Representation) -> dict[str, torch.Tensor]:
        out = self.base.decode(rep)
        pooled = pool_representation(rep)
        lams = self.lambdas()
        x = torch.stack([grad_reverse(pooled, lams[t.name]) for t in self.adversarial])
        out |= self.heads(x)
        return {name: out[name] for name in self.task_names}

    def shared_modules(self) -> list[nn.Module]:
        return self.base.shared_modules()

    def extra_losses(self) -> dict[str, torch.Tensor]:
        return self.base.extra_losses()


def representation_dim(model: MultiTaskModel, features: dict[str, torch.Tensor]) -> int:
    """Width of ``pool_representation`` for ``model``, from one forward of a probe batch."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        dim = pool_representation(model.encode(features)).shape[1]
    model.train(was_training)
    return int(dim)


def example_features(spec) -> dict[str, torch.Tensor]:
    """A two-row all-zero batch matching an ``InputSpec`` (tabular inputs)."""
    if spec.kind != "tabular":
        raise ValueError(f"adversarial tasks need tabular inputs to size their heads; the input "
                         f"kind is {spec.kind!r}")
    return {"categorical": torch.zeros(2, len(spec.cardinalities), dtype=torch.long),
            "numeric": torch.zeros(2, spec.num_numeric)}


def with_adversarial_heads(build, tasks: list[TaskSpec], spec) -> MultiTaskModel:
    """``build(tasks)`` for the non-adversarial tasks, wrapped with GRL heads for the others."""
    base_tasks = [t for t in tasks if t.adversarial is None]
    if not base_tasks:
        raise ValueError("every task is adversarial; at least one task must train the trunk")
    base = build(base_tasks)
    return AdversarialModel(base, tasks, representation_dim(base, example_features(spec)))
