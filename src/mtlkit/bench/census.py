"""Census-Income (KDD) model comparison: test AUC mean ± std and best-of-seeds per task.

Best-of-seeds picks, per model, the seed with the highest validation AUC on the main task and
reports its test AUCs (the MMoE paper reports its best run).
"""

from __future__ import annotations

import json
import math
import random
import statistics
from pathlib import Path

from mtlkit import api
from mtlkit.config import RunConfig, load_config

CONFIG_DIR = Path(__file__).resolve().parents[3] / "configs" / "census-income"
MODELS = {
    "Single-Task": "single-task", "Shared-Bottom": "shared-bottom", "OMoE": "omoe",
    "MMoE": "mmoe",
}
ALL_MODELS = {
    **MODELS, "Cross-Stitch": "cross-stitch", "CGC": "cgc", "PLE": "ple",
    "SNR-Trans": "snr-trans", "SNR-Aver": "snr-aver",
}
#: the MMoE paper's best-run figures quoted in the foundation issue (group 1)
PAPER_BEST = {"MMoE": {"income": 0.9410, "marital": 0.9926}}

#: random hyper-parameter search: choices per config override, per model config; every model
#: also draws ``model.params.embedding_dim`` from EMBEDDING_DIMS and ``train.optimizer.lr``
#: log-uniformly from LR_RANGE
EMBEDDING_DIMS = [4, 8, 16]
LR_RANGE = (3e-4, 3e-3)
_EXPERTS = {"model.params.num_experts": [4, 8, 16],
            "model.params.expert_units": [[8], [16], [32]]}
_EXTRACTION = {"model.params.specific_experts": [1, 2, 3, 4],
               "model.params.shared_experts": [1, 2, 4],
               "model.params.expert_units": [[8], [16], [32]]}
_SUBNETS = {"model.params.num_subnets": [4, 8, 16],
            "model.params.subnet_units": [[8], [16], [32]]}
SEARCH_SPACE: dict[str, dict[str, list]] = {
    "single-task": {"model.params.bottom_units": [[32], [64], [128]]},
    "shared-bottom": {"model.params.bottom_units": [[64], [128], [256]]},
    "cross-stitch": {"model.params.units": [[16, 8], [32, 16], [64, 32]]},
    "omoe": _EXPERTS, "mmoe": _EXPERTS, "cgc": _EXTRACTION, "ple": _EXTRACTION,
    "snr-trans": _SUBNETS, "snr-aver": _SUBNETS,
}


def sample_trials(config: str, trials: int) -> list[dict[str, object]]:
    """``trials`` override sets for ``config``: trial 0 is the config as it is (so the search
    can only match or beat it on validation), the rest are drawn at random from
    :data:`SEARCH_SPACE` with a generator seeded by the config name (reproducible, and the
    same whichever subset of models is searched)."""
    if config not in SEARCH_SPACE:
        raise ValueError(f"no search space for {config!r}; known: {sorted(SEARCH_SPACE)}")
    rng = random.Random(f"census-search/{config}")
    out: list[dict[str, object]] = [{}]
    while len(out) < trials:
        trial: dict[str, object] = {
            key: rng.choice(choices) for key, choices in SEARCH_SPACE[config].items()}
        trial["model.params.embedding_dim"] = rng.choice(EMBEDDING_DIMS)
        low, high = (math.log10(v) for v in LR_RANGE)
        trial["train.optimizer.lr"] = float(f"{10 ** rng.uniform(low, high):.2g}")
        out.append(trial)
    return out


def _as_overrides(trial: dict[str, object]) -> list[str]:
    return [f"{k}={json.dumps(v)}" for k, v in trial.items()]


def search_census(
    out_dir: str | Path, models: dict[str, str], trials: int, group: int = 1,
    quick: bool = False, overrides: list[str] | None = None, config_dir: Path = CONFIG_DIR,
) -> dict[str, list[str]]:
    """Random search per model (seed 0, selection by the main task's VALIDATION AUC).

    Writes ``search.json`` and ``search.md`` (every trial: its overrides, validation and test
    AUCs, train seconds) into ``out_dir`` and returns, per model label, the winning overrides.
    """
    out_dir = Path(out_dir)
    found: dict[str, list[str]] = {}
    table: list[dict] = []
    for label, config in models.items():
        rows = []
        for i, trial in enumerate(sample_trials(config, trials)):
            extra = [*(overrides or []), *_as_overrides(trial)]
            result = _train(out_dir / "search" / f"{config}-trial{i}", config, 0, group, quick,
                            extra, config_dir)
            main = result["monitor"]["task"]
            rows.append({"model": label, "trial": i, "params": trial,
                         "valid_main_auc": result["valid"][main]["auc"],
                         "test": {t: m["auc"] for t, m in result["test"].items()},
                         "train_seconds": result["train_seconds"], "chosen": False})
        best = max(rows, key=lambda r: r["valid_main_auc"])  # the first of equal ones
        best["chosen"] = True
        found[label] = _as_overrides(best["params"])
        table += rows
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "search.json").write_text(json.dumps(table, indent=2))
    (out_dir / "search.md").write_text(format_search(table))
    return found


def format_search(table: list[dict]) -> str:
    lines = ["| model | trial | overrides | valid main AUC | test AUCs | train s |",
             "|---|---|---|---|---|---|"]
    for row in table:
        params = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in row["params"].items())
        mark = " **(chosen)**" if row["chosen"] else ""
        tests = " / ".join(f"{v:.4f}" for v in row["test"].values())
        lines.append(f"| {row['model']} | {row['trial']}{mark} | {params or 'config as is'} | "
                     f"{row['valid_main_auc']:.4f} | {tests} | {row['train_seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def run_census(
    out_dir: str | Path, models: dict[str, str] | None = None, seeds: tuple[int, ...] = (0, 1, 2),
    group: int = 1, quick: bool = False, overrides: list[str] | None = None,
    config_dir: Path = CONFIG_DIR, model_overrides: dict[str, list[str]] | None = None,
) -> list[dict]:
    """Train every (model, seed), write ``results.json`` + ``table.md`` into ``out_dir``.

    ``overrides`` apply to every run, ``model_overrides[label]`` (e.g. from
    :func:`search_census`) to that model's runs only."""
    out_dir = Path(out_dir)
    models = models or MODELS
    rows = []
    for label, config in models.items():
        extra = [*(overrides or []), *(model_overrides or {}).get(label, [])]
        runs = [_train(out_dir / f"{config}-seed{seed}", config, seed, group, quick, extra,
                       config_dir) for seed in seeds]
        rows.append(_summarise(label, runs))
        if model_overrides and model_overrides.get(label):
            rows[-1]["overrides"] = model_overrides[label]
    (out_dir / "results.json").write_text(json.dumps(rows, indent=2))
    (out_dir / "table.md").write_text(format_table(rows))
    return rows


def _train(run_dir: Path, config: str, seed: int, group: int, quick: bool,
           overrides: list[str], config_dir: Path) -> dict:
    """One run's results (reused when ``run_dir`` holds a finished run with the same config)."""
    extra = [f"train.seed={seed}", "train.progress=false", f"data.params.group={group}"]
    if group == 2:
        extra.append("train.monitor.task=education")
    if quick:
        extra += ["train.epochs=1", "data.params.train_fraction=0.1"]
    cfg = load_config(config_dir / f"{config}.yaml", extra + list(overrides))
    finished = _finished(run_dir, cfg)
    return finished if finished is not None else api.train(cfg, out=run_dir).results


def _finished(run_dir: Path, cfg: RunConfig) -> dict | None:
    """The results of a run already finished in ``run_dir`` with the same config, else None:
    an interrupted benchmark, started again with the same ``--out``, continues where it
    stopped."""
    try:
        saved = load_config(run_dir / "config.yaml")
        results = json.loads((run_dir / "results.json").read_text())
    except (FileNotFoundError, ValueError):
        return None
    return results if saved == cfg else None


def _summarise(label: str, runs: list[dict]) -> dict:
    main = runs[0]["monitor"]["task"]
    tasks = list(runs[0]["test"])
    best = max(runs, key=lambda r: r["valid"][main]["auc"])
    row = {"model": label, "seeds": len(runs), "tasks": tasks,
           "train_seconds": statistics.mean(r["train_seconds"] for r in runs)}
    for task in tasks:
        aucs = [r["test"][task]["auc"] for r in runs]
        row[task] = {"mean": statistics.mean(aucs),
                     "std": statistics.stdev(aucs) if len(aucs) > 1 else 0.0,
                     "best_of_seeds": best["test"][task]["auc"]}
    return row


def format_table(rows: list[dict]) -> str:
    tasks = rows[0]["tasks"]
    head = ["model", "seeds"] + [f"{t} AUC mean ± std" for t in tasks] + [
        f"{t} best-of-seeds" for t in tasks] + ["train s/run"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["model"], str(r["seeds"])]
        cells += [f"{r[t]['mean']:.4f} ± {r[t]['std']:.4f}" for t in tasks]
        cells += [f"{r[t]['best_of_seeds']:.4f}" for t in tasks]
        cells.append(f"{r['train_seconds']:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
