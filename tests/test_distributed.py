"""Data-parallel training (torch.distributed, gloo, 2 processes on this machine).

One step on 2 ranks × batch 4 equals one single-process step on the batch of 8 (1e-6) for loss
weighting (EW, UW) and gradient balancers (PCGrad, MGDA, CAGrad; representation and parameter
modes), parameters are identical across ranks, and a rank whose batch has no label of one task
completes the step. ``torchrun -m mtlkit train`` runs end to end with only rank 0 writing.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp
import yaml
from tests.conftest import tiny_config, tiny_table

from mtlkit.balancing import create_balancer
from mtlkit.config import TrainConfig
from mtlkit.data.prepare import InputSpec
from mtlkit.data.schema import TaskSpec
from mtlkit.data.store import Batch
from mtlkit.models import create_model
from mtlkit.train.trainer import Trainer

SPEC = InputSpec("tabular", [5, 4, 3], 2)
TASKS = [TaskSpec(name="t1", column="a"), TaskSpec(name="t2", column="b", allow_missing=True)]
#: (case name, balancer, params): EW, UW and the gradient methods in both gradient spaces
CASES = [
    ("ew", "fixed", {}),
    ("uw", "uncertainty", {}),
    ("pcgrad", "pcgrad", {}),  # representation mode (default)
    ("pcgrad-params", "pcgrad", {"mode": "parameters"}),
    ("mgda", "mgda", {}),  # parameters (default)
    ("mgda-ub", "mgda_ub", {}),  # representation
    ("cagrad", "cagrad", {}),
    ("cagrad-params", "cagrad", {"mode": "parameters"}),
]
GLOBAL_BATCH, WORLD = 8, 2


def _global_batch(missing: bool) -> Batch:
    g = torch.Generator().manual_seed(3)
    cat = (torch.rand(GLOBAL_BATCH, 3, generator=g) * torch.tensor([5, 4, 3])).long()
    labels = {t.name: (torch.rand(GLOBAL_BATCH, generator=g) < 0.5).float() for t in TASKS}
    mask = torch.arange(GLOBAL_BATCH) < 4 if missing else None  # rank 1: no t2 label at all
    return Batch({"categorical": cat, "numeric": torch.randn(GLOBAL_BATCH, 2, generator=g)},
                 labels, {"t1": None, "t2": mask})


def _rows(batch: Batch, lo: int, hi: int) -> Batch:
    def cut(t):
        return None if t is None else t[lo:hi]

    return Batch({k: v[lo:hi] for k, v in batch.features.items()},
                 {k: v[lo:hi] for k, v in batch.labels.items()},
                 {k: cut(v) for k, v in batch.masks.items()})


def one_step(balancer: str, params: dict, missing: bool, rank: int = 0,
             world: int = 1) -> dict[str, torch.Tensor]:
    """Parameters after one SGD step (world > 1: inside an initialised process group)."""
    torch.manual_seed(0)
    model = create_model("mmoe", SPEC, TASKS, num_experts=3, expert_units=[8], tower_units=[4])
    bal = create_balancer(balancer, [t.name for t in TASKS], **params)
    cfg = TrainConfig(optimizer={"name": "sgd", "lr": 0.5}, progress=False, tensorboard=False)
    trainer = Trainer(model, TASKS, bal, cfg)
    batch = _global_batch(missing)
    if world > 1:
        from mtlkit.train.distributed import DistributedContext

        DistributedContext(rank, world).wrap(trainer)
        per = GLOBAL_BATCH // world
        batch = _rows(batch, rank * per, (rank + 1) * per)
    trainer.train_step(batch)
    out = {f"model.{k}": v.detach().clone() for k, v in model.state_dict().items()}
    out |= {f"balancer.{k}": v.detach().clone() for k, v in bal.state_dict().items()
            if torch.is_tensor(v)}
    return out


def _worker(rank: int, port: int, out: str) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        results = {(name, missing): one_step(bal, params, missing, rank, WORLD)
                   for name, bal, params in CASES for missing in (False, True)}
        torch.save(results, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("ddp")
    ctx = mp.get_context("spawn")
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, port, str(out))) for r in range(WORLD)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=600)
    for p in procs:
        if p.is_alive():
            p.kill()
            pytest.fail("a rank hung (a collective was not matched)")
        assert p.exitcode == 0, f"rank exited with {p.exitcode}"
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


@pytest.mark.parametrize("missing", [False, True], ids=["all-labelled", "rank1-lacks-t2"])
@pytest.mark.parametrize(("name", "balancer", "params"), CASES, ids=[c[0] for c in CASES])
def test_two_ranks_equal_one_process_on_the_concatenated_batch(ranks, name, balancer, params,
                                                               missing):
    single = one_step(balancer, params, missing)
    before = one_step("fixed", {}, missing) if name == "ew" else None
    r0, r1 = ranks[0][(name, missing)], ranks[1][(name, missing)]
    assert r0.keys() == single.keys()
    for k in single:
        assert torch.equal(r0[k], r1[k]), f"ranks differ on {k}"
        torch.testing.assert_close(r0[k], single[k], atol=1e-6, rtol=0, msg=k)
    if before is not None:  # the step moved the parameters (the comparison is not vacuous)
        torch.manual_seed(0)
        init = create_model("mmoe", SPEC, TASKS, num_experts=3, expert_units=[8],
                            tower_units=[4]).state_dict()
        assert not torch.equal(init["experts.weight"], single["model.experts.weight"])


def test_sharded_store_splits_every_global_batch(tmp_path):
    from mtlkit.data.store import TensorStore
    from mtlkit.train.distributed import ShardedStore

    store = TensorStore({"numeric": torch.arange(21.0)[:, None]}, {"y": torch.zeros(21)})
    order = torch.randperm(21, generator=torch.Generator().manual_seed(0))
    shards = [ShardedStore(store, r, 2) for r in range(2)]
    assert [s.num_batches(4) for s in shards] == [2, 2]  # 16 of 21 rows; the tail is dropped
    got = [[b.features["numeric"][:, 0] for b in s.batches(4, order)] for s in shards]
    glob = [b.features["numeric"][:, 0] for b in store.batches(8, order)][:2]
    assert [len(g) for g in got] == [2, 2]
    for i in range(2):
        assert torch.equal(torch.cat([got[0][i], got[1][i]]), glob[i])
    resumed = next(iter(shards[1].batches(4, order, start=1)))
    assert torch.equal(resumed.features["numeric"][:, 0], got[1][1])


@pytest.mark.parametrize("streaming", [False, True])
def test_torchrun_end_to_end(tmp_path, streaming):
    if streaming:  # each rank streams its own Parquet row groups (90 / 90 / 90 / 90 / 40 rows)
        train = tmp_path / "train.parquet"
        tiny_table(400).to_parquet(train, index=False, row_group_size=90)
        cfg = tiny_config(str(train), epochs=2, batch_size=16, patience=None)
        valid = tmp_path / "valid.parquet"
        tiny_table(100, seed=1).to_parquet(valid, index=False)
        cfg["data"]["params"]["valid"] = str(valid)
        cfg["data"]["streaming"] = {"batch_rows": 50, "shuffle_buffer": 100}
        steps_per_epoch = 180 // 16  # rank shares 220 / 180 rows: both stop after 180
    else:  # in-memory: 360 train rows cut into global batches of 2 × 16
        csv = tmp_path / "train.csv"
        tiny_table(400).to_csv(csv, index=False)
        cfg = tiny_config(str(csv), epochs=2, batch_size=16, patience=None)
        steps_per_epoch = 360 // 32
    cfg["train"]["optimizer"] = {"name": "sgd", "lr": 0.1}
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
         "--master-port", str(_free_port()), "-m", "mtlkit", "train", str(config),
         "--out", str(tmp_path / "ddp")], capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads((tmp_path / "ddp" / "results.json").read_text())
    assert results["steps"] == 2 * steps_per_epoch
    assert results["valid"]["click"]["auc"] > 0.7
    assert (tmp_path / "ddp" / "checkpoint.pt").exists()


def test_streaming_store_shard_rows_cuts_every_global_batch(tmp_path):
    from tests.conftest import TINY_FEATURES, TINY_TASKS

    from mtlkit.data.encoders import TabularEncoder
    from mtlkit.data.schema import Schema
    from mtlkit.data.streaming import StreamingStore

    frame = tiny_table(150).assign(size=lambda f: range(len(f)))  # size = row id
    frame.to_parquet(tmp_path / "t.parquet", index=False, row_group_size=40)
    encoder = TabularEncoder(Schema(features=TINY_FEATURES, tasks=TINY_TASKS)).fit(frame)
    stores = [StreamingStore(tmp_path / "t.parquet", encoder, batch_rows=30, shuffle_buffer=50,
                             shard="rows") for _ in range(3)]
    stores[1].shard_of, stores[2].shard_of = (0, 2), (1, 2)
    seed = stores[0].permutation(torch.Generator().manual_seed(0))
    # rank slices of batch 8 == the single-process stream with the global batch of 16
    ids = [[b.features["numeric"][:, 0] for b in s.batches(8 if s.shard_of[1] > 1 else 16,
                                                             seed)] for s in stores]
    assert stores[1].num_batches(8) == len(ids[1]) == len(ids[2]) == 150 // 16
    for i in range(len(ids[1])):
        assert torch.equal(torch.cat([ids[1][i], ids[2][i]]), ids[0][i])


def test_streaming_store_shard_files_gives_each_rank_its_own_row_groups(tmp_path):
    from tests.conftest import TINY_FEATURES, TINY_TASKS

    from mtlkit.data.encoders import TabularEncoder
    from mtlkit.data.schema import Schema
    from mtlkit.data.streaming import StreamingStore
    from mtlkit.errors import DataError

    frame = tiny_table(170).assign(size=lambda f: range(len(f)))  # size = row id
    frame.to_parquet(tmp_path / "t.parquet", index=False, row_group_size=40)  # 40×4 + 10
    encoder = TabularEncoder(Schema(features=TINY_FEATURES, tasks=TINY_TASKS)).fit(frame)
    stores = [StreamingStore(tmp_path / "t.parquet", encoder, batch_rows=15, shuffle_buffer=30)
              for _ in range(2)]
    stores[0].shard_of, stores[1].shard_of = (0, 2), (1, 2)
    # greedy by rows, largest first to the least loaded rank (ties: lowest rank): rank 0 gets
    # row groups 0, 2 and the 10-row tail 4 (90 rows), rank 1 gets 1 and 3 (80 rows); both
    # stop after the smaller share: 80 // 16 = 5 batches
    assert [s._rank_units() for s in stores] == [([0, 2, 4], 80), ([1, 3], 80)]
    seed = stores[0].permutation(torch.Generator().manual_seed(3))
    ids = [torch.cat([b.features["numeric"][:, 0] for b in s.batches(16, seed)]) for s in stores]
    assert stores[0].num_batches(16) == 5 and [len(i) for i in ids] == [80, 80]
    assert not set(ids[0].tolist()) & set(ids[1].tolist())  # disjoint rows
    # rank 1's rows are exactly its two row groups (denormalise the standardised row id)
    rows1 = sorted(round(v) for v in (ids[1] * encoder.numeric[0].std + encoder.numeric[0].mean
                                      ).tolist())
    assert rows1 == list(range(40, 80)) + list(range(120, 160))
    stores[0].shard_of = (0, 6)  # 5 row groups cannot feed 6 ranks
    with pytest.raises(DataError, match=r"5 file\(s\)/row group\(s\) cannot be shared by 6"):
        stores[0].num_batches(16)


def _fit_worker(rank: int, port: int, folder: str, out: str) -> None:
    import torch.distributed as dist
    from tests.conftest import TINY_FEATURES, TINY_TASKS

    from mtlkit.data.encoders import TabularEncoder
    from mtlkit.data.schema import Schema
    from mtlkit.data.streaming import StreamingStore, fit_store_encoder

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        encoder = TabularEncoder(Schema(features=TINY_FEATURES, tasks=TINY_TASKS))
        store = StreamingStore(folder, encoder, batch_rows=30, workers=0)
        read: list[str] = []
        frames = store.frames
        store.frames = lambda units: (read.extend(u.path for u in units), frames(units))[1]
        rows = fit_store_encoder(store)
        torch.save({"rows": rows, "read": read, "encoder": encoder.to_dict()},
                   Path(out) / f"fit{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_encoder_fit_under_torchrun_reads_each_file_once_and_agrees(tmp_path):
    from tests.conftest import TINY_FEATURES, TINY_TASKS

    from mtlkit.data.encoders import TabularEncoder
    from mtlkit.data.schema import Schema

    frame = tiny_table(300)
    folder = tmp_path / "parts"
    folder.mkdir()
    for i in range(3):
        frame.iloc[i * 100:(i + 1) * 100].to_csv(folder / f"part-{i}.csv", index=False)
    ctx, port = mp.get_context("spawn"), _free_port()
    procs = [ctx.Process(target=_fit_worker, args=(r, port, str(folder), str(tmp_path)))
             for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
        assert p.exitcode == 0, f"rank exited with {p.exitcode}"
    fits = [torch.load(tmp_path / f"fit{r}.pt", weights_only=False) for r in range(2)]
    assert [f["rows"] for f in fits] == [300, 300]
    assert [len(f["read"]) for f in fits] == [2, 1]  # units 0::2 and 1::2
    assert sorted(fits[0]["read"] + fits[1]["read"]) == sorted(str(p) for p in folder.iterdir())
    reference = TabularEncoder(Schema(features=TINY_FEATURES, tasks=TINY_TASKS)).fit(
        pd.concat([pd.read_csv(p, dtype=str) for p in sorted(folder.iterdir())]))
    for f in fits:
        assert f["encoder"]["categorical"] == reference.to_dict()["categorical"]
        for got, want in zip(f["encoder"]["numeric"], reference.numeric, strict=True):
            assert got["mean"] == pytest.approx(want.mean, rel=1e-12)
            assert got["std"] == pytest.approx(want.std, rel=1e-12)
    assert fits[0]["encoder"] == fits[1]["encoder"]  # identical on every rank
