"""Streaming input: PyArrow record batches, streamed encoder fit, bounded shuffle buffer;
training from a stream equals in-memory training on the same row order."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from tests.conftest import (
    TINY_FEATURES,
    TINY_TASKS,
    assert_same_parameters,
    interrupt_and_resume,
    tiny_config,
    tiny_table,
)

from mtlkit import api
from mtlkit.data.encoders import TabularEncoder
from mtlkit.data.prepare import encode_frame
from mtlkit.data.readers import ReadOptions
from mtlkit.data.schema import Schema
from mtlkit.data.streaming import StreamingStore, fit_encoder, fit_store_encoder
from mtlkit.errors import ConfigError

SCHEMA = Schema(features=TINY_FEATURES, tasks=TINY_TASKS)


def _folder(frame: pd.DataFrame, tmp_path, fmt: str = "parquet", parts: int = 3):
    folder = tmp_path / f"parts-{fmt}"
    folder.mkdir()
    for i, piece in enumerate(np.array_split(np.arange(len(frame)), parts)):
        part = frame.iloc[piece]
        if fmt == "parquet":
            part.to_parquet(folder / f"part-{i}.parquet", index=False, row_group_size=50)
        else:
            part.to_csv(folder / f"part-{i}.csv", index=False)
    return folder


@pytest.mark.parametrize(("fmt", "workers"), [("parquet", None), ("csv", None), ("parquet", 0),
                                               ("parquet", 2), ("csv", 2)])
def test_streamed_encoder_fit_equals_in_memory_fit(tmp_path, fmt, workers):
    frame = tiny_table(500)
    frame.loc[3, "color"] = None  # a missing category becomes the <missing> token
    frame.loc[7, "size"] = np.nan  # a missing number is left out of mean/std
    folder = _folder(frame, tmp_path, fmt)
    streamed = TabularEncoder(SCHEMA)
    store = StreamingStore(folder, streamed, batch_rows=37, workers=workers or 0)
    if workers is None:  # the frames themselves, in this process
        assert fit_encoder(streamed, store.frames()) == 500
    else:  # per-chunk statistics, computed in reader processes
        assert fit_store_encoder(store) == 500
    reference = TabularEncoder(SCHEMA).fit(frame if fmt == "parquet" else pd.concat(
        [pd.read_csv(p, dtype=str) for p in sorted(folder.iterdir())], ignore_index=True))
    for a, b in zip(streamed.categorical, reference.categorical, strict=True):
        assert a.vocabulary == b.vocabulary
    for a, b in zip(streamed.numeric, reference.numeric, strict=True):
        assert a.mean == pytest.approx(b.mean, rel=1e-12)
        assert a.std == pytest.approx(b.std, rel=1e-12)


def test_file_order_batches_equal_tensor_store_batches(tmp_path):
    frame = tiny_table(310)
    encoder = TabularEncoder(SCHEMA).fit(frame)
    store = StreamingStore(_folder(frame, tmp_path), encoder, batch_rows=29)
    reference = encode_frame(encoder, frame)
    got, want = list(store.batches(32)), list(reference.batches(32))
    assert store.num_batches(32) == reference.num_batches(32) == len(got) == len(want) == 10
    for a, b in zip(got, want, strict=True):
        for k in ("categorical", "numeric"):
            assert torch.equal(a.features[k], b.features[k])
        for k in ("click", "like"):
            assert torch.equal(a.labels[k], b.labels[k]) and a.masks[k] is b.masks[k] is None
    resumed = list(store.batches(32, start=7))  # resume: skip the first 7 batches
    assert len(resumed) == 3 and torch.equal(resumed[0].labels["click"], want[7].labels["click"])


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_shuffle_buffer_is_a_seeded_permutation_of_the_rows(tmp_path, workers):
    frame = tiny_table(400).assign(size=np.arange(400, dtype=float))  # size = row id
    encoder = TabularEncoder(SCHEMA).fit(frame)
    store = StreamingStore(_folder(frame, tmp_path), encoder, batch_rows=25, shuffle_buffer=100,
                           workers=workers)
    seed = store.permutation(torch.Generator().manual_seed(0))
    ids = lambda batches: torch.cat([b.features["numeric"][:, 0] for b in batches])  # noqa: E731
    first = ids(store.batches(16, seed))
    assert len(first) == 400 and torch.unique(first).numel() == 400  # every row exactly once
    assert not torch.equal(first, torch.sort(first).values)  # shuffled
    assert torch.equal(first, ids(store.batches(16, seed)))  # same seed, same stream
    assert torch.equal(first[16 * 5:], ids(store.batches(16, seed, start=5)))
    other = store.permutation(torch.Generator().manual_seed(1))
    assert not torch.equal(first, ids(store.batches(16, other)))
    if workers == 1:  # one reader process streams exactly what the training process would
        store.workers = 0
        assert torch.equal(first, ids(store.batches(16, seed)))


def _row_ids(store: StreamingStore, seed) -> torch.Tensor:
    ids = torch.cat([b.features["numeric"][:, 0] for b in store.batches(10, seed)])
    return torch.round(ids * store.encoder.numeric[0].std + store.encoder.numeric[0].mean)


def test_shuffle_buffer_is_bounded_and_a_large_one_shuffles_fully(tmp_path):
    frame = tiny_table(400).assign(size=np.arange(400, dtype=float))  # size = row id
    encoder = TabularEncoder(SCHEMA).fit(frame)
    folder = _folder(frame, tmp_path)
    seed = torch.tensor([12345])
    # rows arrive in file order (no file shuffling) through a 60-row buffer in chunks of 20:
    # the row emitted at position p arrived before p + 60 + 20 rows had been read
    store = StreamingStore(folder, encoder, batch_rows=20, shuffle_buffer=60,
                           shuffle_files=False, workers=0)
    rows = _row_ids(store, seed)
    assert sorted(rows.tolist()) == list(range(400))
    assert (rows < torch.arange(400) + 60 + 20).all()
    assert (rows[:100] >= 100).any()  # but it does mix beyond one chunk
    # a buffer larger than the data holds every row before emitting: a full permutation,
    # so the last file's rows can come first
    store.shuffle_buffer = 1000
    rows = _row_ids(store, seed)
    assert sorted(rows.tolist()) == list(range(400)) and (rows[:40] >= 267).any()


def _write(frame: pd.DataFrame, path) -> str:
    frame.to_parquet(path, index=False)
    return str(path)


def test_streaming_training_equals_in_memory_training_on_the_same_order(tmp_path):
    frame, valid = tiny_table(600), tiny_table(120, seed=1)
    params = {"valid": _write(valid, tmp_path / "valid.parquet"),
              "features": TINY_FEATURES, "tasks": TINY_TASKS}
    cfg = tiny_config(_write(frame, tmp_path / "train.parquet"), epochs=1, patience=None)
    cfg["data"]["params"].update(params)
    memory = api.train(cfg, out=tmp_path / "memory")
    # the order the in-memory trainer used: the first permutation of its seeded generator
    order = torch.randperm(len(frame), generator=torch.Generator().manual_seed(0)).numpy()
    shuffled = frame.iloc[order].reset_index(drop=True)
    stream_cfg = tiny_config(_write(shuffled, tmp_path / "shuffled.parquet"), epochs=1,
                             patience=None)
    stream_cfg["data"]["params"].update(params)
    stream_cfg["data"]["streaming"] = {"batch_rows": 45, "shuffle_buffer": 0,
                                       "shuffle_files": False,
                                       "encoder": str(tmp_path / "memory")}
    streamed = api.train(stream_cfg, out=tmp_path / "stream")
    assert memory.results["steps"] == streamed.results["steps"] == 19
    a, b = memory.model.state_dict(), streamed.model.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert memory.results["valid"] == streamed.results["valid"]


def test_streaming_run_resumes_exactly_mid_epoch(tmp_path, monkeypatch):

    folder = _folder(tiny_table(500), tmp_path)
    cfg = tiny_config(str(folder), epochs=2, patience=None, checkpoint_every_steps=4)
    cfg["data"]["params"]["valid"] = _write(tiny_table(100, seed=2), tmp_path / "v.parquet")
    cfg["data"]["streaming"] = {"batch_rows": 40, "shuffle_buffer": 120}
    full = api.train(cfg, out=tmp_path / "full")
    resumed = interrupt_and_resume(monkeypatch, cfg, tmp_path / "killed",
                                   lambda saved: saved["fit"]["step"] == 20)
    assert_same_parameters(full.model, resumed.model)


def test_streaming_config_errors(tmp_path):
    cfg = tiny_config(_write(tiny_table(50), tmp_path / "t.parquet"))
    cfg["data"]["streaming"] = {}
    with pytest.raises(ConfigError, match="valid"):
        api.train(cfg)
    cfg["data"] = {"dataset": "synthetic", "streaming": {}}
    with pytest.raises(ConfigError, match="table"):
        api.train(cfg)


def test_streaming_csv_with_options(tmp_path):
    frame = tiny_table(80)
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False, header=False, sep=";")
    options = ReadOptions(header=False, names=list(frame.columns), delimiter=";")
    encoder = TabularEncoder(SCHEMA)
    store = StreamingStore(path, encoder, options)
    assert fit_encoder(encoder, store.frames()) == 80
    assert encoder.categorical[0].vocabulary == TabularEncoder(SCHEMA).fit(
        frame).categorical[0].vocabulary


def test_parquet_readers_do_not_keep_what_they_have_read(tmp_path):
    """Regression: PyArrow's default pre-buffering kept reads alive, so memory grew with every
    row group read (`mtlkit predict` and streaming training on a 20 M-row file)."""
    import pyarrow as pa

    from mtlkit.data.readers import iter_table

    rng = np.random.default_rng(0)
    n = 50_000  # row groups this large show the growth (small ones do not)
    frame = pd.DataFrame({"s": rng.integers(0, 10**9, 40 * n).astype(str),
                          "x": rng.random(40 * n)})
    path = tmp_path / "many-groups.parquet"
    frame.to_parquet(path, index=False, row_group_size=n)
    held = []
    for i, chunk in enumerate(iter_table(path, chunk_rows=n)):
        del chunk
        if i in (5, 35):
            held.append(pa.total_allocated_bytes())
    assert held[1] - held[0] < 2**20, held  # flat (pre-buffered: +8 MB over 30 row groups)
    encoder = TabularEncoder(SCHEMA).fit(tiny_table(50))
    store = StreamingStore(_folder(tiny_table(50), tmp_path), encoder)
    assert store.dataset.format.default_fragment_scan_options.pre_buffer is False
