"""Summarise finished run directories: test metric mean ± std per group of runs.

    python benchmarks/collect_runs.py 'bench-out/census-g1/*-seed*' --group '(.*)-seed\\d+'

A group is the first capture of ``--group`` applied to the run directory's name; runs without
``results.json`` (unfinished) are skipped and counted.
"""

from __future__ import annotations

import argparse
import glob
import json
import re
import statistics
from pathlib import Path


def collect(patterns: list[str], group: str, metric: str = "auc") -> tuple[dict, int]:
    groups: dict[str, list[dict]] = {}
    skipped = 0
    for pattern in patterns:
        for path in sorted(glob.glob(pattern)):
            results = Path(path) / "results.json"
            if not results.exists():
                skipped += 1
                continue
            match = re.search(group, Path(path).name)
            key = match.group(1) if match else Path(path).name
            groups.setdefault(key, []).append(json.loads(results.read_text()))
    return groups, skipped


def table(groups: dict[str, list[dict]], metric: str = "auc") -> str:
    tasks = list(next(iter(groups.values()))[0]["test"])
    head = ["runs", "n", *[f"{t} test {metric}" for t in tasks], "best-of-n (by valid main)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, runs in groups.items():
        main = runs[0].get("monitor", {}).get("task", tasks[0])
        cells = [key, str(len(runs))]
        for t in tasks:
            vals = [r["test"][t][metric] for r in runs]
            std = statistics.stdev(vals) if len(vals) > 1 else 0.0
            cells.append(f"{statistics.mean(vals):.4f} ± {std:.4f}")
        best = max(runs, key=lambda r: r["valid"][main][metric])
        cells.append(" / ".join(f"{best['test'][t][metric]:.4f}" for t in tasks))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("patterns", nargs="+")
    parser.add_argument("--group", default=r"(.*)")
    parser.add_argument("--metric", default="auc")
    args = parser.parse_args()
    groups, skipped = collect(args.patterns, args.group, args.metric)
    print(table(groups, args.metric))
    if skipped:
        print(f"\n({skipped} unfinished run(s) skipped)")


if __name__ == "__main__":
    main()
