"""Training throughput on the census MMoE configuration: mtlkit vs torch-rechub / DeepCTR-Torch.

    python benchmarks/throughput.py [--models mmoe,...] [--epochs 2] [--no-peers]

Sizes: embedding dim 4, 8 experts × 16 units, towers of 8, batch 1024, Adam. Each library runs
at 1 and 2 intra-op threads and is reported at its faster setting. Samples/s counts training
steps only (shuffling included, evaluation excluded); peak RSS is the process's ru_maxrss.
Each mtlkit measurement runs in a fresh subprocess so peak RSS is per configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CENSUS_MMOE = "configs/census-income/mmoe.yaml"


def measure_mtlkit(model: str, threads: int, epochs: int) -> dict:
    """Train ``epochs`` epochs of the census config with ``model``; return samples/s."""
    import torch

    from mtlkit.api import build_model, load_data
    from mtlkit.balancing import create_balancer
    from mtlkit.config import load_config
    from mtlkit.train import Trainer

    torch.set_num_threads(threads)
    overrides = ["train.progress=false", "train.tensorboard=false", f"model.name={model}"]
    if model in {"single_task", "shared_bottom"}:
        overrides.append("model.params={embedding_dim: 4, tower_units: [8]}")
    cfg = load_config(REPO / CENSUS_MMOE, overrides)
    data = load_data(cfg, check=False)
    tasks = data.raw.schema.tasks
    torch.manual_seed(0)
    net = build_model(cfg, data.input_spec, tasks)
    trainer = Trainer(net, tasks, create_balancer("fixed", [t.name for t in tasks]), cfg.train)
    store = data.stores["train"]
    gen = torch.Generator().manual_seed(0)
    for batch in list(store.batches(cfg.train.batch_size, store.permutation(gen)))[:20]:
        trainer.train_step(batch)  # warm-up
    rows, started = 0, time.perf_counter()
    for _ in range(epochs):
        for batch in store.batches(cfg.train.batch_size, store.permutation(gen)):
            trainer.train_step(batch)
            rows += len(batch)
    seconds = time.perf_counter() - started
    return {"library": "mtlkit", "model": model, "threads": threads,
            "samples_per_s": rows / seconds, "seconds": seconds, "samples": rows,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "parameters": net.describe()["parameters"]}


def _child(model: str, threads: int, epochs: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", model, str(threads), str(epochs)],
        capture_output=True, text=True, cwd=REPO, check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mmoe")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="write results JSON here")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        model, threads, epochs = args.child
        print(json.dumps(measure_mtlkit(model, int(threads), int(epochs))))
        return
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    results = []
    for model in args.models.split(","):
        for threads in map(int, args.threads.split(",")):
            r = _child(model, threads, args.epochs)
            results.append(r)
            print(f"mtlkit {model:14s} threads={threads}: {r['samples_per_s']:>10,.0f} samples/s"
                  f"  peak RSS {r['peak_rss_mb']:.0f} MB")
    if not args.no_peers:
        sys.path.insert(0, str(Path(__file__).parent))
        try:
            from peers import run_peers
        except ImportError as exc:
            print(f"peers unavailable: {exc}")
        else:
            results += run_peers(epochs=args.epochs)
    best = {}
    for r in results:
        key = (r["library"], r.get("model", "mmoe"))
        if key not in best or r["samples_per_s"] > best[key]["samples_per_s"]:
            best[key] = r
    print("\nfastest setting per library/model:")
    for (lib, model), r in sorted(best.items(), key=lambda kv: -kv[1]["samples_per_s"]):
        print(f"  {lib:14s} {model:14s} {r['samples_per_s']:>10,.0f} samples/s "
              f"(threads={r.get('threads')}, peak RSS {r.get('peak_rss_mb', float('nan')):.0f} MB)")
    ours = best.get(("mtlkit", "mmoe"))
    peers = [r for (lib, m), r in best.items() if lib != "mtlkit" and m == "mmoe"]
    if ours and peers:
        top = max(peers, key=lambda r: r["samples_per_s"])
        print(f"\nmtlkit MMoE / fastest peer ({top['library']}): "
              f"{ours['samples_per_s'] / top['samples_per_s']:.1f}×")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
