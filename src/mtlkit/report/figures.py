"""Matplotlib figures of the report (object API only: no pyplot state, no display needed)."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from mtlkit.diagnose.gates import split_gate_name
from mtlkit.diagnose.recorder import mean_gate_utilisation, pair_column
from mtlkit.report.runs import Run

DPI = 80


def to_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return buf.getvalue()


def _heatmap(fig: Figure, ax, matrix: np.ndarray, rows: Sequence[str], cols: Sequence[str],
             vmin: float, vmax: float, cmap: str, title: str) -> None:
    im = ax.imshow(matrix, vmin=vmin, vmax=vmax, cmap=cmap, aspect="auto")
    ax.set_xticks(range(len(cols)), labels=list(cols), rotation=45 if len(cols) > 4 else 0,
                  ha="right" if len(cols) > 4 else "center")
    ax.set_yticks(range(len(rows)), labels=list(rows))
    ax.set_title(title, fontsize=10)
    span = vmax - vmin
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            v = matrix[i, j]
            if np.isfinite(v):
                pos = (v - vmin) / span
                dark = abs(pos - 0.5) > 0.3 if cmap == "RdBu_r" else pos < 0.5
                text = f"{v:.2f}" if abs(v) >= 0.01 or v == 0 else f"{v:.1e}"
                ax.text(j, i, text, ha="center", va="center", fontsize=8,
                        color="white" if dark else "black")
    fig.colorbar(im, ax=ax, shrink=0.8)


def learning_curves(runs: list[Run], task: str) -> Figure | None:
    """Train loss and the main validation metric per epoch for ``task``, one line per run."""
    fig = Figure(figsize=(9, 3.2))
    loss_ax, metric_ax = fig.subplots(1, 2)
    drawn, metric_name = False, None
    for run in runs:
        m = run.metrics
        if m is None or task not in run.task_names:
            continue
        metric_name = run.main_metric(task)
        columns = (f"train/{task}/loss", f"valid/{task}/{metric_name}")
        for ax, col in zip((loss_ax, metric_ax), columns, strict=True):
            if col in m:
                ax.plot(m["epoch"], m[col], marker="o", markersize=3, label=run.name)
                drawn = True
    if not drawn:
        return None
    for ax in (loss_ax, metric_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    loss_ax.set(title=f"{task}: train loss", xlabel="epoch")
    metric_ax.set(title=f"{task}: valid {metric_name}", xlabel="epoch")
    metric_ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def weights_figure(runs: list[Run]) -> Figure | None:
    """Balancer weights over training (diagnostics every N steps, else per epoch)."""
    panels = []
    for run in runs:
        steps = run.diagnostics.steps
        if steps is not None and any(c.startswith("weight/") for c in steps):
            panels.append((run, steps, "step"))
        elif run.metrics is not None and any(c.startswith("weight/") for c in run.metrics):
            panels.append((run, run.metrics, "epoch"))
    if not panels:
        return None
    fig = Figure(figsize=(4.2 * min(len(panels), 3), 3.0 * ((len(panels) + 2) // 3)))
    axes = np.atleast_1d(fig.subplots((len(panels) + 2) // 3, min(len(panels), 3))).ravel()
    for ax, (run, frame, x) in zip(axes, panels, strict=False):
        for col in (c for c in frame if c.startswith("weight/")):
            ax.plot(frame[x], frame[col], label=col.removeprefix("weight/"))
        ax.set(title=run.name, xlabel=x, ylabel="weight")
        ax.legend(fontsize=8)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def mean_cosine_matrix(run: Run) -> tuple[list[str], np.ndarray]:
    tasks = list(run.diagnostics.meta.get("trained", []))
    mat = np.eye(len(tasks))
    grads = run.diagnostics.grads
    for a, b in run.diagnostics.pairs():
        col = grads[pair_column(a, b)].to_numpy(dtype=np.float64)
        v = np.nanmean(col) if np.isfinite(col).any() else np.nan
        i, j = tasks.index(a), tasks.index(b)
        mat[i, j] = mat[j, i] = v
    return tasks, mat


def cosine_figure(run: Run) -> Figure | None:
    """Mean gradient cosine per task pair (heatmap) and the cosine of each pair over steps."""
    grads = run.diagnostics.grads
    if grads is None or not len(grads):
        return None
    tasks, mat = mean_cosine_matrix(run)
    fig = Figure(figsize=(10, 3.4))
    hm_ax, line_ax = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.6]})
    _heatmap(fig, hm_ax, mat, tasks, tasks, -1.0, 1.0, "RdBu_r",
             f"{run.name}: mean gradient cosine")
    for a, b in run.diagnostics.pairs():
        line_ax.plot(grads["step"], grads[pair_column(a, b)], label=f"{a} · {b}", linewidth=1)
    values = grads[[pair_column(a, b) for a, b in run.diagnostics.pairs()]].to_numpy(float)
    finite = np.abs(values[np.isfinite(values)])
    bound = min(1.05, 1.15 * float(finite.max())) if finite.size and finite.max() > 0 else 1.05
    line_ax.axhline(0.0, color="black", linewidth=0.8, linestyle="--")
    line_ax.set(title="cosine over training (< 0: conflict)", xlabel="step",
                ylim=(-bound, bound))
    line_ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def gate_layers(run: Run) -> dict[str, tuple[list[str], np.ndarray]]:
    """Per gated layer: gate names and mean utilisation ``[gates, experts]`` (NaN-padded)."""
    util = mean_gate_utilisation(run.diagnostics.gates)
    layers: dict[str, list[tuple[str, list[float]]]] = {}
    for name, u in util.items():
        layer, gate = split_gate_name(name)
        layers.setdefault(layer or "gates", []).append((gate, u))
    out = {}
    for layer, gates in layers.items():
        width = max(len(u) for _, u in gates)
        mat = np.full((len(gates), width), np.nan)
        for i, (_, u) in enumerate(gates):
            mat[i, : len(u)] = u
        out[layer] = ([g for g, _ in gates], mat)
    return out


def gate_figure(run: Run, layer: str, gates: list[str], mat: np.ndarray) -> Figure:
    fig = Figure(figsize=(min(2.0 + 0.6 * mat.shape[1], 12), 1.2 + 0.45 * len(gates)))
    ax = fig.subplots()
    _heatmap(fig, ax, mat, gates, [str(e) for e in range(mat.shape[1])], 0.0,
             max(float(np.nanmax(mat)), 1e-9), "viridis",
             f"{run.name} · {layer}: mean expert utilisation")
    ax.set_xlabel("expert (index within the gate)")
    fig.tight_layout()
    return fig


def affinity_figure(run: Run, tasks: list[str], mat: np.ndarray) -> Figure:
    fig = Figure(figsize=(2.5 + 0.9 * len(tasks), 1.8 + 0.7 * len(tasks)))
    ax = fig.subplots()
    finite = np.abs(mat[np.isfinite(mat)])
    bound = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    _heatmap(fig, ax, mat, tasks, tasks, -bound, bound, "RdBu_r",
             f"{run.name}: lookahead affinity (row: step on, column: effect on)")
    fig.tight_layout()
    return fig
