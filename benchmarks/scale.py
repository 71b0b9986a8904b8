"""Issue 8 evidence: streaming vs in-memory training, batch prediction, torchrun.

    python benchmarks/scale.py generate OUT.parquet --rows 2000000
    python benchmarks/scale.py train FILE.parquet VALID.parquet [--streaming] [--workers N]
    python benchmarks/scale.py config FILE.parquet VALID.parquet OUT.yaml [--streaming]

The generated file follows the census-income distribution: rows of the census train file drawn
with replacement, numeric columns jittered (age ±2 years, money columns ×U(0.9, 1.1), weeks
±2), categorical values kept, so the vocabularies and label rates match the real data.
``train`` runs one epoch of census MMoE and reports samples/s and RSS at every 10 % of it.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def generate(out: str, rows: int, seed: int = 0, chunk: int = 500_000) -> None:
    from mtlkit.data.datasets.census import NUMERIC, find_file, read_census

    base = read_census(find_file("train", str(DATA)), check=False)
    for c in NUMERIC:
        base[c] = base[c].astype(float)
    table = pa.Table.from_pandas(base, preserve_index=False)
    rng = np.random.default_rng(seed)
    writer = None
    done = 0
    while done < rows:
        n = min(chunk, rows - done)
        part = table.take(pa.array(rng.integers(0, table.num_rows, n))).to_pandas()
        part["age"] = np.clip(part["age"] + rng.integers(-2, 3, n), 0, 90)
        part["weeks_worked_in_year"] = np.clip(
            part["weeks_worked_in_year"] + rng.integers(-2, 3, n) * (part[
                "weeks_worked_in_year"] > 0), 0, 52)
        for c in ("wage_per_hour", "capital_gains", "capital_losses", "dividends_from_stocks"):
            part[c] = np.round(part[c] * rng.uniform(0.9, 1.1, n))
        t = pa.Table.from_pandas(part, preserve_index=False)
        writer = writer or pq.ParquetWriter(out, t.schema)
        writer.write_table(t, row_group_size=131072)
        done += n
        print(f"{done} rows", flush=True)
    writer.close()


def config(train: str, valid: str, streaming: bool, epochs: int = 1, workers: int = 1) -> dict:
    from mtlkit.data.datasets.census import census_schema

    schema = census_schema(1).model_dump(mode="json")
    cfg = {
        "data": {"dataset": "table", "params": {
            "train": train, "valid": valid, "features": schema["features"],
            "tasks": schema["tasks"]}},
        "model": {"name": "mmoe", "params": {"embedding_dim": 4, "num_experts": 8,
                                             "expert_units": [16], "tower_units": [8]}},
        "train": {"epochs": epochs, "batch_size": 1024, "patience": None, "progress": False,
                  "tensorboard": False, "threads": 1},
        "diagnostics": {"enabled": False},
    }
    if streaming:
        cfg["data"]["streaming"] = {"batch_rows": 65536, "shuffle_buffer": 262144,
                                    "workers": workers}
    return cfg


def train(train_file: str, valid: str, streaming: bool, workers: int = 1) -> dict:
    import torch

    from mtlkit import api
    from mtlkit.balancing import create_balancer
    from mtlkit.config import build_config
    from mtlkit.train.trainer import Trainer

    cfg = build_config(config(train_file, valid, streaming, workers=workers))
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    data = api.load_data(cfg, check=False)
    load_s = time.perf_counter() - t0
    rss_loaded = rss_mb()
    tasks = data.raw.schema.tasks
    model = api.build_model(cfg, data.input_spec, tasks)
    trainer = Trainer(model, tasks, create_balancer("fixed", [t.name for t in tasks]), cfg.train)
    store = data.stores["train"]
    total = store.num_batches(cfg.train.batch_size)
    marks: dict[int, dict] = {}
    start = [None]

    def record(tr, batch, weights):
        if start[0] is None:
            start[0] = time.perf_counter()
        pct = round(100 * tr.state.step / total)
        if pct % 10 == 0 and pct not in marks and tr.state.step >= total * pct / 100:
            marks[pct] = {"step": tr.state.step, "rss_mb": round(rss_mb(), 1),
                          "t": round(time.perf_counter() - start[0], 2)}

    trainer.step_callbacks.append(record)
    t1 = time.perf_counter()
    trainer.fit(store, data.stores["valid"])
    rows = len(store)
    epoch_s = trainer.state.history[0]["seconds"]
    return {"streaming": streaming, "rows": rows, "load_seconds": round(load_s, 1),
            "rss_after_load_mb": round(rss_loaded, 1),
            "train_seconds": epoch_s, "samples_per_s": round(rows / epoch_s),
            "fit_wall_seconds": round(time.perf_counter() - t1, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "rss_by_progress": marks,
            "valid_auc_income": trainer.state.history[0].get("valid/income/auc")}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("cmd", choices=["generate", "train", "config"])
    p.add_argument("paths", nargs="+")
    p.add_argument("--rows", type=int, default=2_000_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--streaming", action="store_true")
    p.add_argument("--workers", type=int, default=1, help="streaming reader processes")
    a = p.parse_args()
    if a.cmd == "generate":
        generate(a.paths[0], a.rows, a.seed)
    elif a.cmd == "config":
        Path(a.paths[2]).write_text(yaml.safe_dump(config(a.paths[0], a.paths[1], a.streaming,
                                                               workers=a.workers)))
    else:
        print(json.dumps(train(a.paths[0], a.paths[1], a.streaming, a.workers), indent=1))


if __name__ == "__main__":
    main()
