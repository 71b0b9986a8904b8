"""``mtlkit bench ...``: one command per published study; each writes tables and plots to --out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks that reproduce published tables.")
REPO = Path(__file__).resolve().parents[3]

Out = Annotated[Path, typer.Option("--out", "-o", help="output folder")]
Quick = Annotated[bool, typer.Option("--quick", help="small smoke-test version (< 2 min)")]


@bench_app.command("correlation")
def correlation(out: Out = Path("bench-out/correlation"), quick: Quick = False,
                runs: Annotated[int | None, typer.Option(help="runs per cell")] = None,
                steps: Annotated[int | None, typer.Option(help="steps per run")] = None) -> None:
    """MMoE paper §3/§5: loss vs steps and final-loss histograms per label correlation."""
    from mtlkit.bench.correlation import run_correlation

    typer.echo(f"running the correlation study into {out} ...")
    run_correlation(out, quick=quick, runs=runs, steps=steps)
    typer.echo((out / "table.md").read_text())
    typer.echo(f"wrote curves.png, histograms.png, table.md and results.json to {out}")
    if quick:
        typer.echo("quick mode is a smoke test: too few runs and steps to draw conclusions")


@bench_app.command("census")
def census(out: Out = Path("bench-out/census"), quick: Quick = False,
           group: Annotated[int, typer.Option(help="task group 1 or 2")] = 1,
           seeds: Annotated[int, typer.Option(help="number of seeds")] = 5,
           models: Annotated[str | None, typer.Option(
               help="comma-separated subset of the model labels, e.g. MMoE,PLE")] = None,
           overrides: Annotated[list[str] | None, typer.Option(
               "--set", help="config override for every run, e.g. train.epochs=100 "
               "(repeatable)")] = None,
           search: Annotated[int, typer.Option(
               help="random hyper-parameter search: trials per model (trial 0 = the config as "
               "is; seed 0, chosen by the main task's validation AUC) before the seeds")] = 0,
           ) -> None:
    """Census-Income: every architecture, mean and best-of-seeds test AUC per task.

    Runs already finished in --out with the same config are reused, so an interrupted
    benchmark started again continues where it stopped."""
    from mtlkit.bench.census import ALL_MODELS, format_table, run_census, search_census

    chosen = {"MMoE": "mmoe", "Shared-Bottom": "shared-bottom"} if quick else ALL_MODELS
    if models is not None:
        labels = [m.strip() for m in models.split(",") if m.strip()]
        unknown = [m for m in labels if m not in ALL_MODELS]
        if unknown:
            raise typer.BadParameter(f"unknown model(s) {unknown}; known: {list(ALL_MODELS)}")
        chosen = {m: ALL_MODELS[m] for m in labels}
    tuned = None
    if search > 0:
        tuned = search_census(out, chosen, search, group=group, quick=quick, overrides=overrides)
        typer.echo((out / "search.md").read_text())
    rows = run_census(out, models=chosen, seeds=tuple(range(1 if quick else seeds)),
                      group=group, quick=quick, overrides=overrides, model_overrides=tuned)
    typer.echo(format_table(rows))
    typer.echo(f"wrote results.json and table.md{' and search.md' if search else ''} to {out}")
    if quick:
        typer.echo("quick mode is a smoke test (1 epoch on 10 % of the rows): the AUCs say "
                   "nothing about the models")


@bench_app.command("multi-fashion")
def multi_fashion(out: Out = Path("bench-out/multi-fashion"), quick: Quick = False) -> None:
    """Every balancer on Multi-Fashion (two overlaid Fashion-MNIST items), Δm% vs single-task."""
    from mtlkit.bench import multi_fashion as run

    run(out, quick=quick)


@bench_app.command("reviews")
def reviews(out: Out = Path("bench-out/reviews"), quick: Quick = False) -> None:
    """Text multi-task learning on clothing reviews (rating, recommended, department)."""
    from mtlkit.bench import reviews as run

    run(out, quick=quick)


@bench_app.command("peers")
def peers(out: Out = Path("bench-out/peers"), quick: Quick = False) -> None:
    """mtlkit vs torch-rechub, DeepCTR-Torch and LibMTL (installed into their own venv):
    census MMoE training samples/s, peak RSS and test AUC; PCGrad/MGDA/CAGrad step time."""
    script = REPO / "benchmarks" / "throughput.py"
    if not script.exists():
        raise typer.BadParameter(f"{script} not found: run from a checkout of the repository")
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(script), "--out", str(out / "results.json"), "--epochs", "2"]
    if quick:  # one thread, 20k rows, 1 epoch, 20 timed steps per balancer
        cmd = [*cmd[:-1], "1", "--threads", "1", "--train-rows", "20000", "--steps", "20"]
    raise typer.Exit(subprocess.run(cmd, cwd=REPO).returncode)
