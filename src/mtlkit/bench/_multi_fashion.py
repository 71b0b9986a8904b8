"""Multi-Fashion: every balancer on a shared LeNet trunk vs two single-task LeNets (issue 7.3).

Each balancer trains ``shared_bottom`` (shared conv trunk + fc 50, one tower of 50 per task);
the reference trains ``single_task`` (one whole LeNet per task) under the same seeds, data and
epochs. Test accuracy of both tasks, and Δm% against the seed-averaged single-task accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from mtlkit import api
from mtlkit.balancing import BALANCERS
from mtlkit.bench._common import (
    STL,
    Run,
    delta_m_bars,
    run_grid,
    save_png,
    summarize,
    with_overrides,
    write_results,
)
from mtlkit.config import build_config

METRICS = {"left": "accuracy", "right": "accuracy"}
#: the configs of configs/multi-fashion/*.yaml, sized per mode below
BASE = {
    "data": {"dataset": "multi-fashion", "params": {"seed": 0}},
    "model": {"name": "shared_bottom", "params": {
        "input": {"conv_channels": [10, 20], "kernel_sizes": [9, 5], "hidden": 50},
        "bottom_units": [], "tower_units": [50]}},
    "balancer": {"name": "equal"},
    "train": {"epochs": 10, "batch_size": 256, "optimizer": {"name": "adam", "lr": 1e-3},
              "patience": 3, "monitor": {"task": "left", "metric": "accuracy"},
              "progress": False, "tensorboard": False},
}
#: data sizes (pairs) and epochs: quick is a < 2 min smoke test, full the reported benchmark
MODES = {
    "quick": {"n_train": 2000, "n_valid": 500, "n_test": 1000, "epochs": 1, "batch_size": 64},
    "full": {"n_train": 10000, "n_valid": 2000, "n_test": 10000, "epochs": 6, "batch_size": 128},
}
#: balancers not benchmarked by default: ``fixed`` equals ``equal`` with unit task weights
SKIP = {"fixed"}


def default_balancers() -> list[str]:
    return [name for name in BALANCERS.names() if name not in SKIP]


def multi_fashion(
    out_dir: str | Path, quick: bool = False, seeds: Sequence[int] | None = None,
    balancers: Sequence[str] | None = None, data_dir: str | None = None, log=print,
    mode: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Run the benchmark into ``out_dir`` (runs/, runs.csv, summary.csv, results.md,
    multi_fashion.png) and return the summary table. ``mode`` overrides entries of ``MODES``
    (data sizes, epochs, batch size).

    ``seeds`` default: (0,) in quick mode, (0, 1, 2) in full mode; ``balancers`` default: every
    registered balancer except ``fixed``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    unknown = sorted(set(mode or {}) - set(MODES["full"]))
    if unknown:
        raise ValueError(f"mode: unknown key(s) {unknown}; known: {sorted(MODES['full'])}")
    mode = {**MODES["quick" if quick else "full"], **(mode or {})}
    seeds = list(seeds) if seeds is not None else ([0] if quick else [0, 1, 2])
    balancers = list(balancers) if balancers is not None else default_balancers()
    base = with_overrides(BASE, train={k: mode[k] for k in ("epochs", "batch_size")})
    base["data"]["params"].update({k: mode[k] for k in ("n_train", "n_valid", "n_test")})
    if data_dir is not None:
        base["data"]["data_dir"] = data_dir
    data = api.load_data(build_config(base))
    runs = []
    for seed in seeds:
        train = {**base["train"], "seed": seed}
        stl_model = {**base["model"], "name": STL}
        runs.append(Run(STL, "—", seed, with_overrides(base, model=stl_model, train=train)))
        runs += [Run("shared_bottom", name, seed,
                     with_overrides(base, balancer={"name": name, "params": {}}, train=train))
                 for name in balancers]
    table = run_grid(runs, data, out, METRICS, log)
    summary = summarize(table, METRICS)
    sizes = ", ".join(f"{k} {v}" for k, v in mode.items())
    notes = (f"Multi-Fashion ({sizes}; seeds {seeds}). Shared-bottom LeNet per balancer vs two "
             "single-task LeNets; test accuracy mean ± std over seeds; Δm% = mean over tasks of "
             "(acc − acc_STL)/acc_STL × 100 against the seed-averaged single-task accuracy, "
             "positive = better than single-task.")
    write_results(out, table, summary, METRICS, "Multi-Fashion", notes)
    plot(summary, out / "multi_fashion.png")
    return summary


def plot(summary: pd.DataFrame, path: Path) -> None:
    """Left: task accuracies per method (mean over seeds); right: Δm% with its std."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 5))
    ax1, ax2 = fig.subplots(1, 2)
    ok = summary[summary["seeds"] > 0]
    for _, r in ok.iterrows():
        stl = r["model"] == STL
        label = "single-task" if stl else r["balancer"]
        ax1.scatter(r["left/accuracy_mean"], r["right/accuracy_mean"], marker="*" if stl else "o",
                    s=160 if stl else 40, color="black" if stl else None, zorder=3)
        ax1.annotate(label, (r["left/accuracy_mean"], r["right/accuracy_mean"]), fontsize=8,
                     xytext=(3, 3), textcoords="offset points")
    ax1.set_xlabel("left-item test accuracy")
    ax1.set_ylabel("right-item test accuracy")
    ax1.set_title("Multi-Fashion: test accuracy (mean over seeds)")
    mtl = ok[ok["model"] != STL].sort_values("delta_m_mean")
    delta_m_bars(ax2, list(mtl["balancer"]), mtl)
    ax2.set_title("Shared-bottom per balancer")
    save_png(fig, path)
