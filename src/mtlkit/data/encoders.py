"""Encoders fitted on the training split only, saved with the model as plain JSON.

Missing-value policy
--------------------
* categorical: a missing value (NaN/None) is the token ``"<missing>"``; it gets its own id if
  it occurs in the training split, otherwise it maps to the out-of-vocabulary id 0 like any
  unseen value.
* numeric: missing values are replaced by the training mean (0 after standardisation) and
  counted in ``NumericEncoder.missing_count``; a non-numeric string is an error naming the
  column, row and value.
* labels: missing labels are an error unless the task sets ``allow_missing: true``, in which
  case the row is masked out of that task's loss and metrics.
"""

from __future__ import annotations

import difflib
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from mtlkit.data.schema import Schema, TaskSpec
from mtlkit.errors import DataError

OOV_ID = 0
MISSING_TOKEN = "<missing>"


def _source(frame: pd.DataFrame) -> str:
    return frame.attrs.get("source", "the data")


def row_label(values: pd.Series | pd.DataFrame, position: int) -> object:
    """The row number shown in errors: the frame's index label, i.e. the 0-based data row of
    the source file (splits keep the file's row numbers)."""
    return values.index[position]


def require_columns(frame: pd.DataFrame, columns: list[str]) -> None:
    """Raise a DataError naming the source and each missing column (with close matches)."""
    missing = [c for c in columns if c not in frame.columns]
    if not missing:
        return
    hints = []
    for col in missing[:5]:
        close = difflib.get_close_matches(col, [str(c) for c in frame.columns], n=1)
        hints.append(f"{col!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise DataError(
        f"{_source(frame)}: column(s) {', '.join(hints)} not found; "
        f"available columns: {list(frame.columns)[:20]}"
    )


def _factorize(values: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Codes into a list of distinct values as strings; missing values → ``MISSING_TOKEN``."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    names = [str(u) for u in uniques]
    if (codes < 0).any():
        codes = np.where(codes < 0, len(names), codes)
        names.append(MISSING_TOKEN)
    return codes, names


@dataclass
class CategoricalEncoder:
    """Value → contiguous id; id 0 is reserved for values unseen in training."""

    name: str
    vocabulary: list[str] = field(default_factory=list)

    def fit(self, values: pd.Series) -> CategoricalEncoder:
        codes, names = _factorize(values)
        counts = np.bincount(codes, minlength=len(names))
        totals: dict[str, int] = {}
        for name, count in zip(names, counts, strict=True):  # distinct objects may share a str
            totals[name] = totals.get(name, 0) + int(count)
        self.vocabulary = sorted(totals, key=lambda v: (-totals[v], v))
        return self

    @property
    def cardinality(self) -> int:
        """Number of ids including the OOV id."""
        return len(self.vocabulary) + 1

    def transform(self, values: pd.Series) -> np.ndarray:
        codes, names = _factorize(values)
        ids = {v: i + 1 for i, v in enumerate(self.vocabulary)}
        lookup = np.array([ids.get(name, OOV_ID) for name in names], dtype=np.int64)
        return lookup[codes] if len(lookup) else np.zeros(len(codes), dtype=np.int64)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "vocabulary": self.vocabulary}


def missing_values(values: pd.Series) -> np.ndarray:
    """Rows that are missing: NA, or (text columns only) empty / whitespace-only strings."""
    missing = values.isna().to_numpy()
    if pd.api.types.is_numeric_dtype(values.dtype):
        return missing
    return missing | (values.astype(str).str.strip() == "").to_numpy()


def to_float(values: pd.Series, column: str, source: str) -> np.ndarray:
    """Parse a column as float; a non-numeric entry is an error naming column, row and value."""
    if pd.api.types.is_numeric_dtype(values.dtype):  # already numbers: nothing to parse
        return values.to_numpy(dtype=np.float64, na_value=np.nan)
    parsed = pd.to_numeric(values, errors="coerce")
    bad = parsed.isna() & values.notna() & (values.astype(str).str.strip() != "")
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(
            f"{source}: column {column!r} row {row_label(values, row)}: value "
            f"{values.iloc[row]!r} is not a number"
        )
    return parsed.to_numpy(dtype=np.float64)


@dataclass
class NumericEncoder:
    """Standardise with training mean/std (after an optional log1p)."""

    name: str
    transform_kind: str = "none"
    mean: float = 0.0
    std: float = 1.0
    missing_count: int = 0

    def _raw(self, values: pd.Series, source: str) -> np.ndarray:
        x = to_float(values, self.name, source)
        if self.transform_kind == "log1p":
            if np.nanmin(x, initial=0.0) <= -1:
                raise DataError(f"{source}: column {self.name!r} has values ≤ -1; log1p undefined")
            x = np.log1p(x)
        return x

    def fit(self, values: pd.Series, source: str = "the data") -> NumericEncoder:
        x = self._raw(values, source)
        finite = x[np.isfinite(x)]
        if finite.size == 0:
            raise DataError(f"{source}: numeric column {self.name!r} has no values")
        self.mean = float(finite.mean())
        std = float(finite.std())
        self.std = std if std > 0 else 1.0
        return self

    def transform(self, values: pd.Series, source: str = "the data") -> np.ndarray:
        x = self._raw(values, source)
        if np.isinf(x).any():
            row = int(np.flatnonzero(np.isinf(x))[0])
            raise DataError(f"{source}: column {self.name!r} row {row_label(values, row)} "
                            "is infinite")
        missing = np.isnan(x)
        if missing.any():
            self.missing_count += int(missing.sum())
            x = np.where(missing, self.mean, x)
        return ((x - self.mean) / self.std).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "transform": self.transform_kind,
            "mean": self.mean,
            "std": self.std,
        }


def encode_label(frame: pd.DataFrame, task: TaskSpec) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Encode one task's label column; returns (labels, mask or None when every row is labelled)."""
    source = _source(frame)
    require_columns(frame, [task.column])
    raw = frame[task.column]
    missing = missing_values(raw)
    if missing.any() and not task.allow_missing:
        row = int(np.flatnonzero(missing)[0])
        raise DataError(
            f"{source}: task {task.name!r}: label column {task.column!r} has {int(missing.sum())} "
            f"missing value(s), first at row "
            f"{row_label(raw, row)}; set allow_missing: true to mask them"
        )
    if task.type == "binary" and task.positive_values is not None:
        as_str = raw.astype(str).str.strip()
        pos = as_str.isin([str(v).strip() for v in task.positive_values]).to_numpy()
        if task.negative_values is not None:
            neg = as_str.isin([str(v).strip() for v in task.negative_values]).to_numpy()
            bad = ~(pos | neg | missing)
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise DataError(
                    f"{source}: task {task.name!r}: column {task.column!r} row "
                    f"{row_label(raw, row)}: value {raw.iloc[row]!r} is in neither "
                    "positive_values nor negative_values"
                )
        values = pos.astype(np.float32)
    else:
        values = to_float(raw, task.column, source)
        valid = ~missing
        if task.type == "binary":
            bad = valid & ~np.isin(values, (0.0, 1.0))
            domain = "{0, 1}"
        elif task.type == "multiclass":
            bad = valid & ~(
                (values == np.round(values)) & (values >= 0) & (values < task.output_dim)
            )
            domain = f"integers 0..{task.output_dim - 1}"
        else:
            bad = valid & ~np.isfinite(values)
            domain = "finite numbers"
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{source}: task {task.name!r}: label column {task.column!r} row "
                f"{row_label(raw, row)}: value {raw.iloc[row]!r} is outside {domain}"
            )
        values = np.where(missing, 0.0, values)
    keep = ~missing
    if task.sample_space is not None:
        require_columns(frame, [task.sample_space])
        inside = to_float(frame[task.sample_space], task.sample_space, source)
        if not np.isin(inside[~np.isnan(inside)], (0.0, 1.0)).all():
            raise DataError(f"{source}: task {task.name!r}: sample_space column "
                            f"{task.sample_space!r} must be 0/1")
        inside = inside == 1.0
        outside_positive = ~inside & keep & (values != 0)
        if outside_positive.any():
            row = int(np.flatnonzero(outside_positive)[0])
            raise DataError(
                f"{source}: task {task.name!r}: row "
                f"{row_label(raw, row)} has a positive label in column "
                f"{task.column!r} but {task.sample_space!r} = 0 (e.g. a conversion without a "
                f"click); {int(outside_positive.sum())} such row(s)"
            )
        keep = keep & inside
    dtype = torch.long if task.type == "multiclass" else torch.float32
    labels = torch.as_tensor(values).to(dtype)
    mask = None if keep.all() else torch.as_tensor(keep)
    return labels, mask


def encode_sample_weight(frame: pd.DataFrame, task: TaskSpec) -> torch.Tensor | None:
    """Per-row loss weights of one task from its ``sample_weight`` column (None if unweighted).

    Weights must be finite and ≥ 0; a missing weight is an error naming column and row.
    """
    if task.sample_weight is None:
        return None
    source = _source(frame)
    require_columns(frame, [task.sample_weight])
    w = to_float(frame[task.sample_weight], task.sample_weight, source)
    bad = ~np.isfinite(w) | (w < 0)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{source}: task {task.name!r}: sample_weight column {task.sample_weight!r} row "
            f"{row_label(frame, row)}: value {frame[task.sample_weight].iloc[row]!r} is not a "
            "finite number ≥ 0"
        )
    return torch.tensor(w, dtype=torch.float32)


class TabularEncoder:
    """All encoders of a schema: fit on train, transform any split into tensors."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.categorical = [CategoricalEncoder(f.name) for f in schema.categorical]
        self.numeric = [NumericEncoder(f.name, f.transform) for f in schema.numeric]
        self.fitted = False

    def fit(self, frame: pd.DataFrame) -> TabularEncoder:
        require_columns(frame, [f.name for f in self.schema.features])
        for enc in self.categorical:
            enc.fit(frame[enc.name])
        for enc in self.numeric:
            enc.fit(frame[enc.name], _source(frame))
        self.fitted = True
        return self

    @property
    def cardinalities(self) -> list[int]:
        return [enc.cardinality for enc in self.categorical]

    def transform(self, frame: pd.DataFrame) -> dict[str, torch.Tensor]:
        """Features as ``{"categorical": long [N, F_cat], "numeric": float [N, F_num]}``."""
        if not self.fitted:
            raise RuntimeError("TabularEncoder.transform called before fit")
        require_columns(frame, [f.name for f in self.schema.features])
        n = len(frame)
        cat = np.empty((n, len(self.categorical)), dtype=np.int64)
        for j, enc in enumerate(self.categorical):
            cat[:, j] = enc.transform(frame[enc.name])
        num = np.empty((n, len(self.numeric)), dtype=np.float32)
        for j, enc in enumerate(self.numeric):
            before = enc.missing_count
            num[:, j] = enc.transform(frame[enc.name], _source(frame))
            if enc.missing_count > before:
                warnings.warn(
                    f"{_source(frame)}: numeric column {enc.name!r}: "
                    f"{enc.missing_count - before} missing value(s) imputed with the training mean",
                    stacklevel=2,
                )
        return {"categorical": torch.from_numpy(cat), "numeric": torch.from_numpy(num)}

    def encode_labels(
        self, frame: pd.DataFrame
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor | None]]:
        labels, masks = {}, {}
        for task in self.schema.tasks:
            labels[task.name], masks[task.name] = encode_label(frame, task)
        return labels, masks

    def encode_weights(self, frame: pd.DataFrame) -> dict[str, torch.Tensor | None]:
        return {task.name: encode_sample_weight(frame, task) for task in self.schema.tasks}

    def unseen_rate(self, frame: pd.DataFrame) -> dict[str, float]:
        """Share of rows whose category maps to the OOV id, per categorical column."""
        return {
            enc.name: float((enc.transform(frame[enc.name]) == OOV_ID).mean())
            for enc in self.categorical
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema.model_dump(),
            "oov_id": OOV_ID,
            "missing_token": MISSING_TOKEN,
            "categorical": [e.to_dict() for e in self.categorical],
            "numeric": [e.to_dict() for e in self.numeric],
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> TabularEncoder:
        enc = cls(Schema.model_validate(state["schema"]))
        for e, s in zip(enc.categorical, state["categorical"], strict=True):
            e.vocabulary = list(s["vocabulary"])
        for e, s in zip(enc.numeric, state["numeric"], strict=True):
            e.mean, e.std = float(s["mean"]), float(s["std"])
        enc.fitted = True
        return enc
