"""Negative down-sampling of one task's training rows (kept positives, a seeded fraction of
negatives). Predictions are re-calibrated with ``mtlkit.losses.calibration``."""

from __future__ import annotations

from typing import Any

import torch

from mtlkit.data.store import TensorStore
from mtlkit.errors import ConfigError


def negative_downsample(
    store: TensorStore, task: str, rate: float, seed: int = 0
) -> tuple[TensorStore, dict[str, Any]]:
    """Keep every row that is not a labelled negative of ``task`` and ``round(rate·n_neg)``
    negatives chosen uniformly with ``seed``. Returns the subset and what was done, with the
    exact kept fraction as ``rate`` (the calibration uses it)."""
    if task not in store.labels:
        raise ConfigError(f"negative_sampling.task {task!r} is not a task; tasks are "
                          f"{sorted(store.labels)}")
    if not 0.0 < rate <= 1.0:
        raise ConfigError(f"negative_sampling.rate must be in (0, 1], got {rate}")
    labels, mask = store.labels[task], store.masks[task]
    if labels.dtype != torch.float32 or labels.dim() != 1:
        raise ConfigError(f"negative_sampling needs a binary task; {task!r} is not")
    negative = labels == 0
    if mask is not None:  # unlabelled rows / rows outside the task's sample space stay
        negative &= mask
    neg_idx = negative.nonzero().squeeze(1)
    n_neg = int(neg_idx.numel())
    if n_neg == 0:
        raise ConfigError(f"negative_sampling: task {task!r} has no negatives in the train split")
    k = max(1, round(rate * n_neg))
    gen = torch.Generator().manual_seed(seed)
    keep = ~negative
    keep[neg_idx[torch.randperm(n_neg, generator=gen)[:k]]] = True
    index = keep.nonzero().squeeze(1)
    info = {
        "task": task, "requested_rate": rate, "rate": k / n_neg, "seed": seed,
        "negatives": n_neg, "negatives_kept": k, "rows": len(store), "rows_kept": len(index),
    }
    return store.subset(index), info
