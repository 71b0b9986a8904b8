"""Census-Income (KDD) model comparison: test AUC mean ± std and best-of-seeds per task.

Best-of-seeds picks, per model, the seed with the highest validation AUC on the main task and
reports its test AUCs (the MMoE paper reports its best run).
"""

from __future__ import annotations

import json
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


def run_census(
    out_dir: str | Path, models: dict[str, str] | None = None, seeds: tuple[int, ...] = (0, 1, 2),
    group: int = 1, quick: bool = False, overrides: list[str] | None = None,
    config_dir: Path = CONFIG_DIR,
) -> list[dict]:
    """Train every (model, seed), write ``results.json`` + ``table.md`` into ``out_dir``."""
    out_dir = Path(out_dir)
    models = models or MODELS
    rows = []
    for label, config in models.items():
        runs = []
        for seed in seeds:
            extra = [f"train.seed={seed}", "train.progress=false", f"data.params.group={group}"]
            if group == 2:
                extra.append("train.monitor.task=education")
            if quick:
                extra += ["train.epochs=1", "data.params.train_fraction=0.1"]
            run_dir = out_dir / f"{config}-seed{seed}"
            cfg = load_config(config_dir / f"{config}.yaml", extra + list(overrides or []))
            finished = _finished(run_dir, cfg)
            runs.append(finished if finished is not None else api.train(cfg, out=run_dir).results)
        rows.append(_summarise(label, runs))
    (out_dir / "results.json").write_text(json.dumps(rows, indent=2))
    (out_dir / "table.md").write_text(format_table(rows))
    return rows


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
        cells.append(f"{r['train_seconds']:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
