"""Step time of every balancer relative to equal weighting (EW), and memory stability.

Two models: the census-income MMoE (2 tasks; a random subset of the training store) and a
6-task synthetic model with a ~1M-parameter shared MLP trunk. For each balancer (default mode:
representation for the gradient methods that allow it; MGDA and DB-MTL on the parameters) it
runs ``--steps`` optimizer steps through the real ``Trainer.train_step`` and reports the median
step time over steps 11..N divided by EW's, plus the process RSS after step 10 and after the
last step (a retained graph or a growing buffer would show as growth).

    python benchmarks/balancers.py --steps 200 [--only census|synthetic] [--methods a,b]

CPU timings on a shared machine are noisy: medians, one thread, EW measured first and last
(its two medians bound the noise).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from torch import nn

from mtlkit.balancing import BALANCERS, create_balancer
from mtlkit.config import TrainConfig
from mtlkit.data.schema import TaskSpec
from mtlkit.data.store import Batch
from mtlkit.models.base import MultiTaskModel
from mtlkit.train.trainer import Trainer


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class SyntheticTrunk(MultiTaskModel):
    """256 → 1024 → 768 ReLU MLP shared (~1.05M parameters), one linear head per task."""

    def __init__(self, tasks: list[TaskSpec], d_in: int = 256) -> None:
        super().__init__(tasks)
        self.trunk = nn.Sequential(nn.Linear(d_in, 1024), nn.ReLU(), nn.Linear(1024, 768),
                                   nn.ReLU())
        self.heads = nn.Linear(768, len(tasks))

    def encode(self, features):
        return self.trunk(features["x"])

    def decode(self, rep):
        out = self.heads(rep)
        return {n: out[:, k] for k, n in enumerate(self.task_names)}

    def shared_modules(self):
        return [self.trunk]


def synthetic_setup(batch_size: int = 256, n_batches: int = 20):
    torch.manual_seed(0)
    tasks = [TaskSpec(name=f"t{k}", column=f"t{k}", type="regression") for k in range(6)]
    teacher = torch.randn(256, 6)
    batches = []
    for _ in range(n_batches):
        x = torch.randn(batch_size, 256)
        y = torch.tanh(x @ teacher / 16) * torch.tensor([1, 2, 5, 10, 0.5, 0.1])
        batches.append(Batch({"x": x}, {t.name: y[:, k] for k, t in enumerate(tasks)},
                             {t.name: None for t in tasks}))
    return (lambda: SyntheticTrunk(tasks)), tasks, batches


def census_setup(batch_size: int = 1024, n_batches: int = 20):
    from mtlkit import api
    from mtlkit.config import load_config

    cfg = load_config("configs/census-income/mmoe.yaml")
    data = api.load_data(cfg)
    store = data.stores["train"]
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(store), generator=g)[: batch_size * n_batches]
    batches = list(store.subset(idx).batches(batch_size))
    tasks = data.raw.schema.tasks

    def make():
        torch.manual_seed(0)
        return api.build_model(cfg, data.input_spec, tasks)

    return make, tasks, batches


def run(make, tasks, batches, name: str, steps: int) -> dict:
    model = make()
    bal = create_balancer(name, [t.name for t in tasks])
    trainer = Trainer(model, tasks, bal, TrainConfig(progress=False, tensorboard=False))
    times, rss10 = [], 0.0
    for i in range(steps):
        t0 = time.perf_counter()
        trainer.train_step(batches[i % len(batches)])
        times.append(time.perf_counter() - t0)
        if i == 9:
            rss10 = rss_mb()
        if (i + 1) % len(batches) == 0:
            bal.on_epoch_end(i // len(batches), torch.zeros(len(tasks)))
    return {"median_ms": statistics.median(times[10:]) * 1e3, "rss10": rss10,
            "rss_end": rss_mb(), "mode": getattr(bal, "mode", "loss")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--only", choices=["census", "synthetic"])
    ap.add_argument("--methods", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    methods = args.methods.split(",") if args.methods else [
        n for n in BALANCERS.names() if n not in ("equal", "fixed")]
    setups = {"census": census_setup, "synthetic": synthetic_setup}
    for label, setup in setups.items():
        if args.only and label != args.only:
            continue
        make, tasks, batches = setup()
        print(f"\n## {label}: {len(tasks)} tasks, batch {len(batches[0])}, "
              f"{sum(p.numel() for p in make().shared_parameters()):,} shared parameters")
        ew = run(make, tasks, batches, "equal", args.steps)
        rows = [("equal", ew)]
        for name in methods:
            rows.append((name, run(make, tasks, batches, name, args.steps)))
        ew2 = run(make, tasks, batches, "equal", args.steps)
        rows.append(("equal (again)", ew2))
        base = (ew["median_ms"] + ew2["median_ms"]) / 2
        print(f"| method | mode | step ms | × EW | RSS MB step 10 | RSS MB step {args.steps} |")
        print("|---|---|---:|---:|---:|---:|")
        for name, r in rows:
            print(f"| {name} | {r['mode']} | {r['median_ms']:.2f} | {r['median_ms'] / base:.2f} "
                  f"| {r['rss10']:.0f} | {r['rss_end']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
