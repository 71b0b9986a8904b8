"""Metrics over whole splits (never averaged per batch)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from mtlkit.data.schema import TaskSpec


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann–Whitney U with average ranks for ties).

    Returns NaN when only one class is present.
    """
    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    # average rank (1-based) of each run of tied scores
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [scores.size]))
    run_rank = (starts + ends + 1) / 2.0
    ranks = np.empty(scores.size)
    ranks[order] = np.repeat(run_rank, ends - starts)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def log_loss(labels: np.ndarray, probs: np.ndarray, eps: float = 1e-7) -> float:
    p = np.clip(np.asarray(probs, dtype=np.float64), eps, 1 - eps)
    y = np.asarray(labels, dtype=np.float64)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())


def to_prediction(task: TaskSpec, output: torch.Tensor) -> torch.Tensor:
    """Raw model output → user-facing prediction (probability, value or class probabilities)."""
    if task.type == "binary":
        return torch.sigmoid(output)
    if task.type == "multiclass":
        return torch.softmax(output, dim=-1)
    return output


def task_metrics(
    task: TaskSpec, prediction: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None
) -> dict[str, float]:
    """Metrics of one task over its own rows (``mask``); NaN + warning if undefined."""
    if mask is not None:
        prediction, labels = prediction[mask], labels[mask]
    p, y = prediction.double().numpy(), labels.numpy()
    if y.size == 0:
        warnings.warn(f"task {task.name!r}: no labelled rows in this split; metrics are NaN",
                      stacklevel=2)
        return {m: math.nan for m in _METRIC_NAMES[task.type]}
    if task.type == "binary":
        auc = roc_auc(y, p)
        if math.isnan(auc):
            warnings.warn(
                f"task {task.name!r}: only one class ({int(y[0])}) in this split; AUC is NaN",
                stacklevel=2,
            )
        return {"auc": auc, "logloss": log_loss(y, p)}
    if task.type == "regression":
        err = p - y
        return {"rmse": float(np.sqrt((err**2).mean())), "mae": float(np.abs(err).mean())}
    pick = np.clip(p[np.arange(y.size), y], 1e-7, 1.0)
    return {"accuracy": float((p.argmax(1) == y).mean()), "logloss": float(-np.log(pick).mean())}


_METRIC_NAMES = {
    "binary": ["auc", "logloss"],
    "regression": ["rmse", "mae"],
    "multiclass": ["accuracy", "logloss"],
}


def compute_metrics(
    tasks: list[TaskSpec], predictions: dict[str, torch.Tensor],
    labels: dict[str, torch.Tensor], masks: dict[str, torch.Tensor | None],
) -> dict[str, dict[str, float]]:
    return {
        t.name: task_metrics(t, predictions[t.name], labels[t.name], masks.get(t.name))
        for t in tasks
    }
