"""One self-contained HTML report (inline CSS, PNG figures embedded as base64, no scripts)."""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import yaml

from mtlkit import __version__
from mtlkit.report import figures
from mtlkit.report.compare import (
    compare_runs,
    comparison_table,
    load_comparison,
    pick_references,
)
from mtlkit.report.runs import Run

#: (anchor, heading) of every section, in order; each is always present
SECTIONS = [
    ("runs", "Run summary"),
    ("comparison", "Comparison"),
    ("curves", "Learning curves"),
    ("weights", "Balancer weights"),
    ("gradients", "Gradient conflict"),
    ("experts", "Expert utilisation"),
    ("affinity", "Task affinity"),
]

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;
max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
h3{font-size:1.05em;margin-bottom:.3em}
table{border-collapse:collapse;margin:.6em 0;font-size:.88em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;display:block;margin:.5em 0}
pre{background:#f7f7f7;padding:.6em;font-size:.8em;overflow-x:auto}
.note{color:#555;font-size:.9em}.warn{color:#a40000;font-weight:600}
nav a{margin-right:1em}
"""


def _e(x: object) -> str:
    return html.escape(str(x))


def _img(fig, alt: str) -> str:
    data = base64.b64encode(figures.to_png(fig)).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _cell(value: object) -> str:
    try:
        float(str(value))
        return f'<td class="num">{_e(value)}</td>'
    except ValueError:
        return f"<td>{_e(value)}</td>"


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(c) for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


def _num(x: float | None, digits: int = 3) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


# --------------------------------------------------------------------- sections
def _runs_section(runs: list[Run]) -> str:
    rows = []
    for run in runs:
        r, p = run.results, run.results.get("parameters", {})
        rows.append([run.name, run.model_name, run.balancer_name,
                     run.config.get("data", {}).get("dataset", "?"),
                     ", ".join(f"{t['name']} ({t.get('role', 'main')})" for t in run.tasks),
                     r.get("best_epoch", "–"), r.get("steps", "–"),
                     p.get("parameters", "–"), p.get("shared_parameters", "–"),
                     _num(r.get("train_seconds"), 1), str(run.path)])
    parts = [_table(["run", "model", "balancer", "dataset", "tasks", "best epoch", "steps",
                     "parameters", "shared", "train s", "directory"], rows)]
    for run in runs:
        cfg = yaml.safe_dump(run.config, sort_keys=False)
        parts.append(f"<details><summary>config of {_e(run.name)}</summary>"
                     f"<pre>{_e(cfg)}</pre></details>")
    return "".join(parts)


def _comparison_section(runs: list[Run], baselines: list[Run] | None) -> str:
    rows = compare_runs(runs, baselines)
    header, body = comparison_table(rows)
    refs = pick_references(runs, baselines)
    parts = [_table(header, body)]
    if refs:
        parts.append(_note(
            "Δm% against the single-task reference(s) " + ", ".join(r.name for r in refs) +
            ": for each main task, the mean over its metrics of ±(M − M_ref)/|M_ref|·100 (sign "
            "+ when higher is better, − when lower is better), then the mean over main tasks; "
            "auxiliary tasks are excluded. Positive = the run improves on the references."))
        detail = [[row.run.name, *[f"{t} {_num(v, 3)}" for t, v in row.delta.per_task.items()]]
                  for row in rows if row.delta is not None]
        if detail:
            width = max(len(d) for d in detail)
            parts.append(_table(["run"] + ["Δ per task %"] * (width - 1),
                                [d + [""] * (width - len(d)) for d in detail]))
        notes = [f"{row.run.name}: {row.note}" for row in rows if row.note and not row.reference]
        parts += [_note(n) for n in notes]
    else:
        parts.append(_note("No single-task reference: pass --baseline RUN_DIR or include a run "
                           "whose model is single_task to get Δm%."))
    split = "test" if all(r.results.get("test") for r in runs) else "valid"
    parts.append(_note(f"Metrics on the {split} split at the best epoch."))
    return "".join(parts)


def _curves_section(runs: list[Run]) -> str:
    tasks: list[str] = []
    for run in runs:
        tasks += [t for t in run.task_names if t not in tasks]
    parts = []
    for task in tasks:
        fig = figures.learning_curves(runs, task)
        if fig is not None:
            parts.append(f"<h3>{_e(task)}</h3>" + _img(fig, f"learning curves of {task}"))
    return "".join(parts) or _note("No metrics.csv in these runs.")


def _weights_section(runs: list[Run]) -> str:
    fig = figures.weights_figure(runs)
    return _img(fig, "balancer weights") if fig is not None else _note("No weights recorded.")


def _gradients_section(runs: list[Run]) -> str:
    parts = []
    for run in runs:
        d = run.diagnostics
        if d.grads is None or not len(d.grads):
            why = ("the model shares no parameters" if d.meta.get("shared") is False
                   else "diagnostics were not recorded")
            parts.append(_note(f"{run.name}: no gradient diagnostics ({why})."))
            continue
        summary = d.summary.get("gradient") or _gradient_summary(run)
        space = d.meta.get("grad_space", "representation")
        parts.append(f"<h3>{_e(run.name)}</h3>")
        parts.append(_table(
            ["task pair", "mean cosine", "conflict rate", "records"],
            [[k.replace("|", " · "), _num(v["mean_cosine"]), _num(v["conflict_rate"]),
              v["records"]] for k, v in summary.items()]))
        parts.append(_img(figures.cosine_figure(run), f"gradient cosine of {run.name}"))
        parts.append(_note(f"Task gradients at the shared {space}, every "
                           f"{d.meta.get('every')} steps; conflict rate = fraction of records "
                           "with cosine < 0."))
    return "".join(parts)


def _gradient_summary(run: Run) -> dict:
    from mtlkit.diagnose.recorder import summarize

    return summarize(run.diagnostics).get("gradient", {})


def _experts_section(runs: list[Run]) -> str:
    parts = []
    for run in runs:
        layers = figures.gate_layers(run) if run.diagnostics.gates else {}
        if not layers:
            parts.append(_note(f"{run.name}: no gates recorded (not a gated model, or "
                               "diagnostics off)."))
            continue
        parts.append(f"<h3>{_e(run.name)}</h3>")
        for layer, (gates, mat) in layers.items():
            parts.append(_img(figures.gate_figure(run, layer, gates, mat),
                              f"expert utilisation of {run.name} {layer}"))
        gates_summary = run.diagnostics.summary.get("gates") or {}
        if gates_summary:
            parts.append(_table(
                ["gate", "mean entropy (nats)", "balance", "max share", "warning"],
                [[n, _num(s["entropy"]), _num(s["balance"]), _num(s["max_share"]),
                  s.get("warning") or ""] for n, s in gates_summary.items()]))
            flagged = sum(1 for s in gates_summary.values() if s.get("warning"))
            if flagged:
                parts.append(f'<p class="warn">{flagged} of {len(gates_summary)} gates collapsed '
                             "or leave experts unused (averaged over training).</p>")
        events = run.diagnostics.warnings
        if events:
            parts.append(_note("Raised during training (first occurrence of each): " + "; ".join(
                f"step {w['step']}: {w['message']}" for w in events)))
    parts.append(_note("Utilisation = mean gate weight per expert over the recorded batches "
                       "(each row sums to 1); balance = entropy of the mean utilisation / log E "
                       "(1 = all experts used equally)."))
    return "".join(parts)


def _affinity_section(runs: list[Run]) -> str:
    parts = []
    for run in runs:
        recs = run.diagnostics.affinity
        if not recs:
            continue
        tasks = recs[-1]["tasks"]
        mats = np.asarray([r["affinity"] for r in recs if r["tasks"] == tasks], dtype=np.float64)
        with np.errstate(all="ignore"):
            mean = np.nanmean(mats, axis=0) if np.isfinite(mats).any() else mats[0]
        parts.append(f"<h3>{_e(run.name)}</h3>")
        parts.append(_img(figures.affinity_figure(run, tasks, mean),
                          f"task affinity of {run.name}"))
        parts.append(_note(f"Mean of {len(mats)} lookahead records (SGD step of size "
                           f"{run.diagnostics.meta.get('tag_lr')} on the shared parameters): "
                           "1 − L_j(after a step on task i) / L_j(before); positive = helps."))
    return "".join(parts) or _note(
        "Task affinity was not recorded; set diagnostics.tag_every to record it.")


# --------------------------------------------------------------------- the page
def render_report(runs: list[Run], baselines: list[Run] | None = None,
                  title: str | None = None) -> str:
    if not runs:
        raise ValueError("a report needs at least one run directory")
    body = {
        "runs": _runs_section(runs),
        "comparison": _comparison_section(runs, baselines),
        "curves": _curves_section(runs),
        "weights": _weights_section(runs),
        "gradients": _gradients_section(runs),
        "experts": _experts_section(runs),
        "affinity": _affinity_section(runs),
    }
    title = title or "mtlkit report: " + ", ".join(r.name for r in runs)
    nav = "".join(f'<a href="#{a}">{_e(h)}</a>' for a, h in SECTIONS)
    sections = "".join(f'<section id="{a}"><h2>{_e(h)}</h2>{body[a]}</section>'
                       for a, h in SECTIONS)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    meta = json.dumps({"runs": [str(r.path) for r in runs], "version": __version__})
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{_e(title)}</title>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<link rel="icon" href="data:,"><style>{CSS}</style></head><body>'
        f"<h1>{_e(title)}</h1><p class=\"note\">mtlkit {_e(__version__)} · {stamp}</p>"
        f"<nav>{nav}</nav>{sections}<!-- {_e(meta)} --></body></html>\n"
    )


def build_report(run_dirs: Sequence[str | Path], out: str | Path,
                 baselines: Sequence[str | Path] = (), title: str | None = None) -> Path:
    """Write the HTML report of ``run_dirs`` (plus ``baselines``, the Δm% references) to ``out``."""
    runs, refs = load_comparison(run_dirs, baselines)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_report(runs, refs, title), encoding="utf-8")
    return out
