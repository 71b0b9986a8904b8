"""Evaluation: predictions and metrics over whole splits."""

from __future__ import annotations

import torch

from mtlkit.data.schema import TaskSpec
from mtlkit.data.store import TensorStore
from mtlkit.evaluate.metrics import compute_metrics, roc_auc, task_metrics, to_prediction
from mtlkit.models.base import MultiTaskModel


@torch.no_grad()
def predict_store(
    model: MultiTaskModel, store: TensorStore, tasks: list[TaskSpec], batch_size: int = 16384,
    calibrate=None,
) -> dict[str, torch.Tensor]:
    """Predictions for every row of ``store`` in storage order."""
    was_training = model.training
    model.eval()
    chunks: dict[str, list[torch.Tensor]] = {t.name: [] for t in tasks}
    for batch in store.batches(batch_size):
        out = model(batch.features)
        for t in tasks:
            chunks[t.name].append(to_prediction(t, out[t.name]))
    model.train(was_training)
    preds = {name: torch.cat(parts) for name, parts in chunks.items()}
    return calibrate(preds) if calibrate is not None else preds


def evaluate_store(
    model: MultiTaskModel, store: TensorStore, tasks: list[TaskSpec], batch_size: int = 16384,
    calibrate=None,
) -> dict[str, dict[str, float]]:
    preds = predict_store(model, store, tasks, batch_size, calibrate)
    return compute_metrics(tasks, preds, store.labels, store.masks)


__all__ = ["compute_metrics", "evaluate_store", "predict_store", "roc_auc", "task_metrics",
           "to_prediction"]
