"""Text multi-task benchmark, MT-DNN style (issue 7.4): review text → rating, recommended,
department with one shared text encoder (a CNN trained from scratch).

Single-task (one encoder per task) vs Shared-Bottom vs MMoE on top of the shared encoder, each
multi-task model with two balancers; Δm% against the seed-averaged single-task metrics
(rating and department accuracy, recommended AUC).
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

METRICS = {"rating": "accuracy", "recommended": "auc", "department": "accuracy"}
_INPUT = {"encoder": "cnn", "embedding_dim": 32, "channels": 32, "kernel_sizes": [3, 5]}
#: the configs of configs/reviews/*.yaml
MODELS = {
    STL: {"name": STL, "params": {"input": _INPUT, "bottom_units": [64], "tower_units": [32]}},
    "shared_bottom": {"name": "shared_bottom",
                      "params": {"input": _INPUT, "bottom_units": [64], "tower_units": [32]}},
    "mmoe": {"name": "mmoe", "params": {"input": _INPUT, "num_experts": 4, "expert_units": [32],
                                        "tower_units": [16]}},
}
BASE = {
    "data": {"dataset": "reviews",
             "params": {"rating": "multiclass", "max_len": 100, "min_count": 2, "seed": 0}},
    "balancer": {"name": "equal"},
    "train": {"epochs": 8, "batch_size": 128, "optimizer": {"name": "adam", "lr": 2e-3},
              "patience": 2, "monitor": {"task": "recommended", "metric": "auc"},
              "progress": False, "tensorboard": False},
}
MODES = {"quick": {"n_train": 2000, "epochs": 1}, "full": {"n_train": None, "epochs": 4}}
#: the second balancer: the first of these that is registered
SECOND_BALANCER = ["uw", "uncertainty", "dwa", "famo", "pcgrad", "gradnorm", "mgda"]


def default_balancers() -> list[str]:
    names = BALANCERS.names()
    return ["equal", *[b for b in SECOND_BALANCER if b in names][:1]]


def reviews(
    out_dir: str | Path, quick: bool = False, seeds: Sequence[int] | None = None,
    balancers: Sequence[str] | None = None, data_dir: str | None = None, log=print,
    mode: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Run the benchmark into ``out_dir`` (runs/, runs.csv, summary.csv, results.md,
    reviews.png) and return the summary table; ``mode`` overrides entries of ``MODES``.
    ``seeds`` default: (0,) quick, (0, 1, 2) full;
    ``balancers`` default: ``equal`` and the first registered of ``SECOND_BALANCER``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    unknown = sorted(set(mode or {}) - set(MODES["full"]))
    if unknown:
        raise ValueError(f"mode: unknown key(s) {unknown}; known: {sorted(MODES['full'])}")
    mode = {**MODES["quick" if quick else "full"], **(mode or {})}
    seeds = list(seeds) if seeds is not None else ([0] if quick else [0, 1, 2])
    balancers = list(balancers) if balancers is not None else default_balancers()
    base = with_overrides(BASE, train={"epochs": mode["epochs"]})
    base["data"]["params"]["n_train"] = mode["n_train"]
    if data_dir is not None:
        base["data"]["data_dir"] = data_dir
    data = api.load_data(build_config({**base, "model": MODELS[STL]}))
    runs = []
    for seed in seeds:
        train = {**base["train"], "seed": seed}
        runs.append(Run(STL, "—", seed, with_overrides(base, model=MODELS[STL], train=train)))
        runs += [Run(model, name, seed, with_overrides(
                     base, model=MODELS[model], balancer={"name": name, "params": {}},
                     train=train))
                 for model in ("shared_bottom", "mmoe") for name in balancers]
    table = run_grid(runs, data, out, METRICS, log)
    summary = summarize(table, METRICS)
    n_train = len(data.stores["train"])
    notes = (f"Clothing reviews ({n_train} training rows, {mode['epochs']} epoch(s), seeds "
             f"{seeds}); shared text CNN (embedding 32, kernels 3/5 × 32 channels, masked "
             "max-pool). Test metrics mean ± std over seeds; Δm% against the seed-averaged "
             "single-task metrics, positive = better.")
    write_results(out, table, summary, METRICS, "Clothing reviews (text MTL)", notes)
    plot(summary, out / "reviews.png")
    return summary


def plot(summary: pd.DataFrame, path: Path) -> None:
    """Δm% per (model, balancer) with its std over seeds."""
    from matplotlib.figure import Figure

    mtl = summary[(summary["model"] != STL) & (summary["seeds"] > 0)]
    labels = [f"{m} / {b}" for m, b in zip(mtl["model"], mtl["balancer"], strict=True)]
    fig = Figure(figsize=(7, 0.5 * len(labels) + 1.5))
    ax = fig.subplots()
    delta_m_bars(ax, labels, mtl)
    ax.set_title("Clothing reviews: rating acc., recommended AUC, department acc.")
    save_png(fig, path)
