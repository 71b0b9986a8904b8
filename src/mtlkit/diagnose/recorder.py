"""The training-time recorder: a ``Trainer.step_callbacks`` entry writing ``RUN_DIR/diagnostics``.

Every ``every`` optimizer steps it re-runs the step's batch once (eval mode, after the update)
and appends one row to each file:

* ``steps.csv``: ``step, epoch, loss/<task>..., weight/<task>...`` (raw losses, balancer weights);
* ``grad_cosine.csv``: ``step, epoch, cos/<a>|<b>..., norm/<task>...`` (pairs in ``meta.json``);
* ``gates.jsonl``: ``{"step", "epoch", "gates": {name: {utilisation, entropy, balance,
  max_share}}}`` for every gate the model records;
* ``affinity.jsonl`` (every ``tag_every`` steps): ``{"step", "epoch", "tasks", "affinity"}``;
* ``warnings.jsonl``: the first time each gate collapses or leaves experts unused;
* ``meta.json`` (at the first record) and ``summary.json`` (at ``close``).

Gradient cosines, gate entropy/balance and affinities also go to TensorBoard under
``diagnostics/`` (losses and weights are there per epoch already). Eval mode keeps dropout from
consuming random numbers, so a run trains identically with diagnostics on or off.
"""

from __future__ import annotations

import csv
import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from mtlkit.config import DiagnosticsConfig
from mtlkit.data.store import Batch
from mtlkit.diagnose.affinity import tag_affinity
from mtlkit.diagnose.gates import GateStats, collapse_warning, gate_problem, gate_stats
from mtlkit.diagnose.gradients import (
    conflict_rate,
    cosine_matrix,
    has_shared_parameters,
    task_gradients,
)

if TYPE_CHECKING:
    from mtlkit.train.trainer import Trainer

DIAGNOSTICS_DIR = "diagnostics"
META_FILE = "meta.json"
STEPS_FILE = "steps.csv"
GRADS_FILE = "grad_cosine.csv"
GATES_FILE = "gates.jsonl"
AFFINITY_FILE = "affinity.jsonl"
WARNINGS_FILE = "warnings.jsonl"
SUMMARY_FILE = "summary.json"


class GateCollapseWarning(UserWarning):
    """A gate put almost all its weight on one expert, or leaves experts unused."""


def pair_column(a: str, b: str) -> str:
    return f"cos/{a}|{b}"


class Diagnostics:
    """Records losses, balancer weights, gradient cosines, gate use and task affinity."""

    def __init__(self, config: DiagnosticsConfig, run_dir: str | Path,
                 tensorboard: bool = True) -> None:
        self.config = config
        self.dir = Path(run_dir) / DIAGNOSTICS_DIR
        self.tensorboard = tensorboard
        #: wall seconds spent recording (this process)
        self.seconds = 0.0
        self.records = 0
        self.warnings: list[dict[str, Any]] = []
        self._warned: set[tuple[str, str]] = set()  # (gate, kind) already warned
        self._writer = None
        self._meta: dict[str, Any] | None = None

    # ----------------------------------------------------------------- the hook
    def __call__(self, trainer: Trainer, batch: Batch, weights: torch.Tensor) -> None:
        step, cfg = trainer.state.step, self.config
        main = step % cfg.every == 0
        tag = cfg.tag_every is not None and step % cfg.tag_every == 0
        if not (main or tag):
            return
        started = time.perf_counter()
        model = trainer.model
        if self._meta is None:
            self._start(trainer)
        was_training, was_recording = model.training, model.record_gates
        model.eval()
        try:
            if main:
                self._record(trainer, batch, weights, step)
            if tag and self._meta["shared"]:
                self._record_affinity(trainer, batch, step)
        finally:
            model.train(was_training)
            model.record_gates = was_recording
            if not was_recording:
                model.gate_weights = {}
        self.records += 1
        self.seconds += time.perf_counter() - started

    def close(self) -> None:
        """Write ``summary.json`` and close the TensorBoard writer."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._meta is None:
            return
        summary = summarize(read_diagnostics(self.dir.parent))
        summary["recorder_seconds"] = round(self.seconds, 4)
        summary["records"] = self.records
        (self.dir / SUMMARY_FILE).write_text(json.dumps(_jsonable(summary), indent=2))

    # ----------------------------------------------------------------- internals
    def _start(self, trainer: Trainer) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tasks = trainer.tasks
        trained = [t.name for t in tasks if t.has_loss]
        shared = has_shared_parameters(trainer.model)
        self._meta = {
            "tasks": [{"name": t.name, "type": t.type, "role": t.role, "has_loss": t.has_loss}
                      for t in tasks],
            "trained": trained,
            "pairs": [[a, b] for i, a in enumerate(trained) for b in trained[i + 1:]],
            "shared": shared,
            "model": type(trainer.model).__name__,
            "every": self.config.every,
            "grad_space": self.config.grad_space,
            "tag_every": self.config.tag_every,
            "tag_lr": self._tag_lr(trainer),
        }
        (self.dir / META_FILE).write_text(json.dumps(self._meta, indent=2))
        if self.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.dir.parent / "tensorboard"))

    def _tag_lr(self, trainer: Trainer) -> float:
        return self.config.tag_lr or trainer.config.optimizer.lr

    def _record(self, trainer: Trainer, batch: Batch, weights: torch.Tensor, step: int) -> None:
        model, meta = trainer.model, self._meta
        epoch = trainer.state.epoch + 1
        model.record_gates = self.config.gates
        names = [t.name for t in trainer.tasks]
        trained = meta["trained"]
        index = [names.index(n) for n in trained]
        if meta["shared"]:
            result, grads = task_gradients(model, trainer.losses, batch, self.config.grad_space)
            grads = grads[index]
            cos = cosine_matrix(grads)
            row: dict[str, Any] = {"step": step, "epoch": epoch}
            for a, b in meta["pairs"]:
                row[pair_column(a, b)] = float(cos[trained.index(a), trained.index(b)])
                self._scalar(pair_column(a, b), row[pair_column(a, b)], step)
            for name, norm in zip(trained, grads.norm(dim=1).tolist(), strict=True):
                row[f"norm/{name}"] = norm
            self._append_csv(GRADS_FILE, row)
        else:
            with torch.no_grad():
                result = trainer.losses(model(batch.features), batch.labels, batch.masks)
        losses, present, w = (result.values.tolist(), result.present.tolist(),
                              weights.tolist())
        row = {"step": step, "epoch": epoch}
        for k in index:
            row[f"loss/{names[k]}"] = losses[k] if present[k] else math.nan
        for k in index:
            row[f"weight/{names[k]}"] = w[k]
        self._append_csv(STEPS_FILE, row)
        if model.gate_weights:
            stats = {name: gate_stats(g) for name, g in model.gate_weights.items()}
            self._append_json(GATES_FILE, {"step": step, "epoch": epoch,
                                           "gates": {n: s.as_dict() for n, s in stats.items()}})
            self._check_collapse(stats, step)
            for name, s in stats.items():
                self._scalar(f"{name}/entropy", s.entropy, step)
                self._scalar(f"{name}/balance", s.balance, step)

    def _check_collapse(self, stats: dict[str, GateStats], step: int) -> None:
        for name, s in stats.items():
            problem = gate_problem(name, s)
            if problem is not None and (name, problem[0]) not in self._warned:
                kind, message = problem
                self._warned.add((name, kind))
                event = {"step": step, "gate": name, "kind": kind, "message": message}
                self.warnings.append(event)
                self.dir.mkdir(parents=True, exist_ok=True)
                self._append_json(WARNINGS_FILE, event)
                warnings.warn(f"step {step}: {message}", GateCollapseWarning, stacklevel=2)

    def _record_affinity(self, trainer: Trainer, batch: Batch, step: int) -> None:
        names = [t.name for t in trainer.tasks]
        index = [names.index(n) for n in self._meta["trained"]]
        z = tag_affinity(trainer.model, trainer.losses, batch, self._tag_lr(trainer))
        z = z[index][:, index]
        trained = self._meta["trained"]
        self._append_json(AFFINITY_FILE, {"step": step, "epoch": trainer.state.epoch + 1,
                                          "tasks": trained, "affinity": z.tolist()})
        for i, a in enumerate(trained):
            for j, b in enumerate(trained):
                self._scalar(f"affinity/{a}->{b}", float(z[i, j]), step)

    def _append_csv(self, name: str, row: dict[str, Any]) -> None:
        path = self.dir / name
        new = not path.exists()
        with open(path, "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)

    def _append_json(self, name: str, obj: dict[str, Any]) -> None:
        with open(self.dir / name, "a") as fh:
            fh.write(json.dumps(_jsonable(obj)) + "\n")

    def _scalar(self, key: str, value: float, step: int) -> None:
        if self._writer is not None and math.isfinite(value):
            self._writer.add_scalar(f"diagnostics/{key}", value, step)


# --------------------------------------------------------------------- reading back
@dataclass
class DiagnosticsData:
    """Everything a run's ``diagnostics/`` folder holds (empty parts when not recorded)."""

    meta: dict[str, Any] = field(default_factory=dict)
    steps: pd.DataFrame | None = None
    grads: pd.DataFrame | None = None
    gates: list[dict[str, Any]] = field(default_factory=list)
    affinity: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def recorded(self) -> bool:
        return bool(self.meta)

    def pairs(self) -> list[tuple[str, str]]:
        return [(a, b) for a, b in self.meta.get("pairs", [])]


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_diagnostics(run_dir: str | Path) -> DiagnosticsData:
    folder = Path(run_dir) / DIAGNOSTICS_DIR
    if not (folder / META_FILE).exists():
        return DiagnosticsData()

    def frame(name: str) -> pd.DataFrame | None:
        path = folder / name
        return pd.read_csv(path) if path.exists() and path.stat().st_size else None

    summary = folder / SUMMARY_FILE
    return DiagnosticsData(
        meta=json.loads((folder / META_FILE).read_text()),
        steps=frame(STEPS_FILE), grads=frame(GRADS_FILE),
        gates=_read_jsonl(folder / GATES_FILE), affinity=_read_jsonl(folder / AFFINITY_FILE),
        warnings=_read_jsonl(folder / WARNINGS_FILE),
        summary=json.loads(summary.read_text()) if summary.exists() else {},
    )


def mean_gate_utilisation(records: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Per gate: expert utilisation averaged over all records."""
    acc: dict[str, list[np.ndarray]] = {}
    for rec in records:
        for name, s in rec["gates"].items():
            acc.setdefault(name, []).append(np.asarray(s["utilisation"], dtype=np.float64))
    return {name: np.mean(rows, axis=0).tolist() for name, rows in acc.items()}


def summarize(data: DiagnosticsData) -> dict[str, Any]:
    """Conflict rate and mean cosine per pair, mean gate use with collapse checks, mean affinity."""
    out: dict[str, Any] = {}
    if data.grads is not None and len(data.grads):
        pairs = data.pairs()
        cols = [pair_column(a, b) for a, b in pairs]
        values = data.grads[cols].to_numpy(dtype=np.float64)
        rate = conflict_rate(values)
        out["gradient"] = {}
        for (a, b), r, v in zip(pairs, rate, values.T, strict=True):
            defined = np.isfinite(v)
            out["gradient"][f"{a}|{b}"] = {
                "conflict_rate": float(r), "records": int(defined.sum()),
                "mean_cosine": float(v[defined].mean()) if defined.any() else math.nan,
            }
    if data.gates:
        util = mean_gate_utilisation(data.gates)
        out["gates"] = {}
        for name, u in util.items():
            entropy = float(np.mean([r["gates"][name]["entropy"] for r in data.gates
                                     if name in r["gates"]]))
            n = len(u)
            h = -sum(x * math.log(x) for x in u if x > 0)
            stats = GateStats(u, entropy, h / math.log(n) if n > 1 else 1.0)
            out["gates"][name] = {**stats.as_dict(), "warning": collapse_warning(name, stats)}
    if data.affinity:
        tasks = data.affinity[-1]["tasks"]
        mats = np.asarray([r["affinity"] for r in data.affinity if r["tasks"] == tasks],
                          dtype=np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(mats, axis=0)
        out["affinity"] = {"tasks": tasks, "mean": mean.tolist(), "records": len(mats)}
    return out


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
