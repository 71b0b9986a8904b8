"""Checks run on raw tables before training (``mtlkit check``; ``mtlkit train`` runs them
first) and on validation predictions after it."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import torch

from mtlkit.data.encoders import (
    TabularEncoder,
    encode_label,
    encode_sample_weight,
    missing_values,
    require_columns,
)
from mtlkit.data.schema import Schema, TaskSpec
from mtlkit.errors import DataError

if TYPE_CHECKING:
    from mtlkit.data.datasets import RawSplits

#: a feature "explains" a binary label when it misclassifies at most this share of the
#: minority class (majority label per category); 0.01 = the feature recovers 99 % of it
LEAKAGE_TOLERANCE = 0.01
#: features with more distinct values than this share of rows are treated as identifiers
ID_LIKE_SHARE = 0.5
#: fewer training rows than this in the minority class of a binary task → warning, and the
#: leakage check is not applied to that task (too few rows to tell a leak from chance)
MIN_CLASS_COUNT = 30


def leakage_score(feature: pd.Series, label: np.ndarray) -> float:
    """Errors of the per-value majority vote, relative to the minority-class count (0 = leak)."""
    label = np.asarray(label, dtype=np.float64)
    minority = min(label.sum(), len(label) - label.sum())
    if minority == 0:
        return np.inf
    codes, uniques = pd.factorize(feature, use_na_sentinel=False)
    if len(uniques) > ID_LIKE_SHARE * len(codes):
        return np.inf
    if minority < MIN_CLASS_COUNT:
        # with a handful of positives any feature can isolate them by chance: leakage cannot
        # be told apart from luck, so it is not judged (the class-count warning fires instead)
        return np.inf
    positives = np.bincount(codes, weights=label, minlength=len(uniques))
    counts = np.bincount(codes, minlength=len(uniques))
    errors = np.minimum(positives, counts - positives).sum()  # rows against their value's majority
    return float(errors / minority)


def find_leakage(
    frame: pd.DataFrame, schema: Schema, labels: dict[str, torch.Tensor],
    masks: dict[str, torch.Tensor | None] | None = None,
) -> list[tuple[TaskSpec, str, float]]:
    """(task, feature, score) for every feature identical or near-identical to a label."""
    masks = masks or {}
    found = []
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
                found.append((task, feature.name, score))
    return found


def _leak_message(frame: pd.DataFrame, task: TaskSpec, feature: str, score: float) -> str:
    return (f"{frame.attrs.get('source', 'the data')}: feature column {feature!r} is identical "
            f"or near-identical to the label of task {task.name!r} (column {task.column!r}; "
            f"leakage score {score:.4f}); remove it from the features")


def check_leakage(
    frame: pd.DataFrame, schema: Schema, labels: dict[str, torch.Tensor],
    masks: dict[str, torch.Tensor | None] | None = None,
) -> None:
    """Refuse a feature identical or near-identical to a binary/regression label (adversarial
    tasks excepted: a feature that gives their label away is what the GRL is there to remove)."""
    found = [f for f in find_leakage(frame, schema, labels, masks) if f[0].adversarial is None]
    if found:
        raise DataError(_leak_message(frame, *found[0]))


# --------------------------------------------------------------------------- the full report
#: share of valid/test rows with a category unseen in train above which a column is flagged
UNSEEN_WARN = 0.2
#: validation AUC at or above this after training → leakage warning
SUSPICIOUS_AUC = 0.999


@dataclass
class Finding:
    """One problem: ``error`` stops training, ``warning`` is reported."""

    level: Literal["error", "warning"]
    check: str
    message: str


@dataclass
class CheckReport:
    """Findings plus the statistics tables printed by ``mtlkit check``."""

    findings: list[Finding] = field(default_factory=list)
    #: per split × task: rows, labelled, positives, positive_rate, missing_rate
    tasks: list[dict[str, Any]] = field(default_factory=list)
    #: per feature: kind, cardinality, missing_rate (train), unseen_valid, unseen_test
    features: list[dict[str, Any]] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "warning"]

    def add(self, level: Literal["error", "warning"], check: str, message: str) -> None:
        self.findings.append(Finding(level, check, message))

    def raise_errors(self) -> None:
        """DataError listing every error (up to five), if any."""
        errors = self.errors
        if errors:
            shown = "\n".join(f"  [{e.check}] {e.message}" for e in errors[:5])
            more = f"\n  ... and {len(errors) - 5} more" if len(errors) > 5 else ""
            raise DataError(f"data checks failed ({len(errors)} error(s)); run `mtlkit check` "
                            f"for the full report:\n{shown}{more}")

    def emit_warnings(self) -> None:
        for w in self.warnings:
            warnings.warn(f"[{w.check}] {w.message}", stacklevel=2)


def _task_rows(report: CheckReport, split: str, frame: pd.DataFrame, task: TaskSpec,
               labels: torch.Tensor, mask: torch.Tensor | None) -> None:
    n = len(frame)
    keep = np.ones(n, bool) if mask is None else mask.numpy()
    row: dict[str, Any] = {
        "split": split, "task": task.name, "role": task.role, "rows": n,
        "labelled": int(keep.sum()),
        "missing_rate": float(missing_values(frame[task.column]).mean()),
        "positives": None, "positive_rate": None,
    }
    if task.type == "binary":
        y = labels.numpy()[keep]
        pos = int((y == 1).sum())
        neg = int(y.size - pos)
        row["positives"] = pos
        row["positive_rate"] = pos / y.size if y.size else float("nan")
        if pos == 0 or neg == 0:
            report.add("warning", "one class",
                       f"task {task.name!r} ({split}): only one class among {y.size} labelled "
                       f"rows ({pos} positive, {neg} negative)")
        elif split == "train" and min(pos, neg) < MIN_CLASS_COUNT:
            report.add("warning", "tiny class",
                       f"task {task.name!r} ({split}): {pos} positive and {neg} negative "
                       f"labelled rows; fewer than {MIN_CLASS_COUNT} in one class")
    elif keep.sum() == 0:
        report.add("warning", "no labels", f"task {task.name!r} ({split}): no labelled rows")
    report.tasks.append(row)


def run_checks(
    raw: RawSplits, encoder: TabularEncoder | None = None, leakage: bool = True
) -> CheckReport:
    """Every data check on raw splits; ``encoder`` (fitted on train) is fitted if not given.

    Errors: label values outside the task's domain (first bad row named), positive labels
    outside a task's sample space (ESMM: conversion without click), bad sample weights, and
    features identical or near-identical to a label (leakage). Warnings: one-class or tiny
    classes, many categories unseen in training. Label columns listed as features are refused
    earlier, when the schema is built.
    """
    report = CheckReport()
    schema = raw.schema
    tabular = getattr(raw, "inputs", None) is None
    if encoder is None:
        try:
            encoder = TabularEncoder(schema).fit(raw.train)
        except DataError as exc:
            report.add("error", "features", str(exc))
            return report
    train_labels: dict[str, torch.Tensor] = {}
    train_masks: dict[str, torch.Tensor | None] = {}
    splits = {"train": raw.train, "valid": raw.valid, "test": raw.test}
    for split, frame in splits.items():
        if frame is None:
            continue
        for task in schema.tasks:
            try:
                labels, mask = encode_label(frame, task)
                encode_sample_weight(frame, task)
            except DataError as exc:
                report.add("error", "labels", str(exc))
                continue
            if split == "train":
                train_labels[task.name], train_masks[task.name] = labels, mask
            _task_rows(report, split, frame, task, labels, mask)
    if not tabular:
        return report
    unseen = {}
    for split, frame in splits.items():
        if frame is None or split == "train":
            continue
        try:
            require_columns(frame, [f.name for f in schema.features])
        except DataError as exc:
            report.add("error", "features", str(exc))
            continue
        unseen[split] = encoder.unseen_rate(frame)
    cards = dict(zip([e.name for e in encoder.categorical], encoder.cardinalities, strict=True))
    for feature in schema.features:
        col = raw.train[feature.name]
        row: dict[str, Any] = {
            "feature": feature.name, "kind": feature.kind,
            "cardinality": cards[feature.name] - 1 if feature.kind == "categorical"
            else int(col.nunique()),
            "missing_rate": float(missing_values(col).mean()),
        }
        for split, rates in unseen.items():
            rate = rates.get(feature.name)
            row[f"unseen_{split}"] = rate
            if rate is not None and rate > UNSEEN_WARN:
                report.add("warning", "unseen categories",
                           f"feature {feature.name!r}: {rate:.1%} of {split} rows have a "
                           f"category unseen in train")
        report.features.append(row)
    if leakage and len(train_labels) == len(schema.tasks):
        for task, feature, score in find_leakage(raw.train, schema, train_labels, train_masks):
            if task.adversarial is None:
                report.add("error", "leakage", _leak_message(raw.train, task, feature, score))
            else:
                report.add("warning", "adversarial leakage",
                           f"feature {feature!r} gives away the label of adversarial task "
                           f"{task.name!r} (leakage score {score:.4f}); the gradient reversal "
                           f"pushes the shared representation to discard it")
    return report


def check_predictions(
    tasks: list[TaskSpec], predictions: dict[str, torch.Tensor],
    masks: dict[str, torch.Tensor | None], metrics: dict[str, dict[str, float]],
) -> list[Finding]:
    """After training: validation AUC ≥ 0.999 (leakage?) or exactly constant predictions."""
    out = []
    for task in tasks:
        auc = metrics.get(task.name, {}).get("auc")
        if auc is not None and auc >= SUSPICIOUS_AUC:
            out.append(Finding("warning", "suspicious AUC",
                               f"task {task.name!r}: validation AUC {auc:.4f} ≥ {SUSPICIOUS_AUC}; "
                               f"check the features for label leakage"))
        p = predictions[task.name]
        mask = masks.get(task.name)
        if mask is not None:
            p = p[mask]
        if p.numel() > 1 and bool((p == p[:1]).all()):
            out.append(Finding("warning", "constant predictions",
                               f"task {task.name!r}: every validation prediction is the same "
                               f"value; the task did not learn"))
    return out
