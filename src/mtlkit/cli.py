"""``mtlkit`` command line: a thin typer layer over ``mtlkit.api``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from mtlkit.errors import ConfigError, MtlkitError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Multi-task learning: train, evaluate and serve multi-task models.")
# a wide table when piped (rich would assume 80 columns and truncate every cell)
console = Console(width=None if sys.stdout.isatty() else 160)


def _fail(exc: Exception) -> None:
    console.print(f"[bold red]error:[/] {exc}")
    raise typer.Exit(code=2)


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="YAML run configuration")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="run directory")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="override: key.path=value")
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue the run in --out")] = False,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="replace a run already in --out")] = False,
) -> None:
    """Train a model; writes config.yaml, metrics.csv, checkpoints and results.json to --out."""
    from mtlkit import api

    out = out or Path("runs") / config.stem
    existing = [n for n in (api.RESULTS_FILE, api.CHECKPOINT, api.MODEL_FILE)
                if (out / n).exists()]
    if existing and not (resume or overwrite):
        _fail(ConfigError(f"{out} already holds a run ({', '.join(existing)}); use --resume to "
                          "continue it, --overwrite to replace it, or another --out"))
    try:
        result = api.train(config, out=out, overrides=set_ or [], resume=resume)
    except (MtlkitError, FileNotFoundError, KeyError) as exc:
        _fail(exc)
    _print_results(result.results)
    console.print(f"run directory: {out}")


def _print_results(results: dict) -> None:
    table = Table(title=f"best epoch {results.get('best_epoch')}")
    table.add_column("split")
    table.add_column("task")
    table.add_column("metrics")
    for split in ("valid", "test"):
        for task, metrics in (results.get(split) or {}).items():
            shown = "  ".join(f"{k}={v:.4f}" if v is not None else f"{k}=nan"
                              for k, v in metrics.items())
            table.add_row(split, task, shown)
    console.print(table)


@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="a run directory written by train")],
    data: Annotated[
        Path | None, typer.Option(help="file to evaluate (default: test split)")
    ] = None,
) -> None:
    """Per-task metrics of a trained run."""
    from mtlkit import api

    try:
        metrics = api.evaluate(run_dir, data)
    except (MtlkitError, FileNotFoundError) as exc:
        _fail(exc)
    if data is not None:
        metrics = {"data": metrics}
    console.print_json(json.dumps(api._jsonable(metrics)))


@app.command()
def predict(
    run_dir: Annotated[Path, typer.Argument(help="a run directory written by train")],
    input: Annotated[Path, typer.Argument(help="CSV or Parquet rows to score")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output .csv or .parquet")],
    chunk_rows: Annotated[int, typer.Option(help="rows per streamed chunk")] = 262144,
) -> None:
    """Write one prediction column per task, rows in input order."""
    from mtlkit import api

    try:
        n = api.predict(run_dir, input, out, chunk_rows)
    except (MtlkitError, FileNotFoundError, ValueError) as exc:
        _fail(exc)
    console.print(f"wrote {n} rows to {out}")


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="a run directory written by train")],
    format: Annotated[str, typer.Option("--format", "-f", help="onnx or torchscript")] = "onnx",
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="output folder (default: RUN_DIR/export)")] = None,
) -> None:
    """Export the model for serving (named per-task outputs) plus vocabulary.json (encoders)."""
    from mtlkit.export import export as export_run

    try:
        done = export_run(run_dir, format, out)  # type: ignore[arg-type]
    except (MtlkitError, FileNotFoundError, ValueError) as exc:
        _fail(exc)
    console.print(f"wrote {done.model} (inputs {done.inputs}, outputs {done.outputs}) "
                  f"and {done.vocabulary}")


@app.command()
def datasets() -> None:
    """List the built-in datasets and where mtlkit looks for their files."""
    from mtlkit.data.datasets import DATASETS, data_dir_candidates

    table = Table(title="built-in datasets")
    table.add_column("name")
    table.add_column("description")
    for name in DATASETS.names():
        doc = (DATASETS.get(name).__doc__ or "").strip().split("\n\n")[0]
        table.add_row(name, " ".join(doc.replace("``", "").split()))
    console.print(table)
    console.print("data directories searched, in order (set MTLKIT_DATA_DIR or data.data_dir):")
    for path in data_dir_candidates():
        console.print(f"  {path.resolve()}  {'(exists)' if path.exists() else '(missing)'}")


@app.command()
def report(
    run_dirs: Annotated[list[Path], typer.Argument(help="run directories written by train")],
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write")] = Path(
        "report.html"),
    baseline: Annotated[list[Path] | None, typer.Option(
        "--baseline", help="single-task reference run for Δm% (repeatable; default: runs "
        "whose model is single_task)")] = None,
    title: Annotated[str | None, typer.Option(help="page title")] = None,
) -> None:
    """One self-contained HTML report: curves, diagnostics, comparison and Δm%."""
    from mtlkit.report import build_report

    try:
        path = build_report(run_dirs, out, baseline or [], title)
    except (MtlkitError, FileNotFoundError, ValueError, KeyError) as exc:
        _fail(exc)
    console.print(f"wrote {path}")


@app.command()
def compare(
    run_dirs: Annotated[list[Path], typer.Argument(help="run directories written by train")],
    baseline: Annotated[list[Path] | None, typer.Option(
        "--baseline", help="single-task reference run for Δm% (repeatable)")] = None,
) -> None:
    """Per-task test metrics, Δm% against single-task references, and time, as a table."""
    from mtlkit.report import compare_runs, comparison_table, load_comparison

    try:
        runs, refs = load_comparison(run_dirs, baseline or [])
        rows = compare_runs(runs, refs)
    except (MtlkitError, FileNotFoundError, ValueError, KeyError) as exc:
        _fail(exc)
    header, body = comparison_table(rows)
    table = Table(title="runs (test split; Δm%: + = better than the single-task references)")
    for h in header:
        table.add_column(h, justify="left" if h in ("run", "model", "balancer") else "right")
    for r in body:
        table.add_row(*r)
    console.print(table)
    for row in rows:
        if row.note and not row.reference:
            console.print(f"[yellow]{row.run.name}[/]: no Δm% ({row.note})")


@app.command()
def check(
    config: Annotated[Path, typer.Argument(help="YAML run configuration")],
    set_: Annotated[list[str] | None,
                    typer.Option("--set", help="override: key.path=value")] = None,
) -> None:
    """Check the configured data (the checks `train` runs first); exit code 1 on errors."""
    from mtlkit import api

    try:
        report = api.check(config, overrides=set_ or [])
    except (MtlkitError, FileNotFoundError, KeyError) as exc:
        _fail(exc)
    _print_check_report(report)
    if report.errors:
        raise typer.Exit(code=1)


def _fmt(value, pattern: str = "{:.4f}") -> str:
    return "" if value is None else pattern.format(value)


def _print_check_report(report) -> None:
    from rich.markup import escape

    tasks = Table(title="tasks")
    for h in ("split", "task", "role", "rows", "labelled", "positives", "positive rate",
              "label missing"):
        tasks.add_column(h, justify="left" if h in ("split", "task", "role") else "right")
    for r in report.tasks:
        tasks.add_row(r["split"], r["task"], r["role"], str(r["rows"]), str(r["labelled"]),
                      _fmt(r["positives"], "{}"), _fmt(r["positive_rate"]),
                      _fmt(r["missing_rate"], "{:.2%}"))
    console.print(tasks)
    if report.features:
        splits = [k.removeprefix("unseen_") for k in report.features[0] if k.startswith("unseen_")]
        feats = Table(title="features (cardinality: distinct training values)")
        for h in ("feature", "kind", "cardinality", "missing (train)",
                  *[f"unseen in {s}" for s in splits]):
            feats.add_column(h, justify="left" if h in ("feature", "kind") else "right")
        for r in report.features:
            feats.add_row(r["feature"], r["kind"], str(r["cardinality"]),
                          _fmt(r["missing_rate"], "{:.2%}"),
                          *[_fmt(r[f"unseen_{s}"], "{:.2%}") for s in splits])
        console.print(feats)
    for f in report.findings:
        colour = "red" if f.level == "error" else "yellow"
        console.print(f"[bold {colour}]{f.level}[/] {escape(f'[{f.check}] {f.message}')}")
    console.print(f"{len(report.errors)} error(s), {len(report.warnings)} warning(s)")


def _register_bench() -> None:
    from mtlkit.bench.cli import bench_app

    app.add_typer(bench_app, name="bench")


_register_bench()


def main() -> None:
    import warnings

    from mtlkit.errors import format_warning

    warnings.formatwarning = format_warning  # the command line: mtlkit's warnings, no source
    app()


if __name__ == "__main__":
    main()
