"""Census-Income group 1: test AUC (mean ± std over seeds) of the named configs.

    nice -n 10 python benchmarks/census_zoo.py cgc ple snr-trans snr-aver cross-stitch \
        --seeds 0 1 2 --out runs/census_zoo

The data is loaded and encoded once; each (config, seed) runs ``api.train`` with
``--set train.seed=N``, exactly like ``mtlkit train configs/census-income/<name>.yaml``.
Per-run results go to ``<out>/<name>/seed<N>/results.json``; the summary to ``<out>/summary.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from pathlib import Path

from mtlkit import api
from mtlkit.config import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "census-income"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("names", nargs="+")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="runs/census_zoo")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--reuse", action="store_true",
                        help="reuse <out>/<name>/seed<N>/results.json of finished runs")
    args = parser.parse_args()
    out = Path(args.out)
    summary_path = out / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    data = None
    for name in args.names:
        rows = []
        for seed in args.seeds:
            done = out / name / f"seed{seed}" / "results.json"
            if args.reuse and done.exists():
                res = json.loads(done.read_text())
                rows.append({"seed": seed, "test_auc": {t: m["auc"] for t, m in
                                                         res["test"].items()},
                             "best_epoch": res["best_epoch"], "seconds": None,
                             "parameters": res["parameters"]["parameters"]})
                print(name, rows[-1], "(reused)", flush=True)
                continue
            overrides = [f"train.seed={seed}", "train.progress=false",
                         "train.tensorboard=false", "diagnostics.enabled=false", *args.overrides]
            cfg = load_config(CONFIGS / f"{name}.yaml", overrides)
            if data is None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    data = api.load_data(cfg)
            started = time.perf_counter()
            res = api.train(cfg, out=out / name / f"seed{seed}", data=data).results
            test = {t: m["auc"] for t, m in res["test"].items()}
            rows.append({"seed": seed, "test_auc": test, "best_epoch": res["best_epoch"],
                         "seconds": round(time.perf_counter() - started, 1),
                         "parameters": res["parameters"]["parameters"]})
            print(name, rows[-1], flush=True)
        tasks = list(rows[0]["test_auc"])
        summary[name] = {
            "runs": rows,
            "mean": {t: statistics.mean(r["test_auc"][t] for r in rows) for t in tasks},
            "std": {t: statistics.stdev(r["test_auc"][t] for r in rows) if len(rows) > 1 else 0.0
                    for t in tasks},
        }
        out.mkdir(parents=True, exist_ok=True)
        summary_path.write_text(json.dumps(summary, indent=2))
        m, s = summary[name]["mean"], summary[name]["std"]
        print(f"{name}: " + ", ".join(f"{t} {m[t]:.4f} ± {s[t]:.4f}" for t in tasks), flush=True)


if __name__ == "__main__":
    main()
