"""Training throughput on the census configuration: mtlkit vs torch-rechub / DeepCTR-Torch.

    python benchmarks/throughput.py [--models mmoe,ple,...] [--epochs 2] [--no-peers]

Sizes (census MMoE): embedding dim 4, 8 experts × 16 units, towers of 8, batch 1024, Adam.
Every library trains on the same encoded census arrays (``peers.export_census``), each
measurement in a fresh child process (so peak RSS = VmHWM of that process: torch + data +
model), at 1 and 2 intra-op threads; the faster setting is reported. Samples/s counts training
steps only (per-epoch shuffling included, evaluation excluded), after a 20-step warm-up.
Other models use their ``configs/census-income/<model>.yaml`` sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
import peers  # noqa: E402  (benchmarks/peers.py: imports nothing of mtlkit)

CONFIGS = REPO / "configs" / "census-income"
MODEL_CONFIGS = {
    "mmoe": "mmoe", "omoe": "omoe", "shared_bottom": "shared-bottom",
    "single_task": "single-task", "cgc": "cgc", "ple": "ple", "snr_trans": "snr-trans",
    "snr_aver": "snr-aver", "cross_stitch": "cross-stitch",
}


def measure_mtlkit(model: str, threads: int, epochs: int, npz: str) -> dict:
    """Train ``epochs`` epochs on the exported census arrays; return samples/s and peak RSS."""
    import numpy as np
    import torch

    from mtlkit.api import build_model
    from mtlkit.balancing import create_balancer
    from mtlkit.config import load_config
    from mtlkit.data import InputSpec, TensorStore
    from mtlkit.data.datasets.census import census_schema
    from mtlkit.train import Trainer

    torch.set_num_threads(threads)
    arrays = np.load(npz)
    store = TensorStore(
        {"categorical": torch.from_numpy(arrays["train_cat"]),
         "numeric": torch.from_numpy(arrays["train_num"])},
        {"income": torch.from_numpy(arrays["train_y"][:, 0].copy()),
         "marital": torch.from_numpy(arrays["train_y"][:, 1].copy())},
    )
    spec = InputSpec("tabular", arrays["cardinalities"].tolist(), arrays["train_num"].shape[1])
    cfg = load_config(CONFIGS / f"{MODEL_CONFIGS[model]}.yaml",
                      ["train.progress=false", "train.tensorboard=false"])
    tasks = census_schema(1).tasks
    torch.manual_seed(0)
    net = build_model(cfg, spec, tasks)
    trainer = Trainer(net, tasks, create_balancer("equal", [t.name for t in tasks]), cfg.train)
    gen = torch.Generator().manual_seed(0)
    for i, batch in enumerate(store.batches(1024, store.permutation(gen))):
        trainer.train_step(batch)  # warm-up
        if i == 20:
            break
    rows, started = 0, time.perf_counter()
    for _ in range(epochs):
        for batch in store.batches(1024, store.permutation(gen)):
            trainer.train_step(batch)
            rows += len(batch)
    seconds = time.perf_counter() - started
    return {"library": "mtlkit", "mode": model, "threads": threads,
            "samples_per_s": rows / seconds, "seconds": seconds, "samples": rows,
            "peak_rss_mb": peers._rss_mb(),
            "parameters": net.describe()["parameters"]}


def _child(model: str, threads: int, epochs: int, npz: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run(
        [sys.executable, __file__, "--child", model, str(threads), str(epochs), npz],
        capture_output=True, text=True, cwd=REPO, check=True, env=env,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mmoe")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--npz", default=None, help="exported census arrays (made if absent)")
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="write results JSON here")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        model, threads, epochs, npz = args.child
        print(json.dumps(measure_mtlkit(model, int(threads), int(epochs), npz)))
        return
    npz = Path(args.npz or Path(tempfile.gettempdir()) / "mtlkit-census.npz")
    if not npz.exists():
        peers.export_census(npz)
    threads = [int(t) for t in args.threads.split(",")]
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    results = []
    for model in args.models.split(","):
        for t in threads:
            r = _child(model, t, args.epochs, str(npz))
            results.append(r)
            print(f"mtlkit {model:14s} threads={t}: {r['samples_per_s']:>10,.0f} samples/s"
                  f"  peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
    if not args.no_peers:
        rows = peers.run_peers(npz, epochs=args.epochs, threads=threads)
        results += rows
        print(peers.format_peer_table(rows))
    best: dict[tuple[str, str], dict] = {}
    for r in results:
        if "samples_per_s" not in r:
            continue
        key = (r["library"], r["mode"])
        if key not in best or r["samples_per_s"] > best[key]["samples_per_s"]:
            best[key] = r
    print("\nfastest thread setting per library / model-or-mode:")
    for (lib, mode), r in sorted(best.items(), key=lambda kv: -kv[1]["samples_per_s"]):
        print(f"  {lib:14s} {mode:14s} {r['samples_per_s']:>10,.0f} samples/s "
              f"(threads={r['threads']}, peak RSS {r.get('peak_rss_mb', float('nan')):.0f} MB)")
    ours = best.get(("mtlkit", "mmoe"))
    others = [r for (lib, _), r in best.items() if lib != "mtlkit"]
    if ours and others:
        top = max(others, key=lambda r: r["samples_per_s"])
        print(f"\nmtlkit MMoE / fastest peer ({top['library']} {top['mode']}): "
              f"{ours['samples_per_s'] / top['samples_per_s']:.1f}×")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
