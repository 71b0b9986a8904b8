"""Config rules that reshape a dataset's tasks: drop features, derive data-statistics label
columns (fitted on the training split only) and add (auxiliary) tasks.

>>> # data:
>>> #   drop_features: [year]
>>> #   derive: [{name: occ_rate, rule: target_rate, field: occupation_code, task: income}]
>>> #   add_tasks:
>>> #     - {name: occ_rate, type: regression, column: occ_rate}
>>> #     - {name: year, column: year, positive_values: ["95"], adversarial: {lambda: 1.0}}
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mtlkit.data.datasets import RawSplits
from mtlkit.data.encoders import MISSING_TOKEN, encode_label
from mtlkit.data.schema import Schema, TaskSpec
from mtlkit.errors import ConfigError


class TargetRate(BaseModel):
    """Column ``name`` = smoothed training-split positive rate of ``task`` per value of ``field``:
    ``(positives + s·prior) / (rows + s)``; values unseen in training get the prior.
    ``logit: true`` stores the log-odds instead (a regression target of unit-ish scale)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    rule: Literal["target_rate"] = "target_rate"
    field: str
    task: str
    smoothing: float = Field(default=20.0, ge=0.0)
    logit: bool = False


def _keys(values: pd.Series) -> pd.Series:
    return values.astype("string").fillna(MISSING_TOKEN)


def target_rate(raw: RawSplits, rule: TargetRate) -> dict[str, float]:
    """Add the rule's column to every split; returns the per-value rates (fitted on train)."""
    task = raw.schema.task(rule.task)
    if task.type != "binary":
        raise ConfigError(f"derive {rule.name!r}: target_rate needs a binary task, "
                          f"{task.name!r} is {task.type}")
    for frame in (raw.train, raw.valid, raw.test):
        if frame is not None and rule.field not in frame.columns:
            raise ConfigError(f"derive {rule.name!r}: field {rule.field!r} is not a column of "
                              f"{frame.attrs.get('source', 'the data')}")
    labels, mask = encode_label(raw.train, task)
    keep = np.ones(len(raw.train), bool) if mask is None else mask.numpy()
    y = labels.numpy()[keep].astype(np.float64)
    prior = float(y.mean())
    stats = pd.DataFrame({"k": _keys(raw.train[rule.field])[keep].to_numpy(), "y": y})
    agg = stats.groupby("k")["y"].agg(["sum", "count"])
    rates = (agg["sum"] + rule.smoothing * prior) / (agg["count"] + rule.smoothing)
    if rule.logit:
        eps = 1e-6
        rates = np.log(rates.clip(eps, 1 - eps) / (1 - rates.clip(eps, 1 - eps)))
        prior = float(np.log(max(prior, eps) / max(1 - prior, eps)))
    for frame in (raw.train, raw.valid, raw.test):
        if frame is not None:
            frame[rule.name] = _keys(frame[rule.field]).map(rates).astype("float64") \
                .fillna(prior).to_numpy()
    return {str(k): float(v) for k, v in rates.items()}


RULES = {"target_rate": (TargetRate, target_rate)}


def apply_data_rules(
    raw: RawSplits, drop_features: list[str], derive: list[dict[str, Any]],
    add_tasks: list[dict[str, Any]],
) -> RawSplits:
    """Apply ``data.drop_features``, ``data.derive`` and ``data.add_tasks`` (in that order)."""
    schema = raw.schema
    names = [f.name for f in schema.features]
    unknown = [c for c in drop_features if c not in names]
    if unknown:
        raise ConfigError(f"data.drop_features: {unknown} are not features; features are "
                          f"{names[:20]}")
    for i, item in enumerate(derive):
        kind = item.get("rule", "target_rate")
        if kind not in RULES:
            raise ConfigError(f"data.derive[{i}]: unknown rule {kind!r}; rules: {sorted(RULES)}")
        model, fn = RULES[kind]
        try:
            rule = model.model_validate(item)
        except ValidationError as exc:
            raise ConfigError(f"data.derive[{i}]: {exc}") from None
        fn(raw, rule)
    tasks = list(schema.tasks)
    for i, item in enumerate(add_tasks):
        try:
            tasks.append(TaskSpec.model_validate({"role": "auxiliary", **item}))
        except ValidationError as exc:
            raise ConfigError(f"data.add_tasks[{i}]: {exc}") from None
    features = [f for f in schema.features if f.name not in drop_features]
    try:
        raw.schema = Schema(features=features, tasks=tasks)
    except ValidationError as exc:
        hint = " (list it in data.drop_features to predict it)" if add_tasks else ""
        raise ConfigError(f"data: {exc.errors()[0]['msg']}{hint}") from None
    return raw
