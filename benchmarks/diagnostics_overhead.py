"""Overhead of the default diagnostics on census MMoE training throughput.

One process, one model: training alternates between blocks of ``--block`` optimizer steps with
the ``Diagnostics`` recorder attached and blocks without it (ABBA order, so slow drifts of a
shared machine's load hit both sides equally). Prints the median steps/s of each side, their
ratio, and the recorder's own measured share of the "on" time.

    python benchmarks/diagnostics_overhead.py --blocks 16 --block 200
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch

from mtlkit import api
from mtlkit.balancing import create_balancer
from mtlkit.config import DiagnosticsConfig, load_config
from mtlkit.diagnose import Diagnostics
from mtlkit.train.trainer import Trainer

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "census-income" / "mmoe.yaml"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(CONFIG))
    ap.add_argument("--blocks", type=int, default=16, help="blocks in all (half on, half off)")
    ap.add_argument("--block", type=int, default=200, help="optimizer steps per block")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    cfg = load_config(args.config, ["train.progress=false"])
    torch.set_num_threads(cfg.train.threads or torch.get_num_threads())
    data = api.load_data(cfg)
    tasks = data.raw.schema.tasks
    model = api.build_model(cfg, data.input_spec, tasks)
    balancer = create_balancer(cfg.balancer.name, [t.name for t in tasks], **cfg.balancer.params)
    trainer = Trainer(model, tasks, balancer, cfg.train, None)
    diag = Diagnostics(DiagnosticsConfig(), tempfile.mkdtemp(prefix="diag-overhead-"),
                       tensorboard=True)
    every = diag.config.every
    store, gen = data.stores["train"], torch.Generator().manual_seed(0)

    def batches():
        while True:
            yield from store.batches(cfg.train.batch_size, store.permutation(gen))

    stream = batches()
    for _ in range(every):  # warm-up, and the recorder's one-time start (files, TB writer)
        trainer.train_step(next(stream))
    trainer.step_callbacks = [diag]
    for _ in range(every):
        trainer.train_step(next(stream))
    rates: dict[bool, list[float]] = {True: [], False: []}
    recorder = 0.0
    on_time = 0.0
    for i in range(args.blocks):
        on = (i % 4) in (0, 3)  # ABBA
        trainer.step_callbacks = [diag] if on else []
        before = diag.seconds
        started = time.perf_counter()
        for _ in range(args.block):
            trainer.train_step(next(stream))
        elapsed = time.perf_counter() - started
        rates[on].append(args.block / elapsed)
        if on:
            recorder += diag.seconds - before
            on_time += elapsed
        print(f"block {i:2d} {'on ' if on else 'off'} {args.block / elapsed:8.1f} steps/s",
              flush=True)
    diag.close()
    med_on, med_off = statistics.median(rates[True]), statistics.median(rates[False])
    print(f"median steps/s: diagnostics on {med_on:.1f}, off {med_off:.1f}; "
          f"throughput ratio on/off {med_on / med_off:.4f} "
          f"(overhead {100 * (1 - med_on / med_off):+.2f}%)")
    print(f"recorder's own time: {recorder:.2f}s of {on_time:.2f}s with diagnostics on "
          f"({100 * recorder / on_time:.2f}%), records every {every} steps")


if __name__ == "__main__":
    main()
