"""The MMoE paper's task-correlation study (Ma et al., KDD 2018, §3 and §5).

For each label correlation p and model, several independent runs (fresh synthetic data and
initialisation per run) record the training loss (mean MSE of both tasks) against steps and the
final validation loss. Outputs in ``out_dir``: ``curves.png`` (mean ± std per model, one panel
per p, as the paper's performance figure), ``histograms.png`` (final-loss distributions, its
trainability figure), ``results.json`` and ``table.md``.
"""

from __future__ import annotations

import itertools
import json
import statistics
from pathlib import Path

import numpy as np
import torch

from mtlkit.balancing import create_balancer
from mtlkit.config import TrainConfig
from mtlkit.data import InputSpec, TaskSpec, TensorStore
from mtlkit.data.datasets.synthetic import generate_synthetic
from mtlkit.evaluate import evaluate_store
from mtlkit.models import create_model
from mtlkit.train import Trainer

TASKS = [TaskSpec(name=f"task{k}", type="regression", column=f"y{k}") for k in (1, 2)]
EXPERT_PARAMS = {"num_experts": 8, "expert_units": [16], "tower_units": [8]}
MODELS: dict[str, tuple[str, dict]] = {
    "Shared-Bottom": ("shared_bottom", {"tower_units": [8]}),  # bottom width matched below
    "OMoE": ("omoe", EXPERT_PARAMS),
    "MMoE": ("mmoe", EXPERT_PARAMS),
    "CGC": ("cgc", {"specific_experts": 3, "shared_experts": 2, "expert_units": [16],
                    "tower_units": [8]}),
}


def _matched_bottom(spec, tasks) -> int:
    """Width of Shared-Bottom's single layer whose parameter count best matches MMoE's."""
    target = create_model("mmoe", spec, tasks, **EXPERT_PARAMS).describe()["parameters"]
    counts = {u: create_model("shared_bottom", spec, tasks, bottom_units=[u], tower_units=[8])
              .describe()["parameters"] for u in range(8, 513, 8)}
    return min(counts, key=lambda u: abs(counts[u] - target))


def one_run(model: str, params: dict, correlation: float, seed: int, steps: int,
            log_every: int, n_train: int, dim: int) -> dict:
    x, y, _ = generate_synthetic(n_train + 2000, correlation, dim=dim, seed=seed)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    stores = {
        split: TensorStore({"numeric": x[rows]}, {"task1": y[rows, 0], "task2": y[rows, 1]})
        for split, rows in (("train", slice(0, n_train)), ("valid", slice(n_train, None)))
    }
    tasks = TASKS
    torch.manual_seed(seed)
    net = create_model(model, InputSpec("tabular", [], dim), tasks, **params)
    cfg = TrainConfig(batch_size=128, progress=False, tensorboard=False,
                      optimizer={"lr": 1e-3})
    trainer = Trainer(net, tasks, create_balancer("equal", [t.name for t in tasks]), cfg)
    store, gen = stores["train"], torch.Generator().manual_seed(seed)
    curve, window, step = [], [], 0
    while step < steps:
        for batch in store.batches(cfg.batch_size, store.permutation(gen)):
            losses, _ = trainer.train_step(batch)
            window.append(losses.mean().item())
            step += 1
            if step % log_every == 0:
                curve.append(float(np.mean(window)))
                window = []
            if step >= steps:
                break
    metrics = evaluate_store(net, stores["valid"], tasks)
    final = float(np.mean([metrics[t.name]["rmse"] ** 2 for t in tasks]))
    return {"curve": curve, "final_valid_mse": final}


def run_correlation(
    out_dir: str | Path, quick: bool = False,
    correlations: tuple[float, ...] = (1.0, 0.9, 0.8, 0.5),
    models: tuple[str, ...] = tuple(MODELS), runs: int | None = None, steps: int | None = None,
    dim: int = 100, n_train: int = 10000,
) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = runs or (2 if quick else 20)
    steps = steps or (200 if quick else 3000)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is faster on small CPUs
    try:
        return _run(out_dir, correlations, models, runs, steps, dim, n_train)
    finally:
        torch.set_num_threads(threads)


def _run(out_dir: Path, correlations, models, runs: int, steps: int, dim: int,
         n_train: int) -> dict:
    log_every = max(steps // 30, 1)
    width = _matched_bottom(InputSpec("tabular", [], dim), TASKS)
    results: dict = {"runs": runs, "steps": steps, "log_every": log_every, "dim": dim,
                     "shared_bottom_width": width, "curves": {}, "final": {}}
    for p in correlations:
        for label in models:
            name, params = MODELS[label]
            if label == "Shared-Bottom":
                params = {**params, "bottom_units": [width]}
            out = [one_run(name, params, p, seed, steps, log_every, n_train, dim)
                   for seed in range(runs)]
            results["curves"][f"{label}|{p}"] = [o["curve"] for o in out]
            results["final"][f"{label}|{p}"] = [o["final_valid_mse"] for o in out]
    results["summary"] = summarise(results, correlations, models)
    (out_dir / "results.json").write_text(json.dumps(results))
    (out_dir / "table.md").write_text(format_table(results, correlations, models))
    plot(results, correlations, models, out_dir)
    return results


def summarise(results: dict, correlations, models) -> dict:
    """Per correlation and model: mean, std and median of the final validation MSE over runs;
    the Shared-Bottom − MMoE gap of the means and of the medians (a few failed runs move the
    mean a lot: the paper's trainability point), and whether each gap grows as p drops."""
    summary: dict = {}
    for p in correlations:
        row: dict = {}
        for label in models:
            vals = results["final"][f"{label}|{p}"]
            row[label] = {"mean": statistics.mean(vals), "median": statistics.median(vals),
                          "std": statistics.stdev(vals) if len(vals) > 1 else 0.0}
        if "MMoE" in row and "Shared-Bottom" in row:
            for stat in ("mean", "median"):
                row[f"gap_sb_minus_mmoe_{stat}"] = row["Shared-Bottom"][stat] - row["MMoE"][stat]
        summary[str(p)] = row
    for stat in ("mean", "median"):
        gaps = [summary[str(p)].get(f"gap_sb_minus_mmoe_{stat}")
                for p in sorted(correlations, reverse=True)]
        if None not in gaps:
            summary[f"{stat}_gap_grows_as_correlation_drops"] = all(
                b >= a for a, b in itertools.pairwise(gaps))
    return summary


def format_table(results: dict, correlations, models) -> str:
    s = results["summary"]
    head = ["correlation", *[f"{m} final valid MSE" for m in models], "SB − MMoE (mean)",
            "SB − MMoE (median)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in correlations:
        row = s[str(p)]
        cells = [str(p)] + [f"{row[m]['mean']:.4f} ± {row[m]['std']:.4f} "
                            f"(median {row[m]['median']:.4f})" for m in models]
        cells += [f"{row.get(f'gap_sb_minus_mmoe_{k}', float('nan')):+.4f}"
                  for k in ("mean", "median")]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(f"\nruns per cell: {results['runs']}, steps: {results['steps']}, Shared-Bottom "
                 f"width {results['shared_bottom_width']}; gap grows as correlation drops: "
                 f"means {s.get('mean_gap_grows_as_correlation_drops')}, medians "
                 f"{s.get('median_gap_grows_as_correlation_drops')}")
    return "\n".join(lines) + "\n"


def plot(results: dict, correlations, models, out_dir: Path) -> None:
    from matplotlib.figure import Figure

    from mtlkit.bench._common import save_png

    fig = Figure(figsize=(4 * len(correlations), 3.2))
    axes = fig.subplots(1, len(correlations), sharey=True, squeeze=False)
    for ax, p in zip(axes[0], correlations, strict=True):
        for label in models:
            curves = np.array(results["curves"][f"{label}|{p}"])
            x = (np.arange(curves.shape[1]) + 1) * results["log_every"]
            low, high = np.quantile(curves, [0.25, 0.75], axis=0)
            ax.plot(x, curves.mean(0), label=label)  # mean; band: middle half of the runs
            ax.fill_between(x, low, high, alpha=0.2)
        ax.set_title(f"correlation {p}")
        ax.set_xlabel("steps")
        ax.set_yscale("log")
    axes[0][0].set_ylabel("training loss (line: mean; band: 25–75 %)")
    axes[0][-1].legend()
    save_png(fig, out_dir / "curves.png")
    fig = Figure(figsize=(4 * len(correlations), 3.2))
    axes = fig.subplots(1, len(correlations), squeeze=False)
    for ax, p in zip(axes[0], correlations, strict=True):
        finals = [results["final"][f"{label}|{p}"] for label in models]
        edges = np.linspace(min(map(min, finals)), max(map(max, finals)), 21)  # shared bins
        for label, vals in zip(models, finals, strict=True):
            ax.hist(vals, bins=edges, alpha=0.5, label=label)
        ax.set_title(f"final validation MSE, correlation {p}")
    axes[0][-1].legend()
    save_png(fig, out_dir / "histograms.png")
