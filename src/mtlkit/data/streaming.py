"""Training data larger than memory: Parquet/CSV (a file or a folder of files) streamed through
PyArrow record batches, encoded on the fly, shuffled through a bounded buffer.

Memory is bounded by ``batch_rows`` (one decoded record batch per reader) plus
``shuffle_buffer`` encoded rows, whatever the file size. Reading, encoding and buffering run in
``workers`` DataLoader processes, so they overlap the training step without sharing its GIL.
``StreamingStore.batches`` yields the same ``Batch`` objects as ``TensorStore.batches``, so the
``Trainer`` is unchanged:

* ``permutation(generator)`` draws one seed per epoch from the trainer's generator (the epoch's
  "order"); ``batches(batch_size, order, start)`` replays the epoch's stream from that seed and
  skips ``start`` batches, so a resumed run sees exactly the batches it would have seen;
* with ``order=None``, or ``shuffle_buffer=0`` and ``shuffle_files=False``, rows come in file
  order (files sorted by path) and the batches equal ``TensorStore.batches(order=None)`` on the
  concatenated table.

Shuffling: the list of Parquet row groups (or files) is permuted, then rows pass through a
buffer of ``shuffle_buffer`` rows (``_ShuffleBuffer``: each arriving record batch evicts as many
rows from random slots and takes their places, a cost proportional to the batch, not the
buffer; never per-sample Python). A buffer at least the size of the data is a full shuffle.

Under torchrun, ``shard="files"`` deals the units (files / row groups) to the ranks by size and
every rank stops after the smallest share's batches; ``shard="rows"`` reproduces the
single-process stream exactly (each rank reads everything and keeps its slice).

Encoders are fitted in a first streaming pass (``fit_store_encoder``: per-chunk summaries in
the readers, merged by ``fit_encoder``: category counts and Chan's parallel mean/variance, the
same vocabulary order and statistics as ``TabularEncoder.fit``) or loaded from a trained run
(``data.streaming.encoder``). Validation and test files are small and read into memory.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from mtlkit.config import DataConfig
from mtlkit.data.datasets import RawSplits
from mtlkit.data.encoders import TabularEncoder, _factorize, require_columns
from mtlkit.data.prepare import InputSpec, PreparedData, encode_frame
from mtlkit.data.readers import ReadOptions
from mtlkit.data.schema import Schema
from mtlkit.data.store import Batch
from mtlkit.errors import ConfigError, DataError

PARQUET_SUFFIXES = {".parquet", ".pq"}


def _format(path: Path, options: ReadOptions) -> str:
    if options.format != "auto":
        return options.format
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    if not files:
        raise DataError(f"{path}: no data files found")
    return "parquet" if files[0].suffix.lower() in PARQUET_SUFFIXES else "csv"


def schema_columns(schema: Schema) -> list[str]:
    """Every column a schema reads: features, labels, sample spaces and sample weights."""
    cols = [f.name for f in schema.features]
    for t in schema.tasks:
        cols += [c for c in (t.column, t.sample_space, t.sample_weight) if c is not None]
    return list(dict.fromkeys(cols))


def open_dataset(path: str | Path, options: ReadOptions, columns: list[str]) -> ds.Dataset:
    """A ``pyarrow.dataset`` over one file or a folder of files. CSV columns are read as
    strings (as ``read_table`` does) and typed later against the schema."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"data file or folder not found: {path}")
    if _format(path, options) == "parquet":  # no pre-buffering: it kept reads alive (RSS grew)
        scan = ds.ParquetFragmentScanOptions(pre_buffer=False)
        return ds.dataset(str(path), format=ds.ParquetFileFormat(
            default_fragment_scan_options=scan))
    if not options.header and not options.names:
        raise DataError(f"{path}: a CSV without a header row needs read.names")
    if options.names:  # a header row, if any, is skipped: the names given win
        read = pacsv.ReadOptions(column_names=options.names, skip_rows=int(options.header))
    else:
        read = pacsv.ReadOptions()
    convert = pacsv.ConvertOptions(
        column_types={c: pa.string() for c in columns}, strings_can_be_null=True,
        **({"null_values": options.na_values} if options.na_values is not None else {}),
    )
    fmt = ds.CsvFileFormat(read_options=read, convert_options=convert,
                           parse_options=pacsv.ParseOptions(delimiter=options.delimiter))
    return ds.dataset(str(path), format=fmt)


class StreamingStore:
    """Rows streamed from files; batches as in ``TensorStore`` (see the module docstring)."""

    def __init__(
        self, path: str | Path, encoder: TabularEncoder, options: ReadOptions | None = None,
        batch_rows: int = 65536, shuffle_buffer: int = 262144, shuffle_files: bool = True,
        num_rows: int | None = None, workers: int = 1, prefetch: int = 2,
        shard: Literal["files", "rows"] = "files",
    ) -> None:
        if batch_rows < 1 or shuffle_buffer < 0 or workers < 0 or prefetch < 1:
            raise ValueError(f"streaming needs batch_rows >= 1, shuffle_buffer >= 0, workers "
                             f">= 0 and prefetch >= 1, got {batch_rows}, {shuffle_buffer}, "
                             f"{workers} and {prefetch}")
        if shard not in ("files", "rows"):
            raise ValueError(f"streaming shard must be 'files' or 'rows', got {shard!r}")
        self.path, self.encoder = Path(path), encoder
        self.options = options or ReadOptions()
        self.batch_rows, self.shuffle_buffer = batch_rows, shuffle_buffer
        self.shuffle_files = shuffle_files
        #: reader processes (a torch DataLoader over record batches); 0 = read in this process
        self.workers, self.prefetch = workers, prefetch
        #: under torchrun: "files" = each rank reads its own files / row groups, "rows" = every
        #: rank reads everything and keeps its rows of each global batch (the single-process
        #: stream exactly, at world× the reading cost)
        self.shard = shard
        self.columns = schema_columns(encoder.schema)
        self.dataset = open_dataset(self.path, self.options, self.columns)
        missing = [c for c in self.columns if c not in self.dataset.schema.names]
        if missing:
            frame = pd.DataFrame(columns=self.dataset.schema.names)
            frame.attrs["source"] = str(self.path)
            require_columns(frame, missing)
        self._num_rows = num_rows
        self._units: list | None = None
        self._unit_rows: list[int] | None = None
        self.task_names = [t.name for t in encoder.schema.tasks]
        #: (rank, world), set by the distributed wrapper
        self.shard_of: tuple[int, int] = (0, 1)

    # ---------------------------------------------------------------- reading
    def units(self) -> list:
        """The reading units in file order: CSV files, or the row groups of Parquet files."""
        if self._units is None:
            frags = sorted(self.dataset.get_fragments(), key=lambda f: f.path)
            if isinstance(self.dataset.format, ds.ParquetFileFormat):
                frags = [rg for f in frags for rg in f.split_by_row_group()]
            self._units = frags
        return self._units

    def unit_rows(self) -> list[int]:
        """Rows per unit (Parquet: from the metadata; CSV: one counting scan, cached)."""
        if self._unit_rows is None:
            self._unit_rows = [
                sum(rg.num_rows for rg in u.row_groups) if isinstance(
                    u, ds.ParquetFileFragment) else u.count_rows() for u in self.units()]
        return self._unit_rows

    def _by_files(self) -> bool:
        return self.shard_of[1] > 1 and self.shard == "files"

    def _rank_units(self) -> tuple[list[int], int]:
        """This rank's unit indices and the rows of the smallest rank's share.

        Units go to ranks greedily, largest first to the least loaded rank (deterministic), so
        every rank holds about ``rows / world`` rows; ranks stop after the smallest share."""
        rank, world = self.shard_of
        n_units = len(self.units())
        if not self._by_files():
            return list(range(n_units)), len(self)
        if n_units < world:
            raise DataError(
                f"{self.path}: {n_units} file(s)/row group(s) cannot be shared by {world} ranks; "
                "write smaller row groups or more files, or set data.streaming.shard: rows")
        rows = self.unit_rows()
        loads, owner = [0] * world, [0] * n_units
        for i in sorted(range(n_units), key=lambda i: (-rows[i], i)):
            r = min(range(world), key=lambda r: (loads[r], r))
            owner[i], loads[r] = r, loads[r] + rows[i]
        return [i for i in range(n_units) if owner[i] == rank], min(loads)

    def frames(self, units: list | None = None) -> Iterator[pd.DataFrame]:
        """The raw rows of ``units`` (default: all, in file order) as pandas chunks of at most
        ``batch_rows`` rows."""
        for frag in self.units() if units is None else units:
            # bounded read-ahead, one thread: PyArrow's threaded default scan buffered ~0.5 GB
            # ahead on the census file (RSS grew with the file); this keeps it flat
            for rb in frag.to_batches(columns=self.columns, batch_size=self.batch_rows,
                                      batch_readahead=1, fragment_readahead=1,
                                      use_threads=False):
                if rb.num_rows == 0:
                    continue
                frame = rb.to_pandas()
                if self.options.skipinitialspace:
                    for c in frame.columns:
                        if frame[c].dtype == object:
                            frame[c] = frame[c].str.lstrip()
                frame.attrs["source"] = str(frag.path)
                yield frame

    def encode(self, frame: pd.DataFrame) -> dict[str, torch.Tensor]:
        """One chunk as named tensors: ``f:`` features, ``y:``/``m:``/``w:`` per task."""
        out = {f"f:{k}": v for k, v in self.encoder.transform(frame).items()}
        labels, masks = self.encoder.encode_labels(frame)
        weights = self.encoder.encode_weights(frame)
        for k in self.task_names:
            out[f"y:{k}"] = labels[k]
            m = masks[k]
            out[f"m:{k}"] = torch.ones(len(frame), dtype=torch.bool) if m is None else m
            if weights[k] is not None:
                out[f"w:{k}"] = weights[k]
        return out

    def _shuffled(self, units: list, seed: int | None) -> Iterator[dict[str, torch.Tensor]]:
        """Encoded rows of ``units`` through the shuffle buffer (seeded by ``seed``; None = file
        order), in chunks. With ``workers`` ≥ 1 a torch DataLoader does the reading, encoding
        and buffering in other processes (sharing no GIL with the training step): worker ``w``
        takes units ``w, w + workers, ...`` with its own buffer and the loader interleaves the
        workers' chunks in a fixed order, so the stream is deterministic for a seed."""
        stream = _ShuffledUnits(self, units, seed)
        if self.workers == 0:
            return iter(stream)
        return iter(DataLoader(stream, batch_size=None, prefetch_factor=self.prefetch,
                               num_workers=min(self.workers, max(len(units), 1)),
                               worker_init_fn=_one_arrow_thread))

    def _batch(self, t: dict[str, torch.Tensor], lo: int, hi: int) -> Batch:
        masks: dict[str, torch.Tensor | None] = {}
        for k in self.task_names:
            m = t[f"m:{k}"][lo:hi]
            masks[k] = None if bool(m.all()) else m
        feats = {k[2:]: v[lo:hi] for k, v in t.items() if k.startswith("f:")}
        return Batch(
            features=feats, labels={k: t[f"y:{k}"][lo:hi] for k in self.task_names},
            masks=masks,
            weights={k: t[f"w:{k}"][lo:hi] if f"w:{k}" in t else None for k in self.task_names},
        )

    # ---------------------------------------------------------------- TensorStore interface
    def __len__(self) -> int:
        if self._num_rows is None:
            self._num_rows = self.dataset.count_rows()
        return self._num_rows

    def permutation(self, generator: torch.Generator) -> torch.Tensor:
        """The epoch's shuffle seed (drawn from the trainer's generator)."""
        return torch.randint(0, 2**62, (1,), generator=generator)

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        world = self.shard_of[1]
        if self._by_files():
            return self._rank_units()[1] // batch_size
        n, global_batch = len(self), batch_size * world
        if drop_last or world > 1:
            return n // global_batch
        return -(-n // global_batch)

    def batches(
        self, batch_size: int, order: torch.Tensor | None = None, start: int = 0,
        drop_last: bool = False,
    ) -> Iterator[Batch]:
        """Batches of ``batch_size`` rows in the stream order seeded by ``order``, from batch
        ``start``. Under torchrun (``shard_of = (rank, world)``), ``shard="files"``: this rank
        streams its own units and stops after ``num_batches`` (the smallest share), so every
        rank steps equally; ``shard="rows"``: the single-process stream is cut into global
        batches of ``batch_size·world`` rows and this rank gets rows ``[rank·b, (rank+1)·b)``
        of each (an incomplete last global batch is dropped)."""
        rank, world = self.shard_of
        mine, _ = self._rank_units()
        seed = None
        if order is not None and (self.shuffle_files or self.shuffle_buffer > 0):
            gen = torch.Generator().manual_seed(int(order.reshape(-1)[0]))
            if self.shuffle_files:
                mine = [mine[i] for i in torch.randperm(len(mine), generator=gen).tolist()]
            seed = int(torch.randint(0, 2**62, (1,), generator=gen))
        if self._by_files():
            step, offset, limit = batch_size, 0, self.num_batches(batch_size)
        else:
            step, offset, limit = batch_size * world, rank * batch_size, None
        drop_last = drop_last or world > 1
        pending: dict[str, torch.Tensor] | None = None
        index = 0
        units = self.units()
        for chunk in itertools.chain(self._shuffled([units[i] for i in mine], seed), [None]):
            if chunk is not None:
                pending = chunk if pending is None else {
                    k: torch.cat([pending[k], v]) for k, v in chunk.items()}
            if pending is None:
                continue
            n = _rows(pending)
            emit = n if chunk is None and not drop_last else n // step * step
            for lo in range(0, emit, step):
                if index == limit:
                    return
                if index >= start:
                    hi = min(lo + step, emit)
                    yield self._batch(pending, lo + offset, min(lo + offset + batch_size, hi))
                index += 1
            pending = {k: v[emit:] for k, v in pending.items()}


class _ShuffledUnits(IterableDataset):
    """The encoded rows of a list of units through a shuffle buffer, in chunks; in DataLoader
    worker ``w`` of ``W``: units ``w::W``, buffer seed ``seed + w``."""

    def __init__(self, store: StreamingStore, units: list, seed: int | None) -> None:
        self.store, self.units, self.seed = store, units, seed

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        units, worker = (self.units, 0) if info is None else (
            self.units[info.id::info.num_workers], info.id)
        capacity, gen = 0, None
        if self.seed is not None and self.store.shuffle_buffer > 0:
            capacity = self.store.shuffle_buffer
            gen = torch.Generator().manual_seed(self.seed + worker)
        buffer = _ShuffleBuffer(capacity, gen)
        for frame in self.store.frames(units):
            if (out := buffer.push(self.store.encode(frame))) is not None:
                yield out
        if (out := buffer.drain()) is not None:
            yield out


def _one_arrow_thread(worker_id: int) -> None:
    """DataLoader workers compute on one thread each (torch already does): scale with
    ``workers``, not by oversubscribing the cores the training step uses."""
    pa.set_cpu_count(1)


def _rows(t: dict[str, torch.Tensor]) -> int:
    return len(next(iter(t.values())))


class _ShuffleBuffer:
    """A bounded shuffle buffer whose cost per record batch is proportional to the batch.

    While filling, arriving rows are appended. Once full, each arriving record batch of ``k``
    rows evicts ``k`` rows from random slots (gathered in random order: those are emitted) and
    takes their places (one ``index_select`` and one ``index_copy_`` of ``k`` rows, never a
    copy of the whole buffer). At the end of the stream the buffer is emitted as one random
    permutation, so a buffer at least as large as the data is a full shuffle. ``capacity=0``
    passes rows through in stream order.
    """

    def __init__(self, capacity: int, generator: torch.Generator | None) -> None:
        self.capacity, self.gen = capacity, generator
        self.rows: dict[str, torch.Tensor] | None = None

    def push(self, chunk: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
        if self.capacity == 0:
            return chunk
        k = _rows(chunk)
        if self.rows is not None and _rows(self.rows) == self.capacity and k <= self.capacity:
            slots = torch.randperm(self.capacity, generator=self.gen)[:k]
            out = {name: v.index_select(0, slots) for name, v in self.rows.items()}
            for name, v in self.rows.items():
                v.index_copy_(0, slots, chunk[name])
            return out
        rows = chunk if self.rows is None else {
            name: torch.cat([v, chunk[name]]) for name, v in self.rows.items()}
        n = _rows(rows)
        if n <= self.capacity:
            self.rows = rows
            return None
        perm = torch.randperm(n, generator=self.gen)  # overflow while filling: evict at random
        self.rows = {name: v.index_select(0, perm[n - self.capacity:]) for name, v in rows.items()}
        return {name: v.index_select(0, perm[:n - self.capacity]) for name, v in rows.items()}

    def drain(self) -> dict[str, torch.Tensor] | None:
        rows, self.rows = self.rows, None
        if rows is None:
            return None
        perm = torch.randperm(_rows(rows), generator=self.gen)
        return {name: v.index_select(0, perm) for name, v in rows.items()}


#: per-chunk encoder statistics: (rows, value counts per categorical column, (count, mean, M2)
#: of the finite values per numeric column)
ChunkStatistics = tuple[int, list[dict[str, int]], list[tuple[int, float, float]]]


def chunk_statistics(encoder: TabularEncoder, frame: pd.DataFrame) -> ChunkStatistics:
    """What ``fit_encoder`` needs of one chunk (computed where the chunk is read)."""
    require_columns(frame, [f.name for f in encoder.schema.features])
    counts = []
    for enc in encoder.categorical:
        codes, names = _factorize(frame[enc.name])
        total: dict[str, int] = {}
        for name, c in zip(names, np.bincount(codes, minlength=len(names)), strict=True):
            total[name] = total.get(name, 0) + int(c)
        counts.append(total)
    stats = []
    for enc in encoder.numeric:
        x = enc._raw(frame[enc.name], frame.attrs.get("source", "the data"))
        x = x[np.isfinite(x)]
        mean = float(x.mean()) if x.size else 0.0
        stats.append((int(x.size), mean, float(((x - mean) ** 2).sum())))
    return len(frame), counts, stats


def merge_statistics(encoder: TabularEncoder,
                     chunks: Iterator[pd.DataFrame] | Iterator[ChunkStatistics]
                     ) -> ChunkStatistics:
    """The statistics of all ``chunks`` (frames or their ``chunk_statistics``) as one: summed
    value counts and Chan et al.'s pairwise merge of (count, mean, M2) in float64."""
    counts: list[dict[str, int]] = [{} for _ in encoder.categorical]
    stats = [(0, 0.0, 0.0) for _ in encoder.numeric]  # (n, mean, M2)
    rows = 0
    for chunk in chunks:
        n_rows, chunk_counts, chunk_stats = (
            chunk_statistics(encoder, chunk) if isinstance(chunk, pd.DataFrame) else chunk)
        rows += n_rows
        for total, part in zip(counts, chunk_counts, strict=True):
            for name, c in part.items():
                total[name] = total.get(name, 0) + c
        for j, (n_b, mean_b, m2_b) in enumerate(chunk_stats):
            n_a, mean_a, m2_a = stats[j]
            if n_b == 0:
                continue
            n = n_a + n_b
            delta = mean_b - mean_a
            stats[j] = (n, mean_a + delta * n_b / n, m2_a + m2_b + delta * delta * n_a * n_b / n)
    return rows, counts, stats


def fit_encoder(encoder: TabularEncoder,
                chunks: Iterator[pd.DataFrame] | Iterator[ChunkStatistics]) -> int:
    """Fit ``encoder`` in one streaming pass over frames (or their ``chunk_statistics``);
    returns the number of rows seen.

    Categorical vocabularies: summed value counts, ordered like ``CategoricalEncoder.fit``
    (by count, then value). Numeric: the merged mean and population std over finite values,
    as ``NumericEncoder.fit`` computes them.
    """
    rows, counts, stats = merge_statistics(encoder, chunks)
    if rows == 0:
        raise DataError("streaming: the training data has no rows")
    for enc, total in zip(encoder.categorical, counts, strict=True):
        enc.vocabulary = sorted(total, key=lambda v: (-total[v], v))
    for enc, (n, mean, m2) in zip(encoder.numeric, stats, strict=True):
        if n == 0:
            raise DataError(f"streaming: numeric column {enc.name!r} has no values")
        std = (m2 / n) ** 0.5
        enc.mean, enc.std = mean, std if std > 0 else 1.0
    encoder.fitted = True
    return rows


class _UnitStatistics(IterableDataset):
    """``chunk_statistics`` of every chunk of a list of units (worker ``w``: units ``w::W``)."""

    def __init__(self, store: StreamingStore, units: list) -> None:
        self.store, self.units = store, units

    def __iter__(self) -> Iterator[ChunkStatistics]:
        info = get_worker_info()
        units = self.units if info is None else self.units[info.id::info.num_workers]
        return (chunk_statistics(self.store.encoder, f) for f in self.store.frames(units))


def fit_store_encoder(store: StreamingStore) -> int:
    """``fit_encoder`` over the store's files, each chunk summarised in a reader process.

    Under torchrun each rank summarises units ``rank::world`` only; the per-rank summaries are
    all-gathered and merged in rank order, so every rank fits the same encoders from one
    reading of the data."""
    rank, world = (dist.get_rank(), dist.get_world_size()) if (
        dist.is_available() and dist.is_initialized()) else (0, 1)
    mine = store.units()[rank::world]
    stats = _UnitStatistics(store, mine)
    if store.workers > 0 and mine:
        stats = DataLoader(stats, batch_size=None, num_workers=min(store.workers, len(mine)),
                           worker_init_fn=_one_arrow_thread, collate_fn=_no_collate,
                           prefetch_factor=store.prefetch)
    if world == 1:
        return fit_encoder(store.encoder, iter(stats))
    gathered: list = [None] * world
    dist.all_gather_object(gathered, merge_statistics(store.encoder, iter(stats)))
    return fit_encoder(store.encoder, iter(gathered))


def _no_collate(item):
    return item


def prepare_streaming(data: DataConfig) -> PreparedData:
    """``PreparedData`` whose train store streams ``data.params.train`` (dataset ``table``);
    valid/test are read into memory. The data checks run on the first record batch."""
    from mtlkit.data.datasets.table import _load
    from mtlkit.train import checkpoint as ckpt

    cfg = data.streaming
    assert cfg is not None
    if data.dataset != "table":
        raise ConfigError(f"data.streaming reads files described by dataset 'table', not "
                          f"{data.dataset!r}")
    rules = {"tasks": data.tasks, "drop_features": data.drop_features, "derive": data.derive,
             "add_tasks": data.add_tasks, "negative_sampling": data.negative_sampling}
    used = [k for k, v in rules.items() if v]
    if used:
        raise ConfigError(f"data.streaming does not support data.{used[0]} (the rules need "
                          "the whole table); describe the tasks in data.params instead")
    params = dict(data.params)
    if params.get("valid") is None:
        raise ConfigError("data.streaming needs data.params.valid (a validation file): a "
                          "streamed train file is never held in memory to split it")
    options = ReadOptions.model_validate(params.get("read") or {})
    schema = Schema(features=params["features"], tasks=params["tasks"])
    kwargs = {"batch_rows": cfg.batch_rows, "shuffle_buffer": cfg.shuffle_buffer,
              "shuffle_files": cfg.shuffle_files, "workers": cfg.workers, "shard": cfg.shard}
    if cfg.encoder is not None:
        path = Path(cfg.encoder)
        bundle = ckpt.load(path / "model.pt" if path.is_dir() else path)
        encoder = TabularEncoder.from_dict(bundle["encoder"])
        if encoder.schema != schema:
            raise ConfigError(f"data.streaming.encoder {cfg.encoder}: its schema differs from "
                              "data.params features/tasks")
        store = StreamingStore(params["train"], encoder, options, **kwargs)
    else:
        encoder = TabularEncoder(schema)
        store = StreamingStore(params["train"], encoder, options, **kwargs)
        store._num_rows = fit_store_encoder(store)
    sample = next(store.frames())
    valid = _load(params["valid"], options)
    test = None if params.get("test") is None else _load(params["test"], options)
    stores = {"train": store, "valid": encode_frame(encoder, valid)}
    if test is not None:
        stores["test"] = encode_frame(encoder, test)
    spec = InputSpec("tabular", encoder.cardinalities, len(encoder.numeric),
                     categorical_names=[e.name for e in encoder.categorical],
                     numeric_names=[e.name for e in encoder.numeric])
    raw = RawSplits(schema, sample, valid, test, options,
                    f"{params['train']} (streamed; checks on its first {len(sample)} rows)")
    return PreparedData(encoder, stores, spec, raw)
