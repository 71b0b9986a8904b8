"""Census-income group 1 MMoE under several balancers, 3 seeds: test AUCs → a Markdown table.

    python benchmarks/census_balancers.py --runs /tmp/census-balancers [--report-only]
        [--workers 3] [--out docs/results/issue4_census.md]

Each (method, seed) is ``mtlkit train configs/census-income/mmoe.yaml --set balancer.name=…
--set train.seed=…`` under ``nice -n 10``; finished runs (results.json present) are reused, a
``lock_*`` folder claims a run so several workers (or invocations) can share the list.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

METHODS = {"equal": "EW", "uncertainty": "UW", "dwa": "DWA", "gradnorm": "GradNorm",
           "mgda_ub": "MGDA-UB", "pcgrad": "PCGrad", "cagrad": "CAGrad", "nash_mtl": "Nash-MTL",
           "famo": "FAMO"}
SEEDS = (0, 1, 2)
CONFIG = "configs/census-income/mmoe.yaml"


def run_one(runs: Path, method: str, seed: int) -> None:
    out = runs / f"{method}_s{seed}"
    if (out / "results.json").exists():
        return
    try:
        (runs / f"lock_{method}_s{seed}").mkdir(parents=True)
    except FileExistsError:
        return
    with open(runs / f"{method}_s{seed}.log", "w") as log:
        subprocess.run(["nice", "-n", "10", "mtlkit", "train", CONFIG, "--out", str(out),
                        "--set", f"balancer.name={method}", "--set", f"train.seed={seed}",
                        "--set", "train.progress=false", "--set", "train.tensorboard=false"],
                       stdout=log, stderr=subprocess.STDOUT, check=False)


def report(runs: Path) -> str:
    lines = ["| method | seeds | test AUC income | test AUC never-married | best epoch | "
             "train s/run |", "|---|---|---:|---:|---:|---:|"]
    for method, label in METHODS.items():
        rs = [(s, json.loads((runs / f"{method}_s{s}" / "results.json").read_text()))
              for s in SEEDS if (runs / f"{method}_s{s}" / "results.json").exists()]
        if not rs:
            lines.append(f"| {label} | – | not run | | | |")
            continue
        cols = []
        for task in ("income", "marital"):
            v = [r["test"][task]["auc"] for _, r in rs]
            cols.append(f"{statistics.mean(v):.4f}"
                        + (f" ± {statistics.stdev(v):.4f}" if len(v) > 1 else ""))
        lines.append(f"| {label} | {','.join(str(s) for s, _ in rs)} | {cols[0]} | {cols[1]} | "
                     f"{statistics.mean(r['best_epoch'] for _, r in rs):.1f} | "
                     f"{statistics.mean(r['train_seconds'] for _, r in rs):.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", default="runs/issue4-census")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    runs = Path(args.runs)
    if not args.report_only:
        jobs = [(m, s) for s in SEEDS for m in METHODS]
        with ThreadPoolExecutor(args.workers) as pool:
            list(pool.map(lambda job: run_one(runs, *job), jobs))
    table = report(runs)
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")


if __name__ == "__main__":
    main()
