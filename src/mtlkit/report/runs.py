"""Reading run directories: ``config.yaml``, ``results.json``, ``metrics.csv``, ``diagnostics/``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from mtlkit.data.schema import DEFAULT_METRIC
from mtlkit.diagnose.recorder import DiagnosticsData, read_diagnostics


@dataclass
class Run:
    """One finished training run, as read back from its directory."""

    path: Path
    name: str
    config: dict[str, Any]
    results: dict[str, Any]
    metrics: pd.DataFrame | None
    diagnostics: DiagnosticsData
    #: ``[{"name", "type", "role"}]`` in model order
    tasks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def model_name(self) -> str:
        return str(self.config.get("model", {}).get("name", "?"))

    @property
    def balancer_name(self) -> str:
        return str(self.config.get("balancer", {}).get("name", "fixed"))

    @property
    def is_single_task(self) -> bool:
        return self.model_name == "single_task"

    @property
    def task_names(self) -> list[str]:
        return [t["name"] for t in self.tasks]

    @property
    def main_tasks(self) -> list[str]:
        return [t["name"] for t in self.tasks if t.get("role", "main") == "main"]

    def main_metric(self, task: str) -> str:
        spec = next((t for t in self.tasks if t["name"] == task), {})
        return DEFAULT_METRIC.get(spec.get("type", "binary"), "auc")

    def split_metrics(self, split: str = "test") -> dict[str, dict[str, float | None]]:
        """Per-task metrics of ``split`` (falling back to valid when the run has no test split)."""
        return self.results.get(split) or self.results.get("valid") or {}


def _task_specs(path: Path, diagnostics: DiagnosticsData, results: dict) -> list[dict[str, Any]]:
    if diagnostics.meta.get("tasks"):
        return [{k: t[k] for k in ("name", "type", "role")} for t in diagnostics.meta["tasks"]]
    model_file = path / "model.pt"
    if model_file.exists():  # runs trained without diagnostics: the saved schema
        from mtlkit.train import checkpoint as ckpt

        tasks = ckpt.load(model_file)["encoder"]["schema"]["tasks"]
        return [{"name": t["name"], "type": t.get("type", "binary"),
                 "role": t.get("role", "main")} for t in tasks]
    split = results.get("test") or results.get("valid") or {}
    return [{"name": n, "type": "binary", "role": "main"} for n in split]


def load_run(path: str | Path, name: str | None = None) -> Run:
    path = Path(path)
    missing = [f for f in ("config.yaml", "results.json") if not (path / f).exists()]
    if not path.is_dir() or missing:
        raise FileNotFoundError(
            f"{path} is not a finished mtlkit run directory (missing {missing or 'folder'}); "
            "train one with `mtlkit train CONFIG --out RUN_DIR`")
    config = yaml.safe_load((path / "config.yaml").read_text()) or {}
    results = json.loads((path / "results.json").read_text())
    metrics_file = path / "metrics.csv"
    metrics = pd.read_csv(metrics_file) if metrics_file.exists() else None
    diagnostics = read_diagnostics(path)
    return Run(path, name or path.name, config, results, metrics, diagnostics,
               _task_specs(path, diagnostics, results))


def load_runs(paths: list[str | Path]) -> list[Run]:
    """Load several runs; names are folder names, made unique with the parent when needed."""
    paths = [Path(p) for p in paths]
    names = [p.resolve().name for p in paths]
    out = []
    for p, n in zip(paths, names, strict=True):
        if names.count(n) > 1:
            n = f"{p.resolve().parent.name}/{n}"
        out.append(load_run(p, n))
    return out
