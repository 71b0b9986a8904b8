"""A shallow bias tower (Zhao et al., "Recommending what video to watch next", RecSys 2019).

Wraps any registered model (``base``, built with ``base_params``). The named ``bias_features``
(e.g. position, device) are taken OUT of the base model's input and feed a shallow tower whose
logit is added to the logits of ``bias_tasks`` during training, so the base model learns
position-free relevance. During training each bias feature of each row is dropped with
probability ``feature_dropout`` (default 10 %, as in the paper): a categorical id becomes the
out-of-vocabulary id 0, a numeric value becomes 0 (the training mean). In eval mode (serving,
validation, test) the bias tower is switched off and the outputs are the base model's alone.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mtlkit.data.schema import TaskSpec
from mtlkit.models import MODELS, register_model
from mtlkit.models.base import InputFactory, MultiTaskModel
from mtlkit.models.layers import MLP


class BiasTower(MultiTaskModel):
    def __init__(
        self, make_input: InputFactory, tasks: list[TaskSpec], bias_features: list[str],
        base: str = "mmoe", base_params: dict[str, Any] | None = None,
        bias_tasks: list[str] | None = None, units: list[int] = (8,),
        feature_dropout: float = 0.1, activation: str = "relu",
    ) -> None:
        super().__init__(tasks)
        if not bias_features:
            raise ValueError("bias_tower: bias_features must name at least one input feature")
        if not 0.0 <= feature_dropout < 1.0:
            raise ValueError(f"bias_tower: feature_dropout must be in [0, 1), got "
                             f"{feature_dropout}")
        if base == "bias_tower":
            raise ValueError("bias_tower: base must be another model")
        binary = [t.name for t in tasks if t.type == "binary"]
        bias_tasks = list(bias_tasks) if bias_tasks is not None else binary
        bad = [n for n in bias_tasks if n not in self.task_names
               or self.task_specs[self.task_names.index(n)].output_dim != 1]
        if bad or not bias_tasks:
            raise ValueError(f"bias_tower: bias_tasks {bad or bias_tasks} must name binary or "
                             f"regression tasks among {self.task_names}")
        self.bias_tasks, self.feature_dropout = bias_tasks, float(feature_dropout)
        exclude = list(bias_features)
        self.base = MODELS.get(base)(make_input=lambda: make_input(exclude=exclude),
                                     tasks=tasks, **(base_params or {}))
        self.bias_input = make_input(only=exclude)
        mlp = MLP(self.bias_input.output_dim, list(units), activation)
        self.bias_net = nn.Sequential(mlp, nn.Linear(mlp.output_dim, len(bias_tasks)))
        self._rep_is_tensor = True

    # gate recording and regularisers belong to the wrapped model
    @property
    def record_gates(self) -> bool:  # type: ignore[override]
        return self.base.record_gates if "base" in self._modules else False

    @record_gates.setter
    def record_gates(self, value: bool) -> None:
        if "base" in self._modules:
            self.base.record_gates = value

    @property
    def gate_weights(self) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return self.base.gate_weights if "base" in self._modules else {}

    @gate_weights.setter
    def gate_weights(self, value: dict[str, torch.Tensor]) -> None:
        if "base" in self._modules:
            self.base.gate_weights = value

    def extra_losses(self) -> dict[str, torch.Tensor]:
        return self.base.extra_losses()

    def _drop(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Replace each bias feature value by its default with probability feature_dropout."""
        out = {}
        for key, x in features.items():
            keep = torch.rand(x.shape, device=x.device) >= self.feature_dropout
            out[key] = torch.where(keep, x, torch.zeros_like(x))
        return out

    def bias_logits(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[B, len(bias_tasks)]`` logits of the bias tower."""
        selected = self.bias_input.select(features)
        if self.training and self.feature_dropout > 0:
            selected = self._drop(selected)
        return self.bias_net(self.bias_input.inner(selected))

    def encode(self, features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        rep = self.base.encode(features)
        self._rep_is_tensor = isinstance(rep, torch.Tensor)
        parts = (rep,) if self._rep_is_tensor else tuple(rep)
        return (*parts, self.bias_logits(features))

    def decode(self, rep: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        *base_rep, bias = rep
        out = self.base.decode(base_rep[0] if self._rep_is_tensor else tuple(base_rep))
        if self.training:
            for j, name in enumerate(self.bias_tasks):
                out[name] = out[name] + bias[:, j]
        return out

    def shared_modules(self) -> list[nn.Module]:
        return self.base.shared_modules()


@register_model("bias_tower")
def bias_tower(**kw) -> BiasTower:
    return BiasTower(**kw)
