"""Checks run on raw tables before training: label leakage and label sanity."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from mtlkit.data.schema import Schema
from mtlkit.errors import DataError

#: a feature "explains" a binary label when it misclassifies at most this share of the
#: minority class (majority label per category); 0.01 = the feature recovers 99 % of it
LEAKAGE_TOLERANCE = 0.01
#: features with more distinct values than this share of rows are treated as identifiers
ID_LIKE_SHARE = 0.5


def leakage_score(feature: pd.Series, label: np.ndarray) -> float:
    """Errors of the per-value majority vote, relative to the minority-class count (0 = leak)."""
    label = np.asarray(label, dtype=np.float64)
    minority = min(label.sum(), len(label) - label.sum())
    if minority == 0:
        return np.inf
    codes, uniques = pd.factorize(feature, use_na_sentinel=False)
    if len(uniques) > ID_LIKE_SHARE * len(codes):
        return np.inf
    positives = np.bincount(codes, weights=label, minlength=len(uniques))
    counts = np.bincount(codes, minlength=len(uniques))
    errors = np.minimum(positives, counts - positives).sum()  # rows against their value's majority
    return float(errors / minority)


def check_leakage(
    frame: pd.DataFrame, schema: Schema, labels: dict[str, torch.Tensor],
    masks: dict[str, torch.Tensor | None] | None = None,
) -> None:
    """Refuse a feature identical or near-identical to a binary/regression label."""
    source = frame.attrs.get("source", "the data")
    masks = masks or {}
    for task in schema.tasks:
        y = labels[task.name].numpy()
        mask = masks.get(task.name)
        rows = slice(None) if mask is None else mask.numpy()
        for feature in schema.features:
            col = frame[feature.name]
            if task.type == "binary":
                score = leakage_score(col[rows] if mask is not None else col, y[rows])
                leak = score <= LEAKAGE_TOLERANCE
            elif task.type == "regression":
                x = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)[rows]
                ok = np.isfinite(x)
                yy = y[rows][ok]
                leak = bool(ok.sum() > 2 and np.std(x[ok]) > 0 and np.std(yy) > 0
                            and abs(np.corrcoef(x[ok], yy)[0, 1]) >= 0.9999)
                score = 0.0
            else:
                continue
            if leak:
                raise DataError(
                    f"{source}: feature column {feature.name!r} is identical or near-identical "
                    f"to the label of task {task.name!r} (column {task.column!r}; leakage score "
                    f"{score:.4f}); remove it from the features"
                )
