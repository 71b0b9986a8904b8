"""ESMM and AITM vs a naive CVR model on synthetic entire-space impressions with known truth.

    nice -n 10 python benchmarks/esmm_vs_naive.py --seeds 0 1 2

Data: ``entire-space`` (see ``mtlkit.data.datasets.entire_space``): clicks and conversions
drawn from known probabilities, conversions observed only after clicks. Models (same
embedding + [64, 32] towers):

* ``naive``: the ESMM network with only the cvr loss, trained on clicked rows (``ctr`` and
  ``ctcvr`` set to ``loss: none``) — the paper's BASE model;
* ``esmm``: BCE(ctr) + BCE(ctcvr) over all impressions, pCVR learned through pCTCVR;
* ``aitm``: click → conversion over all impressions, pCVR reported as pCTCVR / pCTR.

Every model is early-stopped on the cvr AUC of clicked validation rows. Reported on the test
split: CVR AUC on ALL impressions against the latent would-convert label (what the paper's
entire-space inference needs), against the same with the oracle σ(b) as the score (ceiling),
the Spearman correlation with the true CVR, and the CVR AUC on clicked rows only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from mtlkit import api
from mtlkit.evaluate import predict_store, roc_auc

BASE = {
    "data": {"dataset": "entire-space", "params": {}},
    "model": {"params": {"embedding_dim": 8, "tower_units": [64, 32]}},
    "train": {"epochs": 10, "batch_size": 1024, "optimizer": {"name": "adam", "lr": 0.002},
              "patience": 2, "monitor": {"task": "cvr", "metric": "auc"},
              "progress": False, "tensorboard": False},
}
MODELS = {
    "naive": ("esmm", {}, {"ctr": {"loss": "none"}, "ctcvr": {"loss": "none"},
                           "cvr": {"loss": "bce"}}),
    "esmm": ("esmm", {}, {}),
    "aitm": ("aitm", {"sequence": ["ctr", "ctcvr"], "cvr_task": "cvr"}, {}),
}


def run(name: str, seed: int, data_params: dict) -> dict[str, float]:
    model, params, task_overrides = MODELS[name]
    cfg = json.loads(json.dumps(BASE))
    cfg["data"]["params"] = data_params
    cfg["data"]["tasks"] = task_overrides
    cfg["model"]["name"] = model
    cfg["model"]["params"].update(params)
    cfg["train"]["seed"] = seed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = api.train(cfg)
    test = res.data.stores["test"]
    frame = res.data.raw.test
    p = predict_store(res.model, test, res.data.raw.schema.tasks)["cvr"].double().numpy()
    clicked = frame["click"].to_numpy() == 1
    z = frame["would_convert"].to_numpy()
    return {
        "cvr_auc_all": roc_auc(z, p),
        "cvr_auc_clicked": roc_auc(z[clicked], p[clicked]),
        "spearman_true_cvr": float(pd.Series(p).corr(frame["true_cvr"], method="spearman")),
        "oracle_auc_all": roc_auc(z, frame["true_cvr"].to_numpy()),
        "ctcvr_auc": res.results["test"]["ctcvr"]["auc"],
        "best_epoch": res.results["best_epoch"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--n-train", type=int, default=100_000)
    parser.add_argument("--out", default="runs/esmm_vs_naive.json")
    args = parser.parse_args()
    data_params = {"n_train": args.n_train}
    table: dict[str, list[dict]] = {}
    for name in args.models:
        for seed in args.seeds:
            row = run(name, seed, data_params)
            table.setdefault(name, []).append(row)
            print(name, seed, {k: round(v, 4) for k, v in row.items()}, flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(table, indent=2))
    keys = ["cvr_auc_all", "cvr_auc_clicked", "spearman_true_cvr", "ctcvr_auc"]
    print("\nmodel  | " + " | ".join(keys) + "   (test split, mean ± std over seeds "
          f"{args.seeds})")
    for name, rows in table.items():
        cells = []
        for k in keys:
            vals = [r[k] for r in rows]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            cells.append(f"{np.mean(vals):.4f} ± {sd:.4f}")
        print(f"{name:6s} | " + " | ".join(cells))
    oracle = table[args.models[0]][0]["oracle_auc_all"]
    print(f"oracle (true CVR) AUC on all impressions: {oracle:.4f}")


if __name__ == "__main__":
    main()
