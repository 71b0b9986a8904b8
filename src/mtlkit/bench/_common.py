"""Shared machinery of the benchmarks: run a grid of trainings, summarise over seeds, Δm%."""

from __future__ import annotations

import copy
import math
import platform
import time
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from mtlkit import api
from mtlkit.data.prepare import PreparedData
from mtlkit.diagnose import delta_m

#: label of the single-task reference rows
STL = "single_task"


@dataclass
class Run:
    """One training of the grid."""

    model: str
    balancer: str
    seed: int
    config: dict[str, Any]

    @property
    def name(self) -> str:
        return f"{self.model}-{self.balancer}-seed{self.seed}"


def with_overrides(base: dict[str, Any], **sections: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``base`` with whole keys of its sections replaced."""
    out = copy.deepcopy(base)
    for section, values in sections.items():
        out.setdefault(section, {}).update(copy.deepcopy(values))
    return out


def run_grid(runs: Iterable[Run], data: PreparedData, out_dir: Path,
             metrics: dict[str, str], log=print) -> pd.DataFrame:
    """Train every run on the same prepared data; one row per run with its test metrics.

    A run that raises is recorded with its error (and NaN metrics) instead of stopping the grid.
    """
    rows = []
    for run in runs:
        started = time.perf_counter()
        row: dict[str, Any] = {"model": run.model, "balancer": run.balancer, "seed": run.seed}
        try:
            result = api.train(run.config, out=out_dir / "runs" / run.name, data=data)
            test = result.results["test"]
            for task, metric in metrics.items():
                row[f"{task}/{metric}"] = test[task][metric]
            row["train_seconds"] = result.results["train_seconds"]
            row["best_epoch"] = result.results["best_epoch"]
            row["error"] = ""
        except Exception as exc:  # recorded in the table; the grid goes on
            for task, metric in metrics.items():
                row[f"{task}/{metric}"] = math.nan
            row["train_seconds"], row["best_epoch"] = math.nan, math.nan
            row["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
            with open(out_dir / "errors.log", "a") as fh:
                fh.write(f"== {run.name}\n{traceback.format_exc()}\n")
        row["wall_seconds"] = round(time.perf_counter() - started, 2)
        log(f"{run.name}: " + ", ".join(f"{k}={row[k]:.4f}" for k in row if "/" in k)
            + (f"  ERROR {row['error']}" if row["error"] else f"  ({row['wall_seconds']} s)"))
        rows.append(row)
        pd.DataFrame(rows).to_csv(out_dir / "runs.csv", index=False)  # progress survives a kill
    return pd.DataFrame(rows)


def summarize(runs: pd.DataFrame, metrics: dict[str, str]) -> pd.DataFrame:
    """Mean ± std over seeds per (model, balancer), and Δm% against the single-task mean.

    Δm% (``mtlkit.diagnose.delta_m``; positive = better than single-task) is computed per seed
    against the seed-averaged single-task metrics, then averaged over seeds.
    """
    cols = [f"{t}/{m}" for t, m in metrics.items()]
    ok = runs[runs["error"] == ""]
    stl = ok[ok["model"] == STL]
    reference = None
    if len(stl):
        reference = {t: {m: float(stl[f"{t}/{m}"].mean())} for t, m in metrics.items()}
    deltas = []
    for _, row in ok.iterrows():
        if reference is None:
            deltas.append(math.nan)
            continue
        mtl = {t: {m: float(row[f"{t}/{m}"])} for t, m in metrics.items()}
        deltas.append(delta_m(mtl, reference, tasks=list(metrics)).value)
    ok = ok.assign(delta_m=deltas)
    groups = ok.groupby(["model", "balancer"], sort=False)
    summary = groups[[*cols, "delta_m", "train_seconds"]].agg(["mean", "std"])
    summary.columns = [f"{c}_{s}" for c, s in summary.columns]
    summary["seeds"] = groups.size()
    failed = runs[runs["error"] != ""].groupby(["model", "balancer"], sort=False).size()
    summary["failed"] = failed.reindex(summary.index).fillna(0).astype(int)
    missing = failed.index.difference(summary.index)
    if len(missing):
        extra = pd.DataFrame(index=missing, columns=summary.columns)
        extra["seeds"], extra["failed"] = 0, failed[missing]
        summary = pd.concat([summary, extra])
    return summary.reset_index()


def _pm(mean: float, std: float, digits: int) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "—"
    text = f"{mean:.{digits}f}"
    return text + (f" ± {std:.{digits}f}" if std == std and std is not None else "")


def markdown_table(summary: pd.DataFrame, metrics: dict[str, str]) -> str:
    """The summary as a GitHub table: metric mean ± std over seeds, Δm%, seconds per run."""
    head = ["model", "balancer", *[f"{t} {m}" for t, m in metrics.items()], "Δm% (↑)",
            "train s", "seeds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in summary.iterrows():
        cells = [r["model"], r["balancer"]]
        cells += [_pm(r[f"{t}/{m}_mean"], r[f"{t}/{m}_std"], 4) for t, m in metrics.items()]
        cells += ["ref." if r["model"] == STL else _pm(r["delta_m_mean"], r["delta_m_std"], 2),
                  _pm(r["train_seconds_mean"], math.nan, 1),
                  f"{int(r['seeds'])}" + (f" ({int(r['failed'])} failed)" if r["failed"] else "")]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines)


def machine() -> str:
    return (f"{platform.machine()} {platform.processor() or ''}, {torch.get_num_threads()} "
            f"torch thread(s), torch {torch.__version__}, Python {platform.python_version()}")


def write_results(out_dir: Path, runs: pd.DataFrame, summary: pd.DataFrame,
                  metrics: dict[str, str], title: str, notes: str) -> str:
    """``runs.csv``, ``summary.csv`` and ``results.md`` in ``out_dir``; returns the markdown."""
    runs.to_csv(out_dir / "runs.csv", index=False)
    summary.to_csv(out_dir / "summary.csv", index=False)
    text = (f"# {title}\n\n{notes}\n\nMachine: {machine()}. Date: "
            f"{time.strftime('%Y-%m-%d')}.\n\n{markdown_table(summary, metrics)}\n")
    (out_dir / "results.md").write_text(text)
    return text


def delta_m_bars(ax, labels: list[str], summary: pd.DataFrame) -> None:
    """Horizontal bars of Δm% (mean ± std over seeds): green above zero, red below."""
    ax.barh(labels, summary["delta_m_mean"], xerr=summary["delta_m_std"].fillna(0),
            color=["tab:green" if v > 0 else "tab:red" for v in summary["delta_m_mean"]])
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel("Δm% vs single-task (positive = better)")


def save_png(fig, path: Path) -> None:
    """Lay out and write a ``matplotlib.figure.Figure`` (no pyplot state, no GUI backend)."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
