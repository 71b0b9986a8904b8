"""Per-sample losses (registered by name) and the masked per-task reduction.

A loss factory takes its params and returns ``fn(prediction, target) -> per-sample loss``.
``TaskLosses`` applies each task's loss, multiplies it by the row weights (the task's
``sample_weight`` column and its ``positive_weight``/``negative_weight``), and reduces it over
the task's own (unmasked) rows: ``Σ_i m_i w_i ℓ_i / Σ_i m_i``. Dividing by the row count, not
by ``Σ w``, keeps down-weighting negatives a real down-weighting (as ``pos_weight`` in
``BCEWithLogitsLoss``) instead of a renormalised average.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from mtlkit.data.schema import TaskSpec
from mtlkit.errors import DataError
from mtlkit.registry import Registry

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
LOSSES: Registry[LossFn] = Registry("loss")
register_loss = LOSSES.register


@register_loss("bce")
def bce() -> LossFn:
    def fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, target, reduction="none")

    return fn


@register_loss("mse")
def mse() -> LossFn:
    def fn(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(pred, target, reduction="none")

    return fn


@register_loss("ce")
def ce() -> LossFn:
    def fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, target, reduction="none")

    return fn


def masked_mean(
    per_sample: torch.Tensor, mask: torch.Tensor | None, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """``Σ m·w·ℓ / Σ m``: mean over rows where ``mask`` is true of the (weighted) losses;
    0 (not NaN) when no row is."""
    if weight is not None:
        per_sample = per_sample * weight
    if mask is None:
        return per_sample.mean()
    m = mask.to(per_sample.dtype)
    return (per_sample * m).sum() / m.sum().clamp_min(1.0)


def row_weights(
    task: TaskSpec, target: torch.Tensor, sample_weight: torch.Tensor | None
) -> torch.Tensor | None:
    """Per-row loss multipliers: sample weight × class weight (None when all are 1)."""
    w = sample_weight
    if task.type == "binary" and (task.positive_weight != 1.0 or task.negative_weight != 1.0):
        pos = torch.tensor(task.positive_weight, dtype=target.dtype)
        neg = torch.tensor(task.negative_weight, dtype=target.dtype)
        cls = neg + (pos - neg) * target  # exact for 0/1 labels, linear for soft ones
        w = cls if w is None else w * cls
    return w


@dataclass
class LossResult:
    """Per-task losses ``[T]`` (task order of the schema) and which tasks had rows."""

    values: torch.Tensor
    present: torch.Tensor  # bool [T]
    names: list[str]

    def as_dict(self) -> dict[str, torch.Tensor]:
        return dict(zip(self.names, self.values.unbind(), strict=True))


class TaskLosses:
    """Applies every task's loss to the model outputs of one batch."""

    def __init__(self, tasks: list[TaskSpec]) -> None:
        self.tasks = list(tasks)
        self.names = [t.name for t in tasks]
        self.fns = [LOSSES.create(t.loss_name, **t.loss_params) if t.has_loss else None
                    for t in tasks]

    def __call__(
        self, outputs: dict[str, torch.Tensor], labels: dict[str, torch.Tensor],
        masks: dict[str, torch.Tensor | None],
        weights: dict[str, torch.Tensor | None] | None = None,
    ) -> LossResult:
        weights = weights or {}
        values, present = [], []
        for task, fn in zip(self.tasks, self.fns, strict=True):
            pred, target = outputs[task.name], labels[task.name]
            if pred.shape[0] != target.shape[0] or (
                task.output_dim == 1 and pred.shape != target.shape
            ):
                raise DataError(
                    f"task {task.name!r}: prediction shape {tuple(pred.shape)} does not match "
                    f"label shape {tuple(target.shape)}"
                )
            if fn is None:  # reported-only task (loss: none)
                values.append(pred.new_zeros(()))
                present.append(False)
                continue
            mask = masks.get(task.name)
            w = row_weights(task, target, weights.get(task.name))
            values.append(masked_mean(fn(pred, target), mask, w))
            present.append(mask is None or bool(mask.any()))
        return LossResult(torch.stack(values), torch.tensor(present), self.names)


# registration side effects: one file per loss
from mtlkit.losses import focal, huber  # noqa: E402,F401
