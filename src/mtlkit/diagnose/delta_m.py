"""Δm%: the average relative gain of a multi-task run over single-task references.

Convention (the literature uses both signs and both averagings, so mtlkit fixes one):

* **positive = improvement.** For metric ``m`` of task ``k``,
  ``δ_{k,m} = s_m · (M_mtl − M_stl) / |M_stl| · 100`` with ``s_m = +1`` when higher is better
  (AUC, accuracy) and ``−1`` when lower is better (logloss, RMSE, MAE).
* **per task, then across tasks.** ``Δ_k`` is the mean of ``δ_{k,m}`` over the task's metrics
  (those both runs report), and ``Δm% = mean_k Δ_k`` over the main tasks; auxiliary tasks are
  excluded. Every task weighs the same, however many metrics it has.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from mtlkit.data.schema import HIGHER_IS_BETTER

Metrics = Mapping[str, Mapping[str, float | None]]


@dataclass
class DeltaM:
    value: float
    per_task: dict[str, float]
    #: the metrics used for each task
    metrics: dict[str, list[str]]


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def delta_m(
    mtl: Metrics, stl: Metrics, tasks: Iterable[str] | None = None,
    metrics: Iterable[str] | None = None,
    higher_is_better: Mapping[str, bool] = HIGHER_IS_BETTER,
) -> DeltaM:
    """Δm% of ``mtl`` over ``stl`` (both ``{task: {metric: value}}``).

    ``tasks`` (default: tasks in both) should list the main tasks only; ``metrics`` restricts
    the metrics used (default: every metric both runs report for a task).
    """
    names = list(tasks) if tasks is not None else [t for t in mtl if t in stl]
    wanted = set(metrics) if metrics is not None else None
    per_task: dict[str, float] = {}
    used: dict[str, list[str]] = {}
    for task in names:
        if task not in mtl or task not in stl:
            side = "multi-task" if task not in mtl else "single-task reference"
            raise KeyError(f"Δm%: task {task!r} has no metrics in the {side} run")
        deltas, names_m = [], []
        for metric, ref in stl[task].items():
            value = mtl[task].get(metric)
            if (wanted is not None and metric not in wanted) or not (
                _finite(value) and _finite(ref)
            ):
                continue
            if metric not in higher_is_better:
                raise KeyError(f"Δm%: metric {metric!r} of task {task!r} has no known direction; "
                               f"known: {sorted(higher_is_better)}")
            if ref == 0:
                raise ZeroDivisionError(f"Δm%: single-task {metric} of task {task!r} is 0")
            sign = 1.0 if higher_is_better[metric] else -1.0
            deltas.append(sign * (value - ref) / abs(ref) * 100.0)
            names_m.append(metric)
        if not deltas:
            raise ValueError(f"Δm%: task {task!r} has no finite metric reported by both runs")
        per_task[task] = sum(deltas) / len(deltas)
        used[task] = names_m
    if not per_task:
        raise ValueError("Δm%: no task in common between the run and its references")
    return DeltaM(sum(per_task.values()) / len(per_task), per_task, used)
