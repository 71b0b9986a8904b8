"""Census MMoE side by side: mtlkit vs torch-rechub, DeepCTR-Torch and LibMTL.

    python benchmarks/throughput.py [--models mmoe,ple,...] [--epochs 2] [--steps 100] [--no-peers]

1. Training: samples/s, peak RSS and test AUC after the same epochs. Sizes (census MMoE):
   embedding dim 4, 8 experts × 16 units, towers of 8, batch 1024, Adam. Every library trains
   on the same encoded census arrays (``peers.export_census``), each measurement in a fresh
   child process (so peak RSS = VmHWM of that process: torch + data + model), at 1 and 2
   intra-op threads; the faster setting is reported. Samples/s counts training steps only
   (per-epoch shuffling included, evaluation excluded), after a 20-step warm-up. Other mtlkit
   models use their ``configs/census-income/<model>.yaml`` sizes.
2. Balancers: median step time of EW, PCGrad, MGDA(-UB) and CAGrad over ``--steps`` steps,
   mtlkit's census MMoE + ``Trainer`` vs LibMTL's MMoE + its ``Trainer`` loop body, same
   batches, same warm-up; the speed-up per method.
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


#: balancers timed against LibMTL's: (mtlkit name, LibMTL name)
BALANCER_PAIRS = [("equal", "ew"), ("pcgrad", "pcgrad"), ("mgda", "mgda"),
                  ("mgda_ub", "mgda"), ("cagrad", "cagrad")]


def _census_trainer(model: str, npz: str, balancer: str = "equal"):
    """mtlkit's ``Trainer`` and ``TensorStore`` over the exported census arrays."""
    import numpy as np
    import torch

    from mtlkit.api import build_model
    from mtlkit.balancing import create_balancer
    from mtlkit.config import load_config
    from mtlkit.data import InputSpec, TensorStore
    from mtlkit.data.datasets.census import census_schema
    from mtlkit.train import Trainer

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
    trainer = Trainer(net, tasks, create_balancer(balancer, [t.name for t in tasks]), cfg.train)
    return trainer, store


def measure_mtlkit(model: str, threads: int, epochs: int, npz: str) -> dict:
    """Train ``epochs`` epochs on the exported census arrays; return samples/s and peak RSS."""
    import torch

    torch.set_num_threads(threads)
    trainer, store = _census_trainer(model, npz)
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
            "parameters": trainer.model.describe()["parameters"],
            "test_auc": _test_auc(trainer.model, npz)}


def _test_auc(model, npz: str) -> dict[str, float]:
    """Test AUC per task on the exported test arrays (the peers' ``_auc`` on the same rows)."""
    import numpy as np
    import torch

    arrays = np.load(npz)
    model.eval()
    with torch.no_grad():
        out = model({"categorical": torch.from_numpy(arrays["test_cat"]),
                     "numeric": torch.from_numpy(arrays["test_num"])})
    probs = np.stack([torch.sigmoid(out[t]).numpy() for t in peers.TASKS], 1)
    return peers._auc(arrays["test_y"], probs)


def measure_mtlkit_steps(balancer: str, threads: int, steps: int, npz: str) -> dict:
    """Median time of one census-MMoE training step with ``balancer`` (same batches as LibMTL:
    full batches of 1024 from one shuffled pass, after the same warm-up)."""
    import statistics

    import torch

    torch.set_num_threads(threads)
    trainer, store = _census_trainer("mmoe", npz, balancer)
    gen = torch.Generator().manual_seed(0)
    batches = [b for b in store.batches(1024, store.permutation(gen)) if len(b) == 1024]
    for i in range(peers.WARMUP_STEPS):
        trainer.train_step(batches[i % len(batches)])
    times = []
    for i in range(steps):
        t0 = time.perf_counter()
        trainer.train_step(batches[(peers.WARMUP_STEPS + i) % len(batches)])
        times.append(time.perf_counter() - t0)
    return {"library": "mtlkit", "method": balancer, "threads": threads, "steps": steps,
            "mode": getattr(trainer.balancer, "mode", "loss"),
            "ms_per_step": 1e3 * statistics.median(times), "peak_rss_mb": peers._rss_mb()}


def _child(job: dict) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(job["threads"])}
    out = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(job)],
        capture_output=True, text=True, cwd=REPO, check=True, env=env,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def balancer_table(ours: list[dict], libmtl: list[dict]) -> str:
    """mtlkit vs LibMTL step time per method (fastest thread count of each), with the ratio."""
    def fastest(rows, method):
        ok = [r for r in rows if r.get("method") == method and "ms_per_step" in r]
        return min(ok, key=lambda r: r["ms_per_step"]) if ok else None

    lines = ["| method | LibMTL ms/step | mtlkit method (mode) | mtlkit ms/step | speed-up |",
             "|---|---:|---|---:|---:|"]
    for name, lib_name in BALANCER_PAIRS:
        mine, theirs = fastest(ours, name), fastest(libmtl, lib_name)
        if mine is None or theirs is None:
            errors = [r["error"] for r in (*ours, *libmtl)
                      if r.get("method") in (name, lib_name) and "error" in r]
            why = errors[0] if errors else "not measured"
            lines.append(f"| {lib_name} | {why} | {name} | — | — |")
            continue
        lines.append(f"| {lib_name} | {theirs['ms_per_step']:.2f} | {name} ({mine['mode']}) | "
                     f"{mine['ms_per_step']:.2f} | "
                     f"{theirs['ms_per_step'] / mine['ms_per_step']:.1f}× |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mmoe")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--train-rows", type=int, default=None,
                        help="train on the first N census rows only (smoke tests)")
    parser.add_argument("--steps", type=int, default=100,
                        help="timed steps per balancer (mtlkit vs LibMTL); 0 = skip")
    parser.add_argument("--npz", default=None, help="exported census arrays (made if absent)")
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="write results JSON here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        job = json.loads(args.child)
        if job["kind"] == "train":
            result = measure_mtlkit(job["model"], job["threads"], job["epochs"], job["npz"])
        else:
            result = measure_mtlkit_steps(job["balancer"], job["threads"], job["steps"],
                                          job["npz"])
        print(json.dumps(result))
        return
    suffix = f"-{args.train_rows}" if args.train_rows else ""
    npz = Path(args.npz or Path(tempfile.gettempdir()) / f"mtlkit-census{suffix}.npz")
    if not npz.exists():
        peers.export_census(npz, train_rows=args.train_rows)
    threads = [int(t) for t in args.threads.split(",")]
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    results = []
    for model in args.models.split(","):
        for t in threads:
            r = _child({"kind": "train", "model": model, "threads": t, "epochs": args.epochs,
                        "npz": str(npz)})
            results.append(r)
            aucs = " / ".join(f"{v:.4f}" for v in r["test_auc"].values())
            print(f"mtlkit {model:14s} threads={t}: {r['samples_per_s']:>10,.0f} samples/s"
                  f"  peak RSS {r['peak_rss_mb']:.0f} MB  test AUC {aucs}", flush=True)
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
    steps: dict[str, list[dict]] = {"mtlkit": [], "libmtl": []}
    if args.steps > 0:
        for name, _ in BALANCER_PAIRS:
            for t in threads:
                steps["mtlkit"].append(_child({"kind": "steps", "balancer": name, "threads": t,
                                               "steps": args.steps, "npz": str(npz)}))
        if not args.no_peers:
            methods = tuple(dict.fromkeys(lib for _, lib in BALANCER_PAIRS))
            steps["libmtl"] = peers.run_libmtl_step_times(
                npz, methods=methods, num_tasks=(2,), threads=threads, steps=args.steps)
        print("\ncensus MMoE step time, mtlkit vs LibMTL (fastest thread count each):")
        print(balancer_table(steps["mtlkit"], steps["libmtl"]))
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"training": results, "balancer_steps": steps},
                                       indent=2))

if __name__ == "__main__":
    main()
