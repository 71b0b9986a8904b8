"""The multi-run comparison: per-task test metrics, Δm% against single-task references, time."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mtlkit.diagnose.delta_m import DeltaM, delta_m
from mtlkit.report.runs import Run, load_runs


@dataclass
class RunRow:
    run: Run
    metrics: dict[str, dict[str, float | None]]
    reference: bool
    delta: DeltaM | None = None
    #: why there is no Δm% (when ``delta`` is None and the run is not a reference)
    note: str = ""


def load_comparison(
    run_dirs: Sequence[str | Path], baselines: Sequence[str | Path] = ()
) -> tuple[list[Run], list[Run] | None]:
    """Load ``run_dirs`` plus any ``baselines`` not among them; returns (runs, references)."""
    paths = [Path(p) for p in run_dirs]
    base_paths = [Path(p) for p in baselines]
    known = {p.resolve() for p in paths}
    runs = load_runs([*paths, *(p for p in base_paths if p.resolve() not in known)])
    wanted = {p.resolve() for p in base_paths}
    return runs, [r for r in runs if r.path.resolve() in wanted] or None


def pick_references(runs: list[Run], baselines: list[Run] | None = None) -> list[Run]:
    """The designated single-task references: ``baselines`` if given, else single_task runs."""
    return list(baselines) if baselines else [r for r in runs if r.is_single_task]


def reference_metrics(references: list[Run], split: str = "test") -> dict[str, dict]:
    """``{task: metrics}`` from the references (the first reference reporting a task wins)."""
    merged: dict[str, dict] = {}
    for ref in references:
        for task, values in ref.split_metrics(split).items():
            if task in merged:
                warnings.warn(f"task {task!r} appears in several single-task references; "
                              f"using the first, not {ref.name!r}", stacklevel=2)
                continue
            merged[task] = values
    return merged


def compare_runs(runs: list[Run], baselines: list[Run] | None = None,
                 split: str = "test") -> list[RunRow]:
    references = pick_references(runs, baselines)
    ref_paths = {r.path.resolve() for r in references}
    ref = reference_metrics(references, split)
    rows = []
    for run in runs:
        row = RunRow(run, run.split_metrics(split), run.path.resolve() in ref_paths)
        if not row.reference:
            tasks = [t for t in run.main_tasks if t in ref]
            if not ref:
                row.note = "no single-task reference"
            elif not tasks:
                row.note = "no main task in the references"
            else:
                try:
                    row.delta = delta_m(row.metrics, ref, tasks=tasks)
                except (KeyError, ValueError, ZeroDivisionError) as exc:
                    row.note = str(exc)
        rows.append(row)
    return rows


def metric_columns(rows: list[RunRow]) -> list[tuple[str, str]]:
    cols: list[tuple[str, str]] = []
    for row in rows:
        for task, values in row.metrics.items():
            cols += [(task, m) for m in values if (task, m) not in cols]
    return cols


def _fmt(x: float | None, digits: int = 4) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def comparison_table(rows: list[RunRow]) -> tuple[list[str], list[list[str]]]:
    """Header and display rows (strings) shared by the HTML report and ``mtlkit compare``."""
    cols = metric_columns(rows)
    header = ["run", "model", "balancer", *[f"{t} {m}" for t, m in cols], "Δm%",
              "best epoch", "steps", "train s", "wall s"]
    body = []
    for row in rows:
        r = row.run.results
        if row.reference:
            dm = "reference"
        elif row.delta is not None:
            dm = f"{row.delta.value:+.3f}"
        else:
            dm = "–"
        body.append([
            row.run.name, row.run.model_name, row.run.balancer_name,
            *[_fmt((row.metrics.get(t) or {}).get(m)) for t, m in cols], dm,
            str(r.get("best_epoch", "–")), str(r.get("steps", "–")),
            _fmt(r.get("train_seconds"), 1), _fmt(r.get("wall_seconds"), 1),
        ])
    return header, body
