"""Any CSV/Parquet files (or DataFrames) described by a schema in the config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mtlkit.data.datasets import RawSplits, register_dataset
from mtlkit.data.readers import ReadOptions, read_table
from mtlkit.data.schema import Schema


def _load(source: str | pd.DataFrame, options: ReadOptions) -> pd.DataFrame:
    if isinstance(source, pd.DataFrame):
        frame = source.reset_index(drop=True)
        frame.attrs.setdefault("source", "the DataFrame")
        return frame
    return read_table(Path(source), options)


@register_dataset("table")
def table(
    train: str | pd.DataFrame,
    features: list[dict],
    tasks: list[dict],
    valid: str | pd.DataFrame | None = None,
    test: str | pd.DataFrame | None = None,
    read: dict | None = None,
    valid_fraction: float = 0.1,
    split_seed: int = 0,
    data_dir: str | None = None,
) -> RawSplits:
    """Files (or DataFrames) plus feature/task lists. Without ``valid``, a seeded
    ``valid_fraction`` of the training rows is held out for validation."""
    options = ReadOptions.model_validate(read or {})
    schema = Schema(features=features, tasks=tasks)
    train_frame = _load(train, options)
    if valid is None:
        order = np.random.default_rng(split_seed).permutation(len(train_frame))
        n_valid = max(1, round(valid_fraction * len(order)))
        source = train_frame.attrs.get("source")
        valid_frame = train_frame.iloc[np.sort(order[:n_valid])]
        train_frame = train_frame.iloc[np.sort(order[n_valid:])]
        valid_frame.attrs["source"] = f"{source} (validation hold-out)"
        train_frame.attrs["source"] = source
    else:
        valid_frame = _load(valid, options)
    test_frame = None if test is None else _load(test, options)
    return RawSplits(schema, train_frame, valid_frame, test_frame, options)
